#!/usr/bin/env bash
# Warm sidecar alone: one sidecar for all stages vs a new CLI process + sidecar per stage.
#   bench/run-warm.sh [--reps 3]           -> bench/results/warm.json
# (bench/run-overhead.sh writes this too, from the same runs as the overhead numbers.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx tsc -p tsconfig.json
exec "${POSTTRAIN_PYTHON:-.venv/bin/python}" bench/pipeline.py --only warm "$@"
