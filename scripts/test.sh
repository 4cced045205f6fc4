#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. CI runs exactly this (.ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit 1
export RESONTECH_NB_HOME="${RESONTECH_NB_HOME:-$(mktemp -d)}"
# Tests in parallel processes (pytest-xdist): most of a test's time is NVFlare, a browser or a server starting
# or waiting, so even 2 cores take 2 at once. RESONTECH_TEST_WORKERS=1 runs them one at a time.
workers="${RESONTECH_TEST_WORKERS:-}"
if [ -z "$workers" ]; then
  workers="$(nproc 2>/dev/null || echo 2)"
  [ "$workers" -gt 4 ] && workers=4
  [ "$workers" -lt 2 ] && workers=2
fi
parallel=(-n "$workers")
[ "$workers" = 1 ] && parallel=(-p no:xdist)
.venv/bin/python -m pytest -q -ra --durations=25 "${parallel[@]}" "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $rc
