#!/usr/bin/env bash
# Set up (idempotent), then run the main job on the bundled default input (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec .venv/bin/python scripts/demo.py "$@"
