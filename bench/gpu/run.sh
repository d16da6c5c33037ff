#!/usr/bin/env bash
# The GPU check's run step, on the GPU host (air-gapped: no hub, no pip index, no Node.js needed).
# Installs the bundle's wheels offline into a private folder, then runs bench/gpu/check.py: QLoRA
# and LoRA through every stage of the real sidecar on models built here, a plain TRL baseline, and
# the memory estimate against the measured peak. Results: $OUT/gpu-check.json when OUT is set (the
# device tool's result folder), else bench/results/gpu-check.json. One command, bounded:
# GPU_CHECK_BUDGET_S (default 420) for the jobs, plus install and start-up (~8 min in all).
#
#   bench/gpu/prepare.py          # first, where there is network and Node.js: writes bench/gpu/bundle/
#   bench/gpu/run.sh [--bundle DIR] [check.py args...]
#
# Exit: 0 all jobs ran clean; 1 some job failed (the results file says which); 2 no GPU or no bundle.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bundle=bench/gpu/bundle
if [ "${1:-}" = "--bundle" ]; then bundle=$2; shift 2; fi
if [ ! -f "$bundle/config.json" ]; then
  echo "gpu-check: no bundle at $bundle (run bench/gpu/prepare.py where there is network and Node.js, and bring $bundle along)" >&2
  exit 2
fi
PY=${PYTHON:-python3}
site=${GPU_CHECK_SITE:-/tmp/posttrain-gpu-site}
if compgen -G "$bundle/wheels/*.whl" >/dev/null; then
  # --no-deps: prepare.py chose exactly what the host lacks; pip must not reach for an index.
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$bundle"/wheels/*.whl || { echo "gpu-check: offline install of $bundle/wheels failed" >&2; exit 2; }
fi
export PYTHONPATH="$site:$PWD/sidecar${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PY" - <<'PY'
import importlib
bad = []
for m in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "zmq", "msgpack", "bitsandbytes"):
    try:
        importlib.import_module(m)
    except Exception as e:  # noqa: BLE001
        bad.append(f"{m} ({type(e).__name__}: {e})")
print("; ".join(bad))
PY
)
[ -n "$missing" ] && echo "gpu-check: cannot import: $missing" >&2
out=${OUT:-bench/results}
mkdir -p "$out"
"$PY" bench/gpu/check.py --config "$bundle/config.json" --out "$out" --budget-s "${GPU_CHECK_BUDGET_S:-420}" "$@" 2>&1 | tee "$out/gpu-check.log"
exit "${PIPESTATUS[0]}"
