"""Pipeline benchmarks on the smoke preset: orchestration overhead and warm sidecar.

Three set-ups, each the whole smoke pipeline (SFT -> DPO -> GRPO -> RLHF, same models, data,
steps and checkpoint cadence), each timed as the wall time of the process(es), start to exit:

  posttrain  `posttrain run --preset smoke --json`: one CLI process, one sidecar for all stages
  plain      `bench/plain_trl.py`: the same four TRL trainers in one Python process, written
             directly against TRL/PEFT/transformers (no posttrain code)
  chained    `posttrain run --stages sft`, then `posttrain stage dpo|grpo|rlhf --run <id>`: four
             CLI processes, a new sidecar (and torch import) per stage, as chained TRL scripts do

Targets: overhead = posttrain / plain <= 1.10; the whole posttrain pipeline <= 20 s; sidecar
spawn -> hello <= 0.5 s. Reported, no target: warm saving (chained - posttrain), time to the first
metric. Each repetition runs every set-up once; the order alternates (even reps forwards, odd reps
backwards) so drift on a shared machine hits both sides alike. Medians over repetitions.

    .venv/bin/python bench/pipeline.py [--reps 3] [--only overhead|warm] [--out-dir bench/results]

Every run writes into a fresh temp folder that is removed afterwards (runs_dir / --out).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
from benchlib import (  # noqa: E402
    ROOT, Scratch, first, machine, median, ratio, run_cli, run_plain, table, target, versions, write_results,
)

STAGES = ["sft", "dpo", "grpo", "rlhf"]


def phases(run: dict) -> dict:
    """Where a `posttrain run`'s wall time went, from its own NDJSON event timestamps (controller
    clock = this clock) and the harness's process start/exit."""
    ev, t0 = run["events"], run["t0"]
    ts = lambda pred: (e := first(ev, pred)) and e["ts"]  # noqa: E731
    run_start = ts(lambda e: e["event"] == "run_start")
    starting = ts(lambda e: e["event"] == "sidecar" and e["state"] == "starting")
    ready = ts(lambda e: e["event"] == "sidecar" and e["state"] == "ready")
    stage0 = ts(lambda e: e["event"] == "stage_start")
    metric0 = ts(lambda e: e["event"] == "metric")
    stopping = ts(lambda e: e["event"] == "sidecar" and e["state"] == "stopping")
    run_end = ts(lambda e: e["event"] == "run_end")
    ends = {e["stage"]: e["wall_s"] for e in ev if e["event"] == "stage_end"}
    return {
        "wall_s": run["wall_s"],
        # node start, config resolution, data validation + canonical copies, run folder
        "cli_to_run_start_s": run_start - t0,
        # bind + spawn + interpreter start + light imports + hello/ack
        "spawn_to_hello_s": ready - starting,
        # torch/transformers/trl imports happen here: preflight is the first heavy request
        "hello_to_first_stage_s": stage0 - ready,
        "stages_s": ends,
        "stages_sum_s": sum(ends.values()),
        "shutdown_s": run_end - stopping,
        "run_end_to_exit_s": t0 + run["wall_s"] - run_end,
        "first_metric_s": metric0 - t0,
        "spawn_to_first_metric_s": metric0 - starting,
    }


def samples_s(run: dict) -> float:
    """Seconds the sidecar spent on before/after samples (summary.json, sidecar.samples_s)."""
    run_dir = Path(first(run["events"], lambda e: e["event"] == "run_start")["run_dir"])
    total = 0.0
    for f in run_dir.glob("stages/*/summary.json"):
        total += float((json.loads(f.read_text()).get("sidecar") or {}).get("samples_s") or 0.0)
    return total


def one_posttrain() -> dict:
    with Scratch("run") as d:
        r = run_cli(["run", "--preset", "smoke", "--set", f"runtime.runs_dir={d}"])
        return {**phases(r), "samples_s": samples_s(r)}


def one_plain() -> dict:
    with Scratch("plain") as d:
        r = run_plain(["--out", str(d / "out")], d / "report.json")
    rep = r["report"]
    return {"wall_s": r["wall_s"], "imports_s": rep["imports_s"], "stages_s": {k: v["wall_s"] for k, v in rep["stages"].items()},
            # interpreter start (before the script's first line) + interpreter teardown at exit
            "interpreter_start_exit_s": r["wall_s"] - rep["process_to_end_s"]}


def one_chained() -> dict:
    with Scratch("chain") as d:
        first_run = run_cli(["run", "--preset", "smoke", "--stages", "sft", "--set", f"runtime.runs_dir={d}"])
        run_id = first(first_run["events"], lambda e: e["event"] == "run_start")["run_id"]
        procs = [first_run] + [run_cli(["stage", s, "--run", run_id, "--runs-dir", str(d)]) for s in STAGES[1:]]
    per = [phases(p) for p in procs]
    return {"wall_s": sum(p["wall_s"] for p in per), "process_walls_s": [p["wall_s"] for p in per],
            "hello_to_first_stage_s": [p["hello_to_first_stage_s"] for p in per],
            "stages_s": {s: p["stages_s"].get(s) for s, p in zip(STAGES, per)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=["overhead", "warm"], default=None)
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    want = {"overhead", "warm"} if a.only is None else {a.only}
    kinds = ["posttrain"] + (["plain"] if "overhead" in want else []) + (["chained"] if "warm" in want else [])
    run_one = {"posttrain": one_posttrain, "plain": one_plain, "chained": one_chained}

    info = {"machine": machine(), "versions": versions()}
    print(f"machine: {info['machine']}\nversions: {info['versions']}\n")
    reps = []
    for i in range(a.reps):
        order = kinds if i % 2 == 0 else kinds[::-1]
        rep = {"order": order}
        for k in order:
            rep[k] = run_one[k]()
            print(f"rep {i + 1}/{a.reps} {k:9s} {rep[k]['wall_s']:6.2f} s", flush=True)
        reps.append(rep)

    col = lambda kind, key: [r[kind][key] for r in reps]  # noqa: E731
    stage_med = lambda kind, s: median([r[kind]["stages_s"].get(s) for r in reps])  # noqa: E731
    pt = median(col("posttrain", "wall_s"))
    out_dir = Path(a.out_dir)
    common = {"config": {"reps": a.reps, "preset": "smoke"}, **info}

    print()
    if "overhead" in want:
        plain = median(col("plain", "wall_s"))
        rows = [["whole process (wall)", pt, plain, ratio(pt, plain)]]
        rows += [[f"stage {s} (model load .. adapter saved)", stage_med("posttrain", s), stage_med("plain", s), ratio(stage_med("posttrain", s), stage_med("plain", s))] for s in STAGES]
        print("Orchestration overhead (median s)\n" + table(["", "posttrain", "plain TRL", "ratio"], rows))
        ph = {k: median([r["posttrain"][k] for r in reps]) for k in ("cli_to_run_start_s", "spawn_to_hello_s", "hello_to_first_stage_s", "stages_sum_s", "shutdown_s", "run_end_to_exit_s", "samples_s")}
        pl = {"imports_s": median(col("plain", "imports_s")), "interpreter_start_exit_s": median(col("plain", "interpreter_start_exit_s"))}
        print("\nposttrain phases (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in ph.items()))
        print("plain phases (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in pl.items()))
        write_results(out_dir / "overhead.json", {
            "bench": "overhead", **common, "reps": [{"order": r["order"], "posttrain": r["posttrain"], "plain": r["plain"]} for r in reps],
            "median": {"posttrain_wall_s": pt, "plain_wall_s": plain, "posttrain_phases_s": ph, "plain_phases_s": pl,
                       "stages_s": {s: {"posttrain": stage_med("posttrain", s), "plain": stage_med("plain", s)} for s in STAGES}},
            "targets": [target("overhead: posttrain run --preset smoke vs plain TRL script (wall)", pt, plain, ratio(pt, plain), "<=", 1.10, "s")],
        })

    if "warm" in want:
        ch = median(col("chained", "wall_s"))
        hello = median(col("posttrain", "spawn_to_hello_s"))
        fm = median(col("posttrain", "first_metric_s"))
        fm_spawn = median(col("posttrain", "spawn_to_first_metric_s"))
        rows = [["whole pipeline (wall)", pt, ch, ratio(pt, ch)]]
        rows += [[f"stage {s}", stage_med("posttrain", s), stage_med("chained", s), ratio(stage_med("posttrain", s), stage_med("chained", s))] for s in STAGES]
        print("\nWarm sidecar (median s)\n" + table(["", "one sidecar", "new per stage", "ratio"], rows))
        print(f"saving: {ch - pt:.2f} s ({1 - pt / ch:.0%}); spawn -> hello {hello * 1000:.0f} ms; "
              f"CLI start -> first metric {fm:.2f} s (sidecar spawn -> first metric {fm_spawn:.2f} s)")
        write_results(out_dir / "warm.json", {
            "bench": "warm", **common, "reps": [{"order": r["order"], "posttrain": r["posttrain"], "chained": r["chained"]} for r in reps],
            "median": {"posttrain_wall_s": pt, "chained_wall_s": ch, "saving_s": ch - pt, "spawn_to_hello_s": hello,
                       "first_metric_s": fm, "spawn_to_first_metric_s": fm_spawn,
                       "chained_process_walls_s": [median([r["chained"]["process_walls_s"][i] for r in reps]) for i in range(4)]},
            "targets": [
                target("warm: one sidecar for 4 stages vs a new process per stage (wall)", pt, ch, ratio(pt, ch), "<=", 1.0, "s"),
                target("smoke pipeline wall time (posttrain run --preset smoke)", pt, None, None, "<=", 20, "s"),
                target("sidecar cold start: spawn -> hello", hello, None, None, "<=", 0.5, "s"),
            ],
        })


if __name__ == "__main__":
    main()
