#!/usr/bin/env bash
# Bridge micro-benchmark, one command: build the controller, then run bench/bridge.mjs.
#   bench/run-bridge.sh [--reps 5] [--events 20000] [--pings 2000] [--out bench/results/bridge.json]
# Needs `make setup` (node_modules, .venv) done once. Results: bench/results/bridge.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx tsc -p tsconfig.json
exec node bench/bridge.mjs "$@"
