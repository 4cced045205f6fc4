#!/usr/bin/env bash
# Not in CI (in full it downloads torch for each interpreter): builds the wheel, then for every Python 3.10-3.13
# found (pyenv's first, then python3.1X on PATH) makes a fresh venv in a temp folder and there
#   full (default):  installs CPU torch (scripts/cpu_torch.sh: PyTorch's CPU index; with a one-line notice the package
#                    index's torch where that index cannot be reached: the multi-GB CUDA build), then the wheel, and runs
#                    `resontech-nb --version` and `resontech-nb quickstart --rounds 2`;
#   --no-torch:      installs the wheel with every requirement but torch, and runs `resontech-nb --version` and
#                    `import resontech_nb` (which must not import torch) - no torch download, no quickstart.
# Prints one result line per Python. PYTHON (default python3) builds the wheel and needs `build` (pip install build).
set -uo pipefail
cd "$(dirname "$0")/.."
mode="full"
[ "${1:-}" = "--no-torch" ] && mode="no-torch"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3}" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { echo "error: python -m build failed (pip install build; log: $(tail -1 "$work/build.log"))" >&2; exit 1; }
wheel="$(ls "$work"/dist/*.whl)"
pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
failed=0
for minor in 10 11 12 13; do
  # pyenv's interpreter itself, not its shim (a shim for a version that is not selected refuses to run)
  py="$(ls -d "$pyenv_root"/versions/3."$minor".*/bin/python 2>/dev/null | sort -V | tail -1)"
  [ -z "$py" ] && py="$(command -v "python3.$minor" || true)"
  if [ -z "$py" ]; then echo "3.$minor: not found"; continue; fi
  name="3.$minor ($("$py" -V 2>&1))"
  venv="$work/venv3$minor"
  log="$work/log3$minor"
  if ! "$py" -m venv "$venv" >"$log" 2>&1 || ! "$venv/bin/python" -m pip install -q --upgrade pip >>"$log" 2>&1; then
    echo "$name: FAILED making the venv: $(tail -1 "$log")"; failed=1; continue
  fi
  if [ "$mode" = "no-torch" ]; then
    "$venv/bin/python" - "$wheel" >"$work/reqs3$minor.txt" <<'PY'
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
for line in meta.splitlines():
    if line.startswith("Requires-Dist:"):
        req = line.split(":", 1)[1].strip()
        if "extra ==" not in req and re.split(r"[ <>=!;\[]", req)[0].lower() != "torch":
            print(req)
PY
    if "$venv/bin/pip" install -q --no-deps "$wheel" >>"$log" 2>&1 \
       && "$venv/bin/pip" install -q -r "$work/reqs3$minor.txt" >>"$log" 2>&1 \
       && version="$(cd "$work" && "$venv/bin/resontech-nb" --version 2>>"$log")" \
       && (cd "$work" && "$venv/bin/python" -c "
import sys, importlib.util, resontech_nb
assert importlib.util.find_spec('torch') is None, 'torch is installed'
assert 'torch' not in sys.modules, 'import resontech_nb imported torch'
assert 'submit' in dir(resontech_nb)" >>"$log" 2>&1); then
      echo "$name: ok without torch: wheel + requirements but torch installed; $version; import resontech_nb lazy"
    else
      echo "$name: FAILED: $(grep -v -e '^\s*$' -e '^WARNING: Location' "$log" | tail -1)"; failed=1
    fi
    continue
  fi
  notice="$(bash scripts/cpu_torch.sh "$venv/bin/python" 2>&1 >>"$log")" || { echo "$name: FAILED installing CPU torch: $(printf %s "$notice" | tail -1)"; failed=1; continue; }
  [ -n "$notice" ] && echo "$name: $notice"
  if "$venv/bin/pip" install -q "$wheel" >>"$log" 2>&1 && version="$(cd "$work" && "$venv/bin/resontech-nb" --version)" \
     && (cd "$work" && RESONTECH_NB_HOME="$work/home3$minor" "$venv/bin/resontech-nb" quickstart --rounds 2 --out "qs3$minor" >>"$log" 2>&1); then
    echo "$name: ok: $version; quickstart --rounds 2 finished"
  else
    echo "$name: FAILED: $(grep -v -e '^\s*$' -e '^WARNING: Location' "$log" | tail -1)"; failed=1
  fi
done
exit "$failed"
