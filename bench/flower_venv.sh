#!/usr/bin/env bash
# Flower's own venv for bench/flower_side_by_side.py (never the project's: flwr pins its own grpcio, protobuf, ray).
#   bash bench/flower_venv.sh [VENV_DIR]        (default /tmp/flwr-venv; the bench's --flower-python VENV_DIR/bin/python)
# torch is the same release as the project's, its CPU build: the +cpu wheel from PyTorch's CPU index, never CUDA's
# (TORCH_INDEX_URL="" where pip already finds a local +cpu wheel, e.g. through find-links).
set -euo pipefail
VENV="${1:-/tmp/flwr-venv}"
PYTHON="${FLOWER_BASE_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  PYTHON="$(ls -d /root/.pyenv/versions/3.11.*/bin/python 2>/dev/null | sort -V | tail -1 || true)"
  PYTHON="${PYTHON:-$(command -v python3.11 || true)}"
fi
if [ -z "$PYTHON" ]; then
  echo "no Python 3.11 found: set FLOWER_BASE_PYTHON to a Python 3.11 interpreter" >&2
  exit 1
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
INDEX="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
"$VENV/bin/pip" install -q "flwr[simulation]==1.42.*" "torch==2.13.0" numpy ${INDEX:+--extra-index-url "$INDEX"}
"$VENV/bin/python" - <<'PY'
import flwr, ray, torch
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), f"torch {torch.__version__} is not the CPU build"
print(f"Flower venv ready: flwr {flwr.__version__}, ray {ray.__version__}, torch {torch.__version__}")
PY
echo "run: .venv/bin/python bench/flower_side_by_side.py --flower-python $VENV/bin/python"
