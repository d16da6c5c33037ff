#!/usr/bin/env bash
# How cost grows, one command: the smoke pipeline (all four stages, bound by epochs) at ×1, ×4, ×16
# the smoke rows, on the smoke model and a larger tiny model; fits wall = start-up + per-row cost.
#   bench/run-scaling.sh [--factors 1,4,16] [--models smoke,tiny-256] [--out bench/results/scaling.json]
# Needs `make setup`. Results: bench/results/scaling.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx tsc -p tsconfig.json
exec .venv/bin/python bench/scaling.py "$@"
