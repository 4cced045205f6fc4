#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. CI runs exactly this (.ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit 1
export RESONTECH_NB_HOME="${RESONTECH_NB_HOME:-$(mktemp -d)}"
.venv/bin/python -m pytest -q -ra --durations=25 "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $rc
