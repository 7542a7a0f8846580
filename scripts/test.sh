#!/usr/bin/env bash
# Set up with test dependencies, lint (ruff), then run the whole test suite (slow tests included).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest "$@"  # tests/test_layers.py runs lint-imports
