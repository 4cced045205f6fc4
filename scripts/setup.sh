#!/usr/bin/env bash
# Set-up on a fresh machine: a virtualenv in .venv with resontech_nb and what it needs.
#   bash scripts/setup.sh            # the package and the notebook runner
#   bash scripts/setup.sh test       # ... plus the test tools and Debian's chromium for the browser test
# torch: an installed one is kept; without an NVIDIA GPU the CPU build comes from PyTorch's CPU index (a few hundred
# MB instead of several GB of CUDA libraries); where that index cannot be reached, whatever the package index serves.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="notebook"
[ "${1:-}" = "test" ] && extra="notebook,test"
CPU_INDEX="${RESONTECH_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
pip_quiet() { .venv/bin/python -m pip "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
pip_quiet install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    : # an NVIDIA GPU: the package index's torch (the CUDA build) comes with the package below
  elif .venv/bin/python - "$CPU_INDEX" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5).close()
PY
  then
    pip_quiet install -q --index-url "$CPU_INDEX" -c constraints.txt torch
  else
    echo "note: $CPU_INDEX cannot be reached; torch comes from the default package index" >&2
  fi
fi
pip_quiet install -q -c constraints.txt -e ".[${extra}]"
.venv/bin/python -c "import resontech_nb, torch, nvflare" || { echo "set-up failed: resontech_nb does not import" >&2; exit 1; }

if [ "${1:-}" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  # The dashboard test drives a real browser: Debian's chromium through Playwright.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser test will fail" >&2
fi
