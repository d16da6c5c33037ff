"""Peak GPU memory and throughput per stage of one gpu-preset run (bench/gpu/preset.sh).

Reads the run folder (run.json, each stage's summary.json and metrics.jsonl), prints a table,
writes bench/results/gpu.json in the common shape ({machine, versions, config, measures}) and a
comparison line with a published figure: LLaMA-Factory's table gives ~6 GB for 4-bit QLoRA of a
7B model (https://github.com/hiyouga/LLaMA-Factory#hardware-requirement). Our preset's model is
much smaller, so the comparison says which size we ran and scales nothing.

Usage: .venv/bin/python bench/gpu/report.py RUNS_DIR WALL_S [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from benchlib import ROOT, machine, table, versions, write_results  # noqa: E402

PUBLISHED = {"source": "LLaMA-Factory README, hardware requirement table", "method": "QLoRA 4-bit", "model_size": "7B", "gpu_mem_gb": 6}


def gpu_name() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", type=Path)
    ap.add_argument("wall_s", type=float)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    a = ap.parse_args()
    runs = [p for p in a.runs_dir.iterdir() if (p / "run.json").is_file()]
    if not runs:
        sys.exit(f"no run folder under {a.runs_dir}: the run failed before it started (see the output above).")
    run = max(runs, key=lambda p: p.name)
    record = json.loads((run / "run.json").read_text())
    model = record["config"]["model"]["id"]

    rows, measures = [], []
    for stage in record["stages_selected"]:
        f = run / "stages" / stage / "summary.json"
        s = json.loads(f.read_text()).get("sidecar", {}) if f.is_file() else {}
        runtime = s.get("train_runtime_s")
        tokens = s.get("tokens_seen")
        tok_s = tokens / runtime if tokens and runtime else None
        peak = s.get("peak_gpu_mem_gb")
        gen_tok_s = None
        if stage in ("grpo", "rlhf"):
            # Completion tokens per second of GRPO step time (generation dominates a GRPO step).
            cfg = record["config"]["stages"]["grpo"] if stage == "grpo" else record["config"]["stages"]["rlhf"]["policy"]
            mf = run / "stages" / stage / "metrics.jsonl"
            steps = [json.loads(l)["values"] for l in mf.read_text().splitlines() if l.strip()] if mf.is_file() else []
            gen_tok_s = mean([v["completions/mean_length"] * cfg["batch_size"] / v["train/step_time"]
                              for v in steps if v.get("completions/mean_length") and v.get("train/step_time")])
        status = record["stages"].get(stage, {}).get("status")
        rows.append([stage, status, s.get("global_step"), peak, tok_s, gen_tok_s, runtime])
        measures.append({"name": f"{stage} peak GPU memory", "value": peak, "unit": "GiB"})
        measures.append({"name": f"{stage} tokens/s", "value": tok_s, "unit": "tokens/s"})
        if gen_tok_s is not None:
            measures.append({"name": f"{stage} generated tokens/s (per step)", "value": gen_tok_s, "unit": "tokens/s"})

    print(f"run {record['id']}  model {model}  status {record['status']}  wall {a.wall_s:.0f} s  GPU {gpu_name()}")
    print(table(["stage", "status", "steps", "peak GPU GiB", "tokens/s", "gen tok/s", "train s"], rows))
    peak_sft = next((r[3] for r in rows if r[0] == "sft"), None)
    print(f"\ncompare: {PUBLISHED['source']}: {PUBLISHED['method']} {PUBLISHED['model_size']} ≈ {PUBLISHED['gpu_mem_gb']} GB; "
          f"we ran {model}{' (0.5B parameters)' if model == 'Qwen/Qwen2.5-0.5B-Instruct' else ''}, QLoRA 4-bit SFT peak "
          f"{'-' if peak_sft is None else f'{peak_sft:.2f}'} GiB. Different model size: compare the order of magnitude, not the number.")
    write_results(a.out, {"bench": "gpu", "machine": {**machine(), "gpu": gpu_name()}, "versions": versions(),
                          "config": {"preset": "gpu", "model": model, "stages": record["stages_selected"]},
                          "status": record["status"], "wall_s": round(a.wall_s, 1), "published": PUBLISHED, "measures": measures,
                          "stages": [dict(zip(["stage", "status", "steps", "peak_gpu_gib", "tokens_per_s", "gen_tokens_per_s", "train_s"], r)) for r in rows]})


if __name__ == "__main__":
    main()
