#!/usr/bin/env bash
# Every benchmark, one after another, then one table of every target from bench/results/*.json.
#   bench/run-all.sh            (about 10 minutes on 2 cores; `make bench` runs this)
#   REPS=5 bench/run-all.sh     more repetitions for the pipeline benches (default: each script's own)
# Needs `make setup` once; installs nothing. Run it on a quiet machine: every number is a ratio
# against a baseline measured in the same run, but two busy processes on two cores still skew them.
# To add a benchmark: append its script to BENCHES; it should write bench/results/<name>.json with
# a `targets: [{name, value, baseline, ratio, target, met, unit}]` array (see bench/lib/benchlib.py).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCHES=(
  bench/run-bridge.sh       # bridge events/s and RTT vs raw sockets        -> bridge.json
  bench/run-overhead.sh     # posttrain run vs plain TRL script, and        -> overhead.json
                            #   one warm sidecar vs a process per stage     -> warm.json
  bench/run-throughput.sh   # tokens/s, samples/s, peak RSS on tiny-256     -> throughput.json
  bench/run-real.sh         # real-model run (another helper's; optional)
  bench/run-scaling.sh      # how cost grows with data (another helper's; optional)
)
# Not in the list: bench/gpu/run.sh and preset.sh (need an NVIDIA GPU; run them there by hand).
# run-overhead.sh measures overhead and warm from the same runs (they share `posttrain run`);
# bench/run-warm.sh exists for running the warm part alone.

# Trap: stale results from an earlier session would show in the table as if measured now; the
# table marks each file with its modification time so that stays visible.
started=$(date +%s)
failed=()
for b in "${BENCHES[@]}"; do
  if [[ ! -x "$b" ]]; then
    echo "== $b: not here, skipped"
    continue
  fi
  echo "== $b"
  rc=0
  if [[ "$b" == bench/run-overhead.sh || "$b" == bench/run-throughput.sh ]] && [[ -n "${REPS:-}" ]]; then
    "$b" --reps "$REPS" || rc=$?
  else
    "$b" || rc=$?
  fi
  # Exit 2 is how these scripts say "cannot run here" (e.g. run-real.sh without `make real-model`,
  # a GPU bench without a GPU): a note, not a failure.
  if ((rc == 2)); then echo "== $b: skipped (prerequisite missing, see its message)"
  elif ((rc != 0)); then failed+=("$b")
  fi
  echo
done

PY=${POSTTRAIN_PYTHON:-.venv/bin/python}
"$PY" bench/lib/summary.py --since "$started"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
