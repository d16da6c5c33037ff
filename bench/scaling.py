"""How cost grows: the smoke pipeline's wall time against data rows and against model size.

Every measurement is one `posttrain run --preset smoke --json` (all four stages) in a scratch runs
folder. To make the work scale with the data, every stage is bound by epochs instead of max_steps
(`max_steps=null, epochs=1`), and the data files are the smoke rows repeated ×1, ×4, ×16 into a
temp folder. Models: the smoke model (data/smoke-model) and a larger tiny model of the same family
(bench/models/tiny-256, built here with scripts/build_smoke_model.py when missing).

For each run it splits the wall time using the run's own NDJSON events and summary.json:
  cli+validate  process start → run_start (node start-up, config, data validation, run folder)
  sidecar       run_start → first stage_start (spawn the sidecar, import torch/TRL)
  load          stage_start → state "training" (model + adapter load, data, trainer set-up, "before" samples)
  train         trainer.train() as the stage reports it (summary.json train_runtime_s): optimiser
                steps, and generation for GRPO and the RLHF policy
  other         the rest of the stage (saving the adapter, "after" samples, metrics)
Then it fits wall = a + b·rows per model (least squares, R²) and prints the ×4/×1 and ×16/×4 ratios.

Run: bench/run-scaling.sh [--factors 1,4,16] [--models smoke,tiny-256] [--out bench/results/scaling.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
from benchlib import ROOT, TINY_256, TINY_256_ARGS, Scratch, ensure_tiny_model, machine, run_cli, table, versions, write_results  # noqa: E402

SMOKE = ROOT / "data" / "smoke"
FILES = {  # config key → smoke file
    "data.sft.path": "sft.jsonl",
    "data.dpo.path": "dpo.jsonl",
    "data.grpo.path": "grpo.jsonl",
    "data.rlhf.preferences.path": "preferences.jsonl",
    "data.rlhf.prompts.path": "prompts.jsonl",
}
EPOCH_STAGES = ["stages.sft", "stages.dpo", "stages.grpo", "stages.rlhf.reward_model", "stages.rlhf.policy"]
MODELS = {
    "smoke": (ROOT / "data" / "smoke-model", None),
    "tiny-256": (TINY_256, TINY_256_ARGS),
}


def make_data(folder: Path, factor: int) -> dict[str, int]:
    """The smoke files, each row repeated `factor` times (whole file repeated: epochs stay shuffled)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in sorted(set(FILES.values())):
        lines = [l for l in (SMOKE / name).read_text().splitlines() if l.strip()]
        (folder / name).write_text("\n".join(lines * factor) + "\n")
        rows[name] = len(lines) * factor
    return rows


def ensure_model(name: str) -> Path:
    path, build_args = MODELS[name]
    if build_args is None:
        if not (path / "config.json").is_file():
            sys.exit(f"{path} is missing: run `make setup` (it builds the smoke model).")
        return path
    return ensure_tiny_model(path, build_args)


def params(path: Path) -> int | None:
    from safetensors import safe_open

    f = path / "model.safetensors"
    if not f.is_file():
        return None
    n = 0
    with safe_open(str(f), "pt") as st:
        for k in st.keys():
            shape = st.get_slice(k).get_shape()
            p = 1
            for d in shape:
                p *= d
            n += p
    return n


def phases(run: dict, runs_dir: Path) -> dict:
    """Where the wall time went, from the NDJSON events (timestamps) and each stage's summary.json."""
    ev, t0 = run["events"], run["t0"]
    ts = lambda e: e["ts"] - t0  # noqa: E731
    run_start = next(e for e in ev if e["event"] == "run_start")
    stage_starts = [e for e in ev if e["event"] == "stage_start"]
    out = {"cli+validate": ts(run_start), "sidecar": ts(stage_starts[0]) - ts(run_start), "load": 0.0, "train": 0.0, "other": 0.0}
    per_stage = {}
    run_dir = Path(run_start["run_dir"])
    for s in stage_starts:
        name = s["stage"]
        end = next(e for e in ev if e["event"] == "stage_end" and e["stage"] == name)
        training = next((e for e in ev if e["event"] == "state" and e.get("stage") == name and e["state"] == "training"), None)
        load = (ts(training) if training else ts(end)) - ts(s)
        train = train_runtime(run_dir / "stages" / name)
        other = max(0.0, (ts(end) - ts(s)) - load - (train or 0.0))
        per_stage[name] = {"wall_s": round(ts(end) - ts(s), 3), "load_s": round(load, 3),
                           "train_s": None if train is None else round(train, 3), "other_s": round(other, 3)}
        out["load"] += load
        out["train"] += train or 0.0
        out["other"] += other
    last_end = max(ts(e) for e in ev if e["event"] == "stage_end")
    out["shutdown"] = run["wall_s"] - last_end
    return {"phases_s": {k: round(v, 3) for k, v in out.items()}, "stages": per_stage}


def train_runtime(stage_dir: Path) -> float | None:
    """summary.json's sidecar.train_runtime_s (RLHF: already the sum of its reward-model and policy phases)."""
    f = stage_dir / "summary.json"
    if not f.is_file():
        return None
    v = json.loads(f.read_text()).get("sidecar", {}).get("train_runtime_s")
    return float(v) if isinstance(v, (int, float)) else None


def fit(xs: list[float], ys: list[float]) -> dict:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"startup_s": round(a, 3), "per_row_ms": round(b * 1000, 4), "r2": round(1 - ss_res / ss_tot, 4) if ss_tot else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", default="1,4,16")
    ap.add_argument("--models", default="smoke,tiny-256")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaling.json")
    a = ap.parse_args()
    factors = [int(x) for x in a.factors.split(",")]
    models = a.models.split(",")
    for m in models:
        if m not in MODELS:
            sys.exit(f"unknown model {m!r}; choose from {', '.join(MODELS)}")

    info = {"machine": machine(), "versions": versions()}
    print(f"machine: {info['machine']['cpus']} CPUs, {info['machine']['cpu']}, load {info['machine']['load_avg_at_start']}")
    results = []
    with tempfile.TemporaryDirectory(prefix="posttrain-scaling-") as tmp:
        for model in models:
            path = ensure_model(model)
            n_params = params(path)
            for f in factors:
                data = Path(tmp) / f"x{f}"
                rows = make_data(data, f)
                sets = [f"{k}={data / v}" for k, v in FILES.items()]
                sets += [f"{s}.max_steps=null" for s in EPOCH_STAGES] + [f"{s}.epochs=1" for s in EPOCH_STAGES]
                sets += [f"model.id={path}"]
                with Scratch(f"scaling-{model}-x{f}") as runs:
                    args = ["run", "--preset", "smoke", "--set", f"runtime.runs_dir={runs}"]
                    for s in sets:
                        args += ["--set", s]
                    run = run_cli(args)
                    split = phases(run, runs)
                total_rows = sum(rows.values())
                r = {"model": model, "params": n_params, "factor": f, "rows": total_rows, "wall_s": round(run["wall_s"], 3), **split}
                results.append(r)
                p = split["phases_s"]
                print(f"  {model:<9} ×{f:<3} rows {total_rows:>5}  wall {run['wall_s']:6.1f} s  "
                      f"(cli+validate {p['cli+validate']:.1f}, sidecar {p['sidecar']:.1f}, load {p['load']:.1f}, train {p['train']:.1f}, other {p['other']:.1f})", flush=True)
                # Keep what is measured so far: a long sweep cut short still leaves its runs.
                a.out.with_suffix(".partial.json").write_text(json.dumps({"bench": "scaling", **info, "runs": results}, indent=1) + "\n")

    fits, measures = {}, []
    for model in models:
        rs = [r for r in results if r["model"] == model]
        fits[model] = fit([r["rows"] for r in rs], [r["wall_s"] for r in rs])
        by = {r["factor"]: r["wall_s"] for r in rs}
        for hi, lo in ((4, 1), (16, 4)):
            if hi in by and lo in by:
                measures.append({"name": f"{model} wall ×{hi} / ×{lo}", "value": round(by[hi] / by[lo], 3), "unit": "ratio",
                                 "note": "4.0 would be perfectly linear with no fixed cost"})
        measures.append({"name": f"{model} start-up (fit intercept)", "value": fits[model]["startup_s"], "unit": "s"})
        measures.append({"name": f"{model} cost per row (fit slope)", "value": fits[model]["per_row_ms"], "unit": "ms/row"})
        measures.append({"name": f"{model} linearity R²", "value": fits[model]["r2"], "unit": ""})
    if len(models) == 2:
        a_, b_ = models
        for f in factors:
            wa = next((r["wall_s"] for r in results if r["model"] == a_ and r["factor"] == f), None)
            wb = next((r["wall_s"] for r in results if r["model"] == b_ and r["factor"] == f), None)
            if wa and wb:
                measures.append({"name": f"wall {b_} / {a_} at ×{f}", "value": round(wb / wa, 3), "unit": "ratio"})

    print()
    print(table(["model", "×", "rows", "wall s", "cli+val", "sidecar", "load", "train", "other"],
                [[r["model"], r["factor"], r["rows"], r["wall_s"], *(r["phases_s"][k] for k in ("cli+validate", "sidecar", "load", "train", "other"))] for r in results]))
    print()
    print(table(["model", "params", "start-up s", "ms/row", "R²"],
                [[m, next(r["params"] for r in results if r["model"] == m), fits[m]["startup_s"], fits[m]["per_row_ms"], fits[m]["r2"]] for m in models]))
    a.out.with_suffix(".partial.json").unlink(missing_ok=True)
    write_results(a.out, {"bench": "scaling", **info,
                          "config": {"preset": "smoke", "factors": factors, "models": models, "bound": "epochs=1 on every stage"},
                          "runs": results, "fits": fits, "measures": measures})


if __name__ == "__main__":
    main()
