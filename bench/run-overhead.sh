#!/usr/bin/env bash
# Orchestration overhead and warm sidecar, from the same runs (both need `posttrain run --preset smoke`):
#   bench/run-overhead.sh [--reps 3]       -> bench/results/overhead.json and warm.json
# Per repetition: posttrain run, bench/plain_trl.py, and the chained per-stage CLI runs, order
# alternating. About 70 s per repetition on 2 cores. Needs `make setup`; builds dist first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx tsc -p tsconfig.json
exec "${POSTTRAIN_PYTHON:-.venv/bin/python}" bench/pipeline.py "$@"
