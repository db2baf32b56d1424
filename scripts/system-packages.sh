#!/bin/sh
# Installs the Debian/Ubuntu packages ragchat needs with apt-get; on other systems it says what to
# install. Usage: system-packages.sh PACKAGE... (Debian names). Tesseract and its language data read
# scanned pages and images; Chromium runs the browser tests; PostgreSQL serves the shared-mode tests
# (they start servers of their own; the package's own cluster is not used).
set -u
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
  [ -z "$missing" ] && exit 0
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "ragchat setup: installing$missing with apt-get"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq $missing >/dev/null; } \
    || { printf 'ragchat setup: apt-get could not install%s: install them yourself, then run make again\n' "$missing" >&2; exit 1; }
  exit 0
fi
# Not Debian: check for the programs themselves.
need=""
for pkg in "$@"; do
  case "$pkg" in
    tesseract-ocr) command -v tesseract >/dev/null 2>&1 || need="$need tesseract" ;;
    tesseract-ocr-chi-sim) tesseract --list-langs 2>/dev/null | grep -q chi_sim || need="$need tesseract-chi_sim-language-data" ;;
    chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need="$need chromium" ;;
    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql" ;;
  esac
done
[ -z "$need" ] && exit 0
printf 'ragchat setup: please install%s with your system'"'"'s package manager (macOS: brew install tesseract tesseract-lang chromium), then run make again\n' "$need" >&2
exit 1
