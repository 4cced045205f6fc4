#!/usr/bin/env bash
# torch for the Python given, where none is importable (set-up and binder/postBuild share this):
#   bash scripts/cpu_torch.sh PYTHON [extra pip arguments, e.g. -c constraints.txt]
# An importable torch stays as it is. Without an NVIDIA GPU the CPU build comes from PyTorch's CPU index (a few
# hundred MB instead of several GB of CUDA libraries); where that index cannot be reached (checked with a 5 s
# timeout), one notice line and nothing installed here: the package's own install then takes the package index's torch.
set -euo pipefail
py="$1"
shift
CPU_INDEX="${RESONTECH_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
if "$py" -c "import torch" 2>/dev/null; then
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "note: an NVIDIA GPU is present; torch (the CUDA build) comes from the package index" >&2
  exit 0
fi
if "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5).close()" \
    "$CPU_INDEX" 2>/dev/null; then
  "$py" -m pip install -q --index-url "$CPU_INDEX" "$@" torch
else
  echo "note: $CPU_INDEX cannot be reached; torch comes from the default package index" >&2
fi
