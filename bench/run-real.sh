#!/usr/bin/env bash
# A real model on real data, one command: SmolLM2-135M-Instruct (cpu-real preset), SFT then GRPO on
# GSM8K, with held-out GSM8K test accuracy before/after. About 8-12 min on 2 CPU cores.
#   bench/run-real.sh [--grpo-steps 20] [--sft-steps N] [--heldout 16] [--out bench/results/real.json]
# Needs `make setup` and `make real-model` once. Results: bench/results/real.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f models/smollm2-135m-instruct/config.json ] || { echo "run-real: models/smollm2-135m-instruct is missing; run \`make real-model\` first." >&2; exit 2; }
npx tsc -p tsconfig.json
exec .venv/bin/python bench/real.py "$@"
