#!/usr/bin/env bash
# Not in CI (it downloads torch for each interpreter): builds the wheel, then for every Python 3.10-3.13 found
# (pyenv's or on PATH) makes a fresh venv in a temp folder, installs the wheel with CPU torch and runs
# `resontech-nb --version` and `resontech-nb quickstart --rounds 2`. Prints one result line per Python.
set -uo pipefail
cd "$(dirname "$0")/.."
CPU_INDEX="${RESONTECH_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m build --outdir "$work/dist" . >/dev/null || { echo "error: python -m build failed (pip install build)" >&2; exit 1; }
wheel="$(ls "$work"/dist/*.whl)"
for minor in 10 11 12 13; do
  py="$(command -v "python3.$minor" || ls "$HOME"/.pyenv/versions/3."$minor".*/bin/python 2>/dev/null | tail -1)"
  if [ -z "$py" ]; then echo "3.$minor: not found"; continue; fi
  venv="$work/venv3$minor"
  "$py" -m venv "$venv" && "$venv/bin/pip" install -q --index-url "$CPU_INDEX" torch >/dev/null 2>&1 \
    || echo "3.$minor: note: $CPU_INDEX not reachable; torch from the package index"
  if "$venv/bin/pip" install -q "$wheel" >/dev/null 2>&1 && "$venv/bin/resontech-nb" --version \
     && (cd "$work" && RESONTECH_NB_HOME="$work/home3$minor" "$venv/bin/resontech-nb" quickstart --rounds 2 --out "qs3$minor" >/dev/null); then
    echo "3.$minor ($("$py" -V 2>&1)): ok"
  else
    echo "3.$minor ($("$py" -V 2>&1)): FAILED"
  fi
done
