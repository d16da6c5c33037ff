#!/usr/bin/env bash
# Training throughput, posttrain vs the direct TRL script, on bench/models/tiny-256 (built if missing):
#   bench/run-throughput.sh [--reps 3]     -> bench/results/throughput.json
# About 45 s per repetition on 2 cores. Needs `make setup`; builds dist first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx tsc -p tsconfig.json
exec "${POSTTRAIN_PYTHON:-.venv/bin/python}" bench/throughput.py "$@"
