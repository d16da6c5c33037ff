#!/usr/bin/env bash
# Verifies the GPU path on a machine with an NVIDIA GPU: the gpu preset (4-bit QLoRA, bf16) for a
# few steps of every stage, then peak GPU memory and throughput per stage. Unattended, < 10 min.
#
#   scripts/gpu-check.sh [MODEL]   MODEL: hub id or local folder (default: the gpu preset's model;
#                                  a machine without network needs a local folder)
# Set-up on the GPU machine installs the CUDA torch build and the gpu extra (bitsandbytes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi -L failed); nothing to check." >&2
  exit 2
fi
scripts/setup.sh
runs=$(mktemp -d)
args=(run --preset gpu --set "runtime.runs_dir=$runs"
  --set stages.sft.max_steps=20 --set stages.sft.save_steps=10
  --set stages.dpo.max_steps=20 --set stages.dpo.save_steps=10
  --set stages.grpo.max_steps=10 --set stages.grpo.save_steps=5
  --set stages.rlhf.reward_model.max_steps=20 --set stages.rlhf.reward_model.save_steps=10
  --set stages.rlhf.policy.max_steps=10 --set stages.rlhf.policy.save_steps=5)
if [ -n "${1:-}" ]; then args+=(--set "model.id=$1"); fi
node bin/posttrain.js "${args[@]}"
.venv/bin/python scripts/gpu_report.py "$runs"
