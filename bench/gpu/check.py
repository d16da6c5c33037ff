"""The GPU check: every stage with QLoRA and with LoRA, through the real sidecar, on models built here.

Made for an air-gapped GPU host: Python with torch (CUDA), transformers, peft and accelerate; no
hub, no pip index, no Node.js. What the host lacks (trl, bitsandbytes, datasets, pyzmq, ...) comes
as wheels from `bench/gpu/prepare.sh`, which also writes the resolved check config with the real
CLI; `bench/gpu/run.sh` installs the wheels offline and calls this script. One command, bounded
by --budget-s (default 420 s): jobs that would not fit are recorded as skipped, never half-run.

How it drives the sidecar: a small Python controller of the protocol (posttrain_sidecar.client,
the one the sidecar's pytest suite plays the controller with), not the TypeScript CLI. Carrying
Node.js would cost ~30 MB of the 64 MiB the host accepts, next to bitsandbytes' wheel; the
protocol, the sidecar, its preflight and every stage file are the same code a `posttrain run`
uses. What is not exercised here is the controller (config resolution happens in prepare, with
the real CLI; data validation is covered by the CPU tests).

Models: built from configs with random weights (no hub): a Qwen2 shape at 0.5B and 1.5B and a
Llama shape at 8B (memory only), with the smoke tokenizer (its 366 ids are valid in any
vocabulary; generated ids beyond it decode to nothing). Random weights measure memory and speed,
not learning. Data: GSM8K questions and answers from data/real, repeated to fill the lengths.

Jobs (GPU): posttrain QLoRA and LoRA (bf16) on the 0.5B shape through sft → dpo → grpo → rlhf;
the same stages in bench/plain_trl.py (TRL directly, same shapes and settings) for the ratio;
QLoRA and LoRA SFT on the 1.5B shape (sequence 512, batch 1); QLoRA SFT on the 8B shape.
Recorded per stage: the count of bitsandbytes Linear4bit modules, peak GPU memory, tokens/s
(SFT, DPO, reward model) or completions/s (GRPO, RLHF policy), and the preflight's memory
estimate beside the measured peak.

The CPU twin (--twin; tests/python/test_gpu_check.py runs it in `make test`) is the same script,
driver and code path on a tiny model built the same way, LoRA in float32 on the CPU, so the kit
cannot rot between the rare occasions a GPU is at hand. There the estimate is of the peak
resident set, measured as the stage's VmHWM.

    python bench/gpu/check.py --config CONFIG.json --out DIR [--twin] [--budget-s 420] [--jobs a,b]

Writes DIR/gpu-check.json after every job ({machine, versions, jobs: [...], targets: [...]}).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sidecar"))

from posttrain_sidecar.client import Controller  # noqa: E402

GIB = 2**30
STAGES = ["sft", "dpo", "grpo", "rlhf"]

# Real architectures at real sizes (Qwen2.5-0.5B / 1.5B, Llama-3-8B configs); random weights.
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2-0.5b": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=896, intermediate_size=4864,
                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                       tie_word_embeddings=True, max_position_embeddings=4096, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "qwen2-1.5b": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=1536, intermediate_size=8960,
                       num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                       tie_word_embeddings=True, max_position_embeddings=4096, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "llama-8b": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=4096, intermediate_size=14336,
                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                     tie_word_embeddings=False, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5),
    # SmolLM2-135M's shape (the cpu-real preset's model): the CPU memory suite's.
    "smollm2-135m": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5),
    # The twin's: built by the same code, small enough for two CPU cores.
    "tiny": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                 tie_word_embeddings=True, max_position_embeddings=512, rms_norm_eps=1e-6),
}


@dataclass
class Job:
    name: str
    shape: str
    mode: str  # "qlora" | "lora"
    engine: str  # "posttrain" | "plain"
    stages: list[str]
    min_s: int  # skipped unless at least this much of the budget is left
    settings: dict[str, Any] = field(default_factory=dict)  # config patches (dot keys) for this job


# Every --set the check's config gets (prepare.py passes them to `posttrain config --preset gpu`).
# Short runs: a few steps per stage, lengths as the targets name them (SFT 512, batch 1).
CHECK_SETTINGS: list[str] = [
    "runtime.memory_check=warn",  # measure even where the estimate says it will not fit
    "model.gradient_checkpointing=true",
    "data.sft.max_length=512", "stages.sft.batch_size=1", "stages.sft.max_steps=8", "stages.sft.save_steps=null",
    "data.dpo.max_length=512", "data.dpo.max_prompt_length=256", "stages.dpo.batch_size=1", "stages.dpo.grad_accum=1",
    "stages.dpo.max_steps=6", "stages.dpo.save_steps=null",
    "data.grpo.max_prompt_length=128", "stages.grpo.batch_size=8", "stages.grpo.num_generations=4",
    "stages.grpo.max_completion_length=64", "stages.grpo.max_steps=3", "stages.grpo.save_steps=null",
    "data.rlhf.preferences.max_length=256",
    "stages.rlhf.reward_model.batch_size=2", "stages.rlhf.reward_model.max_steps=4", "stages.rlhf.reward_model.save_steps=null",
    "data.rlhf.prompts.max_prompt_length=128", "stages.rlhf.policy.batch_size=8", "stages.rlhf.policy.num_generations=4",
    "stages.rlhf.policy.max_completion_length=32", "stages.rlhf.policy.max_steps=2", "stages.rlhf.policy.save_steps=null",
]

GPU_JOBS = [
    Job("0.5b-qlora", "qwen2-0.5b", "qlora", "posttrain", STAGES, 60),
    Job("0.5b-lora", "qwen2-0.5b", "lora", "posttrain", STAGES, 60),
    Job("0.5b-qlora-plain", "qwen2-0.5b", "qlora", "plain", STAGES, 60),
    Job("1.5b-qlora", "qwen2-1.5b", "qlora", "posttrain", ["sft"], 45),
    Job("1.5b-lora", "qwen2-1.5b", "lora", "posttrain", ["sft"], 45),
    Job("8b-qlora", "llama-8b", "qlora", "posttrain", ["sft"], 120, {"stages.sft.max_steps": 3}),
]

# The twin: the same stages on the tiny shape, in float32 on the CPU with fewer steps and lengths.
TWIN = {
    "runtime.device": "cpu", "runtime.threads": 1, "model.dtype": "float32",
    "data.sft.max_length": 64, "stages.sft.batch_size": 2, "stages.sft.max_steps": 4,
    "data.dpo.max_length": 64, "data.dpo.max_prompt_length": 32, "stages.dpo.max_steps": 3,
    "data.grpo.max_prompt_length": 32, "stages.grpo.max_completion_length": 16, "stages.grpo.max_steps": 2,
    "data.rlhf.preferences.max_length": 64, "stages.rlhf.reward_model.max_steps": 2,
    "data.rlhf.prompts.max_prompt_length": 32, "stages.rlhf.policy.max_completion_length": 8, "stages.rlhf.policy.max_steps": 1,
}
# The CPU memory suite: the estimate against the measured peak resident set of a 135M model at the
# cpu-real preset's lengths (a few steps each; ~2 min on 2 cores). bench/results/memory-cpu.json.
CPU_MEMORY = {
    "runtime.device": "cpu", "runtime.threads": 2, "model.dtype": "float32", "model.adapter.dropout": 0.0,
    "model.gradient_checkpointing": "auto",  # off on the CPU, as the cpu-real preset trains
    "data.sft.max_length": 256, "stages.sft.batch_size": 4, "stages.sft.max_steps": 3,
    "data.dpo.max_length": 192, "data.dpo.max_prompt_length": 128, "stages.dpo.batch_size": 2, "stages.dpo.max_steps": 2,
    "data.grpo.max_prompt_length": 192, "stages.grpo.batch_size": 8, "stages.grpo.num_generations": 4,
    "stages.grpo.max_completion_length": 96, "stages.grpo.max_steps": 1,
}
CPU_MEMORY_JOBS = [
    Job("135m-lora", "smollm2-135m", "lora", "posttrain", ["sft", "dpo", "grpo"], 0, dict(CPU_MEMORY)),
    Job("135m-lora-checkpointing", "smollm2-135m", "lora", "posttrain", ["sft", "grpo"], 0, {**CPU_MEMORY, "model.gradient_checkpointing": True}),
]
TWIN_JOBS = [
    Job("tiny-lora", "tiny", "lora", "posttrain", STAGES, 0, dict(TWIN)),
    # The check's config turns checkpointing on (as QLoRA on a GPU trains); this covers it off.
    Job("tiny-lora-no-checkpointing", "tiny", "lora", "posttrain", ["sft"], 0, {**TWIN, "model.gradient_checkpointing": "auto"}),
    Job("tiny-lora-plain", "tiny", "lora", "plain", STAGES, 0, dict(TWIN)),
]


# --------------------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def set_key(cfg: dict, dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for k in head:
        cfg = cfg[k]
    cfg[last] = value


def job_config(base: dict, job: Job, model_dir: Path, twin: bool) -> dict:
    cfg = copy.deepcopy(base)
    set_key(cfg, "model.id", str(model_dir))
    set_key(cfg, "model.adapter.mode", job.mode)
    set_key(cfg, "model.use_4bit", job.mode == "qlora")
    if not twin:
        set_key(cfg, "model.dtype", "bfloat16")
    for k, v in job.settings.items():
        set_key(cfg, k, v)
    return cfg


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "pyzmq", "msgpack"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_info() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return {"name": torch.cuda.get_device_name(0), "total_gib": round(total / GIB, 1), "free_gib": round(free / GIB, 1),
            "cuda": torch.version.cuda, "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}


def build_model(shape: str, dest: Path, twin: bool) -> Path:
    """A model folder from a config with random weights (bf16 on CUDA, float32 for the twin) and
    the smoke tokenizer; initialised on the GPU when there is one (an 8B init on CPU takes minutes)."""
    if (dest / "config.json").is_file():
        return dest
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ROOT / "data" / "smoke-model")
    spec = dict(SHAPES[shape])
    model_type = spec.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **spec, bos_token_id=None, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id)
    dtype = torch.float32 if twin else torch.bfloat16
    device = "cuda" if torch.cuda.is_available() and not twin else "cpu"
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    n = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    os.replace(tmp, dest)
    log(f"built {shape}: {n / 1e9:.2f}B parameters in {time.time() - t0:.0f} s → {dest}")
    return dest


def write_data(dest: Path, cfg: dict, rows: int = 64) -> tuple[dict[str, str], Path]:
    """Canonical rows for the sidecar (as the controller writes them) and the same rows in the
    smoke layout for plain_trl.py: GSM8K text cut with the models' tokenizer to just under the
    job's lengths, so every batch is as long as configured (a longer row would be dropped by TRL,
    a shorter one would measure less than the settings say)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ROOT / "data" / "smoke-model")
    tok.model_max_length = 10**9  # the whole text is tokenized once, then cut
    dest.mkdir(parents=True, exist_ok=True)
    src = [json.loads(line) for line in (ROOT / "data" / "real" / "gsm8k-train-1k.jsonl").read_text(encoding="utf-8").splitlines()[:rows]]
    text = " ".join(r["answer"] for r in src)
    ids = tok(text, add_special_tokens=False)["input_ids"]

    def cut(n: int, offset: int) -> str:
        """About n tokens of GSM8K answers, starting at a row-dependent place."""
        start = (offset * 97) % max(1, len(ids) - n)
        return tok.decode(ids[start:start + max(1, n)])

    d = cfg["data"]
    p_dpo, p_grpo, p_pol = d["dpo"]["max_prompt_length"], d["grpo"]["max_prompt_length"], d["rlhf"]["prompts"]["max_prompt_length"]
    sft_len, dpo_len, rm_len = d["sft"]["max_length"], d["dpo"]["max_length"], d["rlhf"]["preferences"]["max_length"]
    margin = 4  # a decode/encode round trip may merge or split a token
    sets = {
        "sft": [{"prompt": cut(sft_len // 4, i), "completion": cut(sft_len - sft_len // 4 - margin, i + 1)} for i in range(rows)],
        "dpo": [{"prompt": cut(p_dpo - margin, i), "chosen": cut(dpo_len - p_dpo - margin, i + 1),
                 "rejected": cut(dpo_len - p_dpo - margin, i + 2)} for i in range(rows)],
        "grpo": [{"prompt": cut(p_grpo - margin, i), "answer": src[i % len(src)]["answer"]} for i in range(rows)],
        "rlhf.preferences": [{"prompt": cut(rm_len // 4, i), "chosen": cut(rm_len // 2 - margin, i + 1),
                              "rejected": cut(rm_len // 2 - margin, i + 2)} for i in range(rows)],
        "rlhf.prompts": [{"prompt": cut(p_pol - margin, i)} for i in range(rows)],
    }
    canonical = {}
    for target, items in sets.items():
        p = dest / f"{target}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
        canonical[target] = str(p)
    plain = dest / "plain"
    plain.mkdir(exist_ok=True)
    smoke_names = {"sft": "sft.jsonl", "dpo": "dpo.jsonl", "grpo": "grpo.jsonl", "rlhf.preferences": "preferences.jsonl",
                   "rlhf.prompts": "prompts.jsonl"}
    for target, items in sets.items():
        if target == "sft":
            items = [{"prompt": r["prompt"], "response": r["completion"]} for r in items]
        (plain / smoke_names[target]).write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return canonical, plain


TARGETS = {"sft": ["sft"], "dpo": ["dpo"], "grpo": ["grpo"], "rlhf": ["rlhf.preferences", "rlhf.prompts"]}


# --------------------------------------------------------------------------------------------
# Measures per stage, from a stage summary (posttrain) or plain_trl.py's report.

def per_stage(stage: str, s: dict, cfg: dict) -> dict[str, Any]:
    """One row: steps, peak memory, throughput; RLHF's two phases as rm_* and the policy."""
    def one(sm: dict, gen_batch: int | None) -> dict[str, Any]:
        rt = sm.get("train_runtime_s") or sm.get("train_runtime")
        row = {"steps": sm.get("global_step") or sm.get("steps"), "train_s": rt,
               "peak_gpu_gib": sm.get("peak_gpu_mem_gb") or sm.get("peak_gpu_gib"),
               "peak_rss_gib": sm.get("peak_rss_gb") or ((sm.get("peak_rss_mb") or 0) / 1024 or None),
               "linear4bit_modules": sm.get("linear4bit_modules")}
        tokens = sm.get("tokens_seen") or sm.get("tokens")
        if gen_batch is None:
            row["tokens_per_s"] = tokens / rt if tokens and rt else None
        else:
            steps = row["steps"] or 0
            row["completions_per_s"] = steps * gen_batch / rt if rt else None
        return row

    st = cfg["stages"]
    if stage == "rlhf":
        policy = one(s.get("policy") or s, st["rlhf"]["policy"]["batch_size"])
        rm = one(s.get("reward_model") or {}, None)
        policy.update({f"rm_{k}": v for k, v in rm.items()})
        return policy
    return one(s, st["grpo"]["batch_size"] if stage == "grpo" else None)


def estimates_of(preflight: dict) -> dict[str, dict]:
    return {p["stage"]: p["data"] for p in preflight.get("problems", []) if p.get("code") == "memory_estimate" and p.get("data")}


def run_posttrain(job: Job, cfg: dict, data: dict[str, str], work: Path, deadline: float) -> dict[str, Any]:
    """One sidecar for the job's stages, chained through their adapters, as `posttrain run` does."""
    ctl = Controller(work)
    out: dict[str, Any] = {"stages": {}}
    try:
        threads = cfg["runtime"].get("threads")
        proc = ctl.spawn(None, module="posttrain_sidecar", **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        ctl.handshake(timeout=120)
        pf = ctl.preflight(cfg, job.stages, timeout=180)
        out["preflight_ok"] = pf["ok"]
        out["preflight"] = [f"{p['severity']} {p['stage'] or '-'} {p['code']}: {p['message']}" for p in pf["problems"]]
        est = estimates_of(pf)
        if not pf["ok"]:
            out["error"] = "preflight refused: " + "; ".join(p["message"] for p in pf["problems"] if p["severity"] == "error")
            return out
        adapter = None
        for stage in job.stages:
            left = deadline - time.monotonic()
            if left < 20:
                out["stages"][stage] = {"status": "skipped", "reason": "time budget"}
                continue
            t0 = time.monotonic()
            events, result = ctl.run_stage(stage, work / "stages" / stage, config=cfg,
                                           data={t: data[t] for t in TARGETS[stage]}, init_adapter=adapter, timeout=left)
            out.setdefault("logs", []).extend(f"{m['body'].get('level')} {stage}: {m['body'].get('message')}"
                                              for m in events if m["type"] == "event.log")
            row: dict[str, Any] = {"status": result["status"], "wall_s": round(time.monotonic() - t0, 1)}
            if result["status"] == "ok":
                row.update(per_stage(stage, result.get("summary") or {}, cfg))
                adapter = (result.get("summary") or {}).get("adapter")
            else:
                row["error"] = result.get("error")
            e = est.get(stage)
            if e:
                row["estimate_gib"] = e["total_gib"]
                row["estimate_parts_gib"] = e["parts_gib"]
                # RLHF's estimate is of its larger phase: the reward model's peak, or the policy's (the row's own).
                rm = "rm_" if e.get("phase") == "reward_model" else ""
                measured = row.get(f"{rm}peak_gpu_gib") or row.get(f"{rm}peak_rss_gib")
                row["estimate_ratio"] = round(e["total_gib"] / measured, 3) if measured else None
            out["stages"][stage] = row
            log(f"{job.name} {stage}: {json.dumps({k: v for k, v in row.items() if k != 'estimate_parts_gib'})}")
            if result["status"] != "ok":
                break
        ctl.send("shutdown")
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        out["sidecar_stderr_tail"] = proc.stderr()[-2000:]
    finally:
        ctl.close()
    return out


def plain_sets(cfg: dict, job: Job, twin: bool) -> list[str]:
    """bench/plain_trl.py's --set flags for the same work as the job's config."""
    st, d, ad = cfg["stages"], cfg["data"], cfg["model"]["adapter"]
    sets = {
        "lora.r": ad["r"], "lora.alpha": ad["alpha"], "lora.dropout": ad["dropout"],
        "sft.max_steps": st["sft"]["max_steps"], "sft.batch": st["sft"]["batch_size"], "sft.max_length": d["sft"]["max_length"],
        "sft.lr": st["sft"]["learning_rate"], "sft.save_steps": 10**6,
        "dpo.max_steps": st["dpo"]["max_steps"], "dpo.batch": st["dpo"]["batch_size"], "dpo.max_length": d["dpo"]["max_length"],
        "dpo.max_prompt_length": d["dpo"]["max_prompt_length"], "dpo.lr": st["dpo"]["learning_rate"], "dpo.save_steps": 10**6,
        "grpo.max_steps": st["grpo"]["max_steps"], "grpo.batch": st["grpo"]["batch_size"],
        "grpo.num_generations": st["grpo"]["num_generations"], "grpo.max_completion_length": st["grpo"]["max_completion_length"],
        "grpo.max_prompt_length": d["grpo"]["max_prompt_length"], "grpo.temperature": st["grpo"]["temperature"],
        "grpo.beta": st["grpo"]["beta"], "grpo.lr": st["grpo"]["learning_rate"], "grpo.save_steps": 10**6,
        "rm.max_steps": st["rlhf"]["reward_model"]["max_steps"], "rm.batch": st["rlhf"]["reward_model"]["batch_size"],
        "rm.max_length": d["rlhf"]["preferences"]["max_length"], "rm.save_steps": 10**6,
        "rm.eval_fraction": d["rlhf"]["preferences"]["eval_fraction"],
        "policy.max_steps": st["rlhf"]["policy"]["max_steps"], "policy.batch": st["rlhf"]["policy"]["batch_size"],
        "policy.num_generations": st["rlhf"]["policy"]["num_generations"],
        "policy.max_completion_length": st["rlhf"]["policy"]["max_completion_length"],
        "policy.max_prompt_length": d["rlhf"]["prompts"]["max_prompt_length"], "policy.save_steps": 10**6,
    }
    return [f"{k}={v}" for k, v in sets.items()]


def run_plain(job: Job, cfg: dict, plain_data: Path, work: Path, deadline: float, twin: bool) -> dict[str, Any]:
    report = work / "plain-report.json"
    cmd = [sys.executable, str(ROOT / "bench" / "plain_trl.py"), "--model", cfg["model"]["id"], "--data", str(plain_data),
           "--out", str(work / "plain"), "--stages", ",".join(job.stages), "--report", str(report),
           "--device", cfg["runtime"]["device"] if twin else "cuda", "--mode", job.mode,
           "--dtype", cfg["model"]["dtype"], "--threads", str(cfg["runtime"].get("threads") or 0)]
    if cfg["model"]["gradient_checkpointing"] is True:
        cmd.append("--checkpointing")
    for s in plain_sets(cfg, job, twin):
        cmd += ["--set", s]
    left = max(10.0, deadline - time.monotonic())
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=left, cwd=work)
    except subprocess.TimeoutExpired:
        return {"error": f"plain TRL script passed the time budget ({left:.0f} s)", "stages": {}}
    if done.returncode != 0 or not report.is_file():
        return {"error": f"plain TRL script exited {done.returncode}", "stderr_tail": done.stderr[-3000:], "stages": {}}
    rep = json.loads(report.read_text())
    stages = {}
    for stage in job.stages:
        s = rep["stages"].get(stage)
        if s is None:
            continue
        sm = {**s, **(s.get("policy") or {})}
        stages[stage] = {"status": "ok", **per_stage(stage, {**sm, "reward_model": s.get("reward_model") or {}} if stage == "rlhf" else sm, cfg)}
        log(f"{job.name} {stage}: {json.dumps(stages[stage])}")
    return {"stages": stages}


# --------------------------------------------------------------------------------------------
# Targets: the numbers the issue asks for, from this run's jobs.

def targets(jobs: dict[str, dict]) -> list[dict[str, Any]]:
    out = []

    def stage(job: str, st: str) -> dict:
        return ((jobs.get(job) or {}).get("stages") or {}).get(st) or {}

    def add(name, value, target, unit=""):
        out.append({"name": name, "value": None if value is None else round(value, 3), "target": target, "unit": unit})

    q, l = stage("1.5b-qlora", "sft").get("peak_gpu_gib"), stage("1.5b-lora", "sft").get("peak_gpu_gib")
    add("1.5B SFT seq 512 batch 1: QLoRA / LoRA bf16 peak GPU memory", q / l if q and l else None, "< 1 (well under)")
    add("8B QLoRA SFT peak GPU memory", stage("8b-qlora", "sft").get("peak_gpu_gib"), "<= 7.5", "GiB")
    for st in STAGES:
        a, b = stage("0.5b-qlora", st), stage("0.5b-qlora-plain", st)
        key = "completions_per_s" if st in ("grpo", "rlhf") else "tokens_per_s"
        add(f"0.5B QLoRA {st}: posttrain / plain TRL {key.replace('_per_s', '/s')}",
            a[key] / b[key] if a.get(key) and b.get(key) else None, ">= 1.0")
    four_bit = [r.get("linear4bit_modules") for j in jobs.values() if j.get("mode") == "qlora" and j.get("engine") == "posttrain"
                for r in (j.get("stages") or {}).values() if isinstance(r, dict) and r.get("status") == "ok"]
    if four_bit:
        add("QLoRA stages: fewest bitsandbytes Linear4bit modules in a stage's model", min(x or 0 for x in four_bit), "> 0")
    ratios = [r["estimate_ratio"] for j in jobs.values() for r in (j.get("stages") or {}).values()
              if isinstance(r, dict) and r.get("estimate_ratio")]
    if ratios:
        add("memory estimate / measured peak, worst of all stages", max(ratios, key=lambda x: abs(x - 1)), "0.75 .. 1.25")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the resolved check config (prepare.sh writes it)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None, help="models, data and stage folders (default: OUT/work, removed after)")
    ap.add_argument("--twin", action="store_true", help="the CPU twin: tiny model, LoRA, float32, on the CPU (= --suite twin)")
    ap.add_argument("--suite", choices=["gpu", "twin", "cpu-memory"], default="gpu")
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--jobs", default=None, help="comma list of job names to run (default: all)")
    a = ap.parse_args()
    t_start = time.monotonic()
    deadline = t_start + a.budget_s
    a.out.mkdir(parents=True, exist_ok=True)
    work = (a.work or a.out / "work").resolve()  # the sidecar runs in the job folder: no relative paths
    keep_work = a.work is not None
    base = json.loads(a.config.read_text())
    suite = "twin" if a.twin else a.suite
    a.twin = suite != "gpu"  # every other suite runs on the CPU
    jobs = {"gpu": GPU_JOBS, "twin": TWIN_JOBS, "cpu-memory": CPU_MEMORY_JOBS}[suite]
    if a.jobs:
        wanted = a.jobs.split(",")
        jobs = [j for j in jobs if j.name in wanted]
    gpu = None if a.twin else gpu_info()
    if not a.twin and gpu is None:
        print("gpu-check: torch sees no CUDA device; run the CPU twin with --twin, or run this on a GPU host.", file=sys.stderr)
        return 2
    log(f"{'CPU twin' if a.twin else gpu['name']}: {len(jobs)} jobs, budget {a.budget_s:.0f} s; versions {versions()}")
    results: dict[str, Any] = {"bench": "gpu-check", "suite": suite, "twin": a.twin, "gpu": gpu, "versions": versions(),
                               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                               "budget_s": a.budget_s, "jobs": {}}
    out_file = a.out / {"gpu": "gpu-check.json", "twin": "gpu-check-twin.json", "cpu-memory": "memory-cpu.json"}[suite]
    for job in jobs:
        left = deadline - time.monotonic()
        if left < job.min_s:
            results["jobs"][job.name] = {"skipped": f"{left:.0f} s of the budget left, the job needs {job.min_s} s"}
            log(f"{job.name}: skipped ({left:.0f} s left)")
            continue
        t0 = time.monotonic()
        try:
            model_dir = build_model(job.shape, work / "models" / job.shape, a.twin)
            cfg = job_config(base, job, model_dir, a.twin)
            jw = work / "jobs" / job.name
            shutil.rmtree(jw, ignore_errors=True)
            jw.mkdir(parents=True)
            data, plain_data = write_data(jw / "data", cfg)
            if job.engine == "posttrain":
                res = run_posttrain(job, cfg, data, jw, deadline)
            else:
                res = run_plain(job, cfg, plain_data, jw, deadline, a.twin)
        except Exception as e:  # noqa: BLE001 - one failed job is a result, the others still run
            import traceback

            res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:], "stages": {}}
        res.update(shape=job.shape, mode=job.mode, engine=job.engine, wall_s=round(time.monotonic() - t0, 1))
        results["jobs"][job.name] = res
        if res.get("error"):
            log(f"{job.name}: ERROR {res['error']}")
        results["targets"] = targets(results["jobs"])
        results["wall_s"] = round(time.monotonic() - t_start, 1)
        out_file.write_text(json.dumps(results, indent=1))
        # The next shape's weights need the disk more than this one's.
        if job is jobs[-1] or jobs[jobs.index(job) + 1].shape != job.shape:
            if not keep_work:
                shutil.rmtree(work / "models" / job.shape, ignore_errors=True)
    print_table(results)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, j in results["jobs"].items() if j.get("error") or any(
        isinstance(r, dict) and r.get("status") not in ("ok", "skipped") for r in (j.get("stages") or {}).values())]
    if failed:
        log(f"jobs with errors: {', '.join(failed)}")
    return 1 if failed else 0


def print_table(results: dict) -> None:
    head = ["job", "stage", "status", "4bit", "peak GiB", "estimate", "est/meas", "tok/s", "compl/s", "train s"]
    rows = []
    for name, j in results["jobs"].items():
        if "skipped" in j:
            rows.append([name, "-", "skipped", "", "", "", "", "", "", ""])
            continue
        if j.get("error") and not j.get("stages"):
            rows.append([name, "-", "error", "", "", "", "", "", "", ""])
        for st, r in (j.get("stages") or {}).items():
            peak = r.get("peak_gpu_gib") or r.get("peak_rss_gib")
            fmt = lambda v, d=2: "" if v is None else f"{v:.{d}f}"
            rows.append([name, st, r.get("status"), r.get("linear4bit_modules", ""), fmt(peak), fmt(r.get("estimate_gib")),
                         fmt(r.get("estimate_ratio")), fmt(r.get("tokens_per_s"), 0), fmt(r.get("completions_per_s"), 1),
                         fmt(r.get("train_s"), 1)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for r in [head, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    for t in results.get("targets", []):
        print(f"target: {t['name']}: {t['value']} {t['unit']} (target {t['target']})")


if __name__ == "__main__":
    sys.exit(main())
