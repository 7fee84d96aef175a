#!/usr/bin/env bash
# Set up gradflow in ./.venv and run the main job on the embedded default config.
# Usage: bash scripts/quickstart.sh [OUT_DIR]   (default OUT_DIR: gradflow-out)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gradflow-out}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/gradflow run --out "$out"
