"""Training throughput through posttrain vs the direct TRL script, on a larger tiny model.

The model: the smoke model's family and tokenizer, hidden 256, 4 layers (~2.7M parameters),
built offline by scripts/build_smoke_model.py into bench/models/tiny-256 (git-ignored) when it is
missing. Both sides run SFT -> DPO -> GRPO with the smoke preset's settings on that model:

  posttrain  `posttrain run --preset smoke --stages sft,dpo,grpo --set model.id=<model>`
  plain      `bench/plain_trl.py --model <model> --stages sft,dpo,grpo`

What each number times: TRL's own `train_runtime` (the Trainer's timer around its training loop:
every step, the logging callbacks, posttrain's metric streaming and the periodic checkpoint saves;
not model loading, data preparation or the before/after samples). Counts are TRL's too:
SFT and DPO tokens/s = the trainer's running token count (posttrain: summary.json `tokens_seen`;
plain: the same counter) / train_runtime; GRPO samples/s = completions trained on (steps x
batch_size, batch_size counting completions) / train_runtime. Target: posttrain / plain >= 0.95.
Also shown: the wall time of the trainer.train() call as each side measures it (posttrain's
summary `train_runtime_s`, the plain script's `train_call_s`).

Peak RSS per stage: posttrain's sidecar from outside (/proc/<pid>/clear_refs "5" at stage_start,
VmHWM from /proc/<pid>/status at stage_end, see lib/benchlib.Watch); the plain script the same
way on itself. Stage = model load to adapter saved (posttrain: samples included).

    .venv/bin/python bench/throughput.py [--reps 3] [--model bench/models/tiny-256]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
from benchlib import (  # noqa: E402
    ROOT, TINY_256, TINY_256_ARGS, Scratch, Watch, ensure_tiny_model, first, machine, median, ratio, run_cli, run_plain, table, target, versions, write_results,
)

STAGES = ["sft", "dpo", "grpo"]
UNIT = {"sft": "tokens/s", "dpo": "tokens/s", "grpo": "samples/s"}
BATCH = {"sft": 8, "dpo": 8, "grpo": 32}  # the smoke preset's batch sizes (grpo: completions per step)


def rate(stage: str, tokens, steps, runtime):
    if not runtime:
        return None
    return (tokens if UNIT[stage] == "tokens/s" else steps * BATCH[stage]) / runtime


def one_posttrain(model: Path) -> dict:
    with Scratch("tp-run") as d:
        w = Watch()
        r = run_cli(["run", "--preset", "smoke", "--stages", ",".join(STAGES), "--set", f"model.id={model}",
                     "--set", f"runtime.runs_dir={d}"], watch=w)
        run_dir = Path(first(r["events"], lambda e: e["event"] == "run_start")["run_dir"])
        out = {}
        for s in STAGES:
            summ = json.loads((run_dir / "stages" / s / "summary.json").read_text())
            sc = summ["sidecar"]
            out[s] = {"rate": rate(s, sc.get("tokens_seen"), sc["global_step"], sc.get("train/train_runtime")),
                      "train_runtime": sc.get("train/train_runtime"), "train_call_s": sc.get("train_runtime_s"),
                      "tokens": sc.get("tokens_seen"), "steps": sc["global_step"], "stage_wall_s": summ["wall_s"],
                      "samples_s": sc.get("samples_s"), "peak_rss_mb": w.peaks.get(s)}
        return out


def one_plain(model: Path) -> dict:
    with Scratch("tp-plain") as d:
        r = run_plain(["--model", str(model), "--stages", ",".join(STAGES), "--out", str(d / "out")], d / "report.json")
    return {s: {"rate": rate(s, v["tokens"], v["steps"], v["train_runtime"]), "train_runtime": v["train_runtime"],
                "train_call_s": v["train_call_s"], "tokens": v["tokens"], "steps": v["steps"], "stage_wall_s": v["wall_s"],
                "peak_rss_mb": v["peak_rss_mb"]}
            for s, v in r["report"]["stages"].items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default=str(TINY_256))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "throughput.json"))
    a = ap.parse_args()
    model = ensure_tiny_model(Path(a.model).resolve(), TINY_256_ARGS)

    info = {"machine": machine(), "versions": versions()}
    print(f"machine: {info['machine']}\nversions: {info['versions']}\nmodel: {model}\n")
    reps = []
    for i in range(a.reps):
        order = ["posttrain", "plain"] if i % 2 == 0 else ["plain", "posttrain"]
        rep = {"order": order}
        for k in order:
            rep[k] = one_posttrain(model) if k == "posttrain" else one_plain(model)
            print(f"rep {i + 1}/{a.reps} {k:9s} " + "  ".join(f"{s} {rep[k][s]['rate']:.0f} {UNIT[s]}" for s in STAGES), flush=True)
        reps.append(rep)

    med = lambda kind, s, key: median([r[kind][s][key] for r in reps])  # noqa: E731
    rows, targets, summary = [], [], {}
    for s in STAGES:
        p, b = med("posttrain", s, "rate"), med("plain", s, "rate")
        rows.append([f"{s} {UNIT[s]} (TRL train_runtime)", p, b, ratio(p, b)])
        pc, bc = med("posttrain", s, "train_call_s"), med("plain", s, "train_call_s")
        rows.append([f"{s} trainer.train() call, s", pc, bc, ratio(pc, bc)])
        pr, br = med("posttrain", s, "peak_rss_mb"), med("plain", s, "peak_rss_mb")
        rows.append([f"{s} peak RSS of the stage, MiB", pr, br, ratio(pr, br)])
        targets.append(target(f"throughput {s} ({UNIT[s]}, tiny-256)", p, b, ratio(p, b), ">=", 0.95, UNIT[s]))
        summary[s] = {"posttrain": {k: med("posttrain", s, k) for k in ("rate", "train_runtime", "train_call_s", "tokens", "stage_wall_s", "samples_s", "peak_rss_mb")},
                      "plain": {k: med("plain", s, k) for k in ("rate", "train_runtime", "train_call_s", "tokens", "stage_wall_s", "peak_rss_mb")}}
    print("\nThroughput (median of reps)\n" + table(["", "posttrain", "plain TRL", "ratio"], rows))
    write_results(Path(a.out), {"bench": "throughput", **info, "config": {"reps": a.reps, "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
                                "stages": STAGES, "preset": "smoke"}, "reps": reps, "median": summary, "targets": targets})


if __name__ == "__main__":
    main()
