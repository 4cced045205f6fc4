#!/usr/bin/env bash
# Set-up on a fresh machine: a virtualenv in .venv with resontech_nb and what it needs.
#   bash scripts/setup.sh            # the package and the notebook runner
#   bash scripts/setup.sh test       # ... plus the test tools and Debian's chromium for the browser test
# torch is pinned through constraints.txt so that pip takes the CPU build, not a multi-GB CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="notebook"
[ "${1:-}" = "test" ] && extra="notebook,test"

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extra}]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import resontech_nb, torch, nvflare" || { echo "set-up failed: resontech_nb does not import" >&2; exit 1; }

if [ "${1:-}" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  # The dashboard test drives a real browser: Debian's chromium through Playwright.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser test will fail" >&2
fi
