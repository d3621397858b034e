#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite on the CPU; with arguments, only those
# (e.g. `bash scripts/test.sh tests/backend/test_cli.py -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ $# -eq 0 ]; then set -- tests; fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 "$@"
