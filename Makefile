# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make run    create .venv, install, start the web app on http://127.0.0.1:7860
#   make test   create .venv, install (with test tools and headless Chromium), run every test
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install browser

run: $(STAMP)
	$(VENV)/bin/python app.py

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Browser tests drive Debian's Chromium (a test tool's own browser download fails offline).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }
