#!/usr/bin/env bash
# Set up (idempotent) and run the quickstart notebook headless on the local target (NVFlare's simulator).
# The executed notebook and the dashboard picture land in ./quickstart-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m resontech_nb.quickstart --out quickstart-output "$@"
