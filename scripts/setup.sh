#!/usr/bin/env bash
# Set-up on a fresh machine: a virtualenv in .venv with resontech_nb and what it needs.
#   bash scripts/setup.sh            # the package and the notebook runner
#   bash scripts/setup.sh test       # ... plus the test tools and Debian's chromium for the browser test
# torch: an installed one is kept; without an NVIDIA GPU the CPU build comes from PyTorch's CPU index (a few hundred
# MB instead of several GB of CUDA libraries); where that index cannot be reached, whatever the package index serves
# (scripts/cpu_torch.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="notebook"
[ "${1:-}" = "test" ] && extra="notebook,test"

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
pip_quiet() { .venv/bin/python -m pip "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
pip_quiet install -q --upgrade pip
bash scripts/cpu_torch.sh .venv/bin/python -c constraints.txt
pip_quiet install -q -c constraints.txt -e ".[${extra}]"
.venv/bin/python -c "import resontech_nb, torch, nvflare" || { echo "set-up failed: resontech_nb does not import" >&2; exit 1; }

if [ "${1:-}" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  # The dashboard test drives a real browser: Debian's chromium through Playwright.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser test will fail" >&2
fi
