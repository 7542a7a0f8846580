#!/usr/bin/env bash
# Set up, then fine-tune the bundled MiniLM on the example reviews, evaluate it and predict.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
.venv/bin/transferlm train examples/reviews/config.yaml --overwrite
.venv/bin/transferlm evaluate runs/reviews --data examples/reviews/test.csv
echo "predictions for examples/reviews/texts.txt:"
.venv/bin/transferlm predict runs/reviews --input examples/reviews/texts.txt
echo "run directory: runs/reviews"
