#!/usr/bin/env bash
# Multi-GPU check: the gpu preset's bounded run (as bench/gpu/preset.sh) under
# runtime.launcher=accelerate with N processes (built-in "ddp" config, NCCL), then the same report
# plus a check that every stage trained on N ranks (summary.json world_size) and wrote one
# rng_state_<rank>.pth per rank into its last checkpoint.
#
#   bench/gpu/multi.sh N [MODEL] [ACCELERATE_CONFIG]   N >= 2 GPUs on this machine;
#                                                      ACCELERATE_CONFIG: ddp (default), fsdp,
#                                                      deepspeed-zero2, deepspeed-zero3 or a file
# batch_size is per process, so the global batch is N times the single-GPU run's. Unattended: the
# run is stopped after GPU_CHECK_TIMEOUT_S (default 540 s). Refuses (exit 2) without N GPUs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
n="${1:-}"
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 2 ]; then
  echo "usage: bench/gpu/multi.sh N [MODEL] [ACCELERATE_CONFIG]   (N >= 2 GPUs)" >&2
  exit 2
fi
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [ "$have" -lt "$n" ]; then
  echo "multi-gpu check: $n GPUs asked for, nvidia-smi lists $have. Run it on a machine with at least $n GPUs." >&2
  exit 2
fi
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
# The same bounded run and report as the single-GPU bench, under the launcher.
rc=0
GPU_CHECK_RUNS_DIR="$runs" bench/gpu/preset.sh "${2:-}" -- --set runtime.launcher=accelerate \
  --set "runtime.num_processes=$n" --set "runtime.accelerate_config=${3:-ddp}" || rc=$?
# Every finished stage must say it ran on n ranks, with one RNG file per rank in its checkpoints.
.venv/bin/python - "$runs" "$n" <<'PY' || rc=1
import glob, json, os, sys
runs, n = sys.argv[1], int(sys.argv[2])
bad = 0
for summary in sorted(glob.glob(os.path.join(runs, "*", "stages", "*", "summary.json"))):
    s = json.load(open(summary))
    stage = os.path.basename(os.path.dirname(summary))
    ws = (s.get("sidecar") or {}).get("world_size")
    rng = {os.path.basename(p) for p in glob.glob(os.path.join(os.path.dirname(summary), "checkpoints", "**", "rng_state_*.pth"), recursive=True)}
    ok = s.get("status") == "ok" and ws == n and rng == {f"rng_state_{r}.pth" for r in range(n)}
    bad += not ok
    print(f"multi-gpu {stage}: status {s.get('status')}, world_size {ws}, rng files {sorted(rng)} -> {'ok' if ok else 'FAIL'}")
sys.exit(1 if bad else 0)
PY
exit "$rc"
