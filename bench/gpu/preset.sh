#!/usr/bin/env bash
# The GPU benchmark: the gpu preset (4-bit QLoRA, bf16; Qwen2.5-0.5B-Instruct by default) for a
# bounded number of steps of every stage, then peak GPU memory, tokens/s (QLoRA SFT, DPO) and GRPO
# generation speed per stage, a comparison line with LLaMA-Factory's published QLoRA figure, and
# bench/results/gpu.json. Unattended: the run is killed after 9 minutes (GPU_CHECK_TIMEOUT_S).
#
#   bench/gpu/preset.sh [MODEL] [-- EXTRA POSTTRAIN ARGS]
#        MODEL: hub id or local folder (default: the gpu preset's model; a machine without network
#        needs a local folder or a warm HF cache). Extra args go to `posttrain run` (multi.sh passes
#        the launcher settings). GPU_CHECK_RUNS_DIR keeps the run folder there instead of a temp dir.
# scripts/gpu-check.sh is the same script. Needs an NVIDIA GPU; refuses (exit 2) without one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU). This benchmark measures the" >&2
  echo "gpu preset (4-bit QLoRA needs CUDA and bitsandbytes); run it on a machine with an NVIDIA GPU." >&2
  exit 2
fi
nvidia-smi -L
scripts/setup.sh   # on a GPU machine: the CUDA torch build and the gpu extra (bitsandbytes)
model="${1:-}"
[ "$model" = "--" ] && model=""
extra=()
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--" ]; then extra=("${@:i+1}"); break; fi
done
if [ -n "${GPU_CHECK_RUNS_DIR:-}" ]; then runs="$GPU_CHECK_RUNS_DIR"; mkdir -p "$runs"
else runs=$(mktemp -d); trap 'rm -rf "$runs"' EXIT
fi
args=(run --preset gpu --set "runtime.runs_dir=$runs" --progress plain
  --set stages.sft.max_steps=30 --set stages.sft.save_steps=30
  --set stages.dpo.max_steps=20 --set stages.dpo.save_steps=20
  --set stages.grpo.max_steps=10 --set stages.grpo.save_steps=10
  --set stages.rlhf.reward_model.max_steps=20 --set stages.rlhf.reward_model.save_steps=20
  --set stages.rlhf.policy.max_steps=5 --set stages.rlhf.policy.save_steps=5)
if [ -n "$model" ]; then args+=(--set "model.id=$model"); fi
args+=("${extra[@]}")
start=$(date +%s)
rc=0
timeout --signal=INT --kill-after=30 "${GPU_CHECK_TIMEOUT_S:-540}" node bin/posttrain.js "${args[@]}" || rc=$?
wall=$(( $(date +%s) - start ))
{ [ "$rc" = 124 ] || [ "$rc" = 130 ]; } && echo "gpu-check: the run passed ${GPU_CHECK_TIMEOUT_S:-540} s and was stopped; reporting what finished." >&2
.venv/bin/python bench/gpu/report.py "$runs" "$wall"
exit "$rc"
