"""The baseline: the smoke pipeline written directly against TRL / PEFT / transformers, one process.

What a user would write to get what `posttrain run --preset smoke` gives: SFT -> DPO -> GRPO ->
RLHF (RewardTrainer on the preference pairs, then GRPO against that reward model), each stage
continuing the previous stage's LoRA adapter, with the smoke preset's hyper-parameters (resolved
with `node bin/posttrain.js config --preset smoke`): LoRA r 8 / alpha 16 / dropout 0 on all
linear layers, the same batch sizes, max_steps, lengths, learning rates, seed 42, one torch
thread, float32 compute without gradient checkpointing (as posttrain trains on CPU; TRL's configs
default to bf16 autocast and checkpointing), GRPO's per-epoch prompt order drawn as posttrain draws
it, a checkpoint every save_steps (keep 2) and the final adapter of every stage saved. So both
sides train the same steps on the same data (SFT, DPO and GRPO log identical losses at every step).
It does NOT import posttrain_sidecar (that is the point); the two reward functions are written
here the way a user would.

Left out on purpose, because they are posttrain features a plain script does not have: the
before/after samples, metric streaming, completion markers, run.json. The bench measures them
as part of posttrain's cost.

    .venv/bin/python bench/plain_trl.py --out /tmp/plain [--model data/smoke-model]
        [--stages sft,dpo,grpo,rlhf] [--report timings.json] [--set sft.max_steps=60 ...]

--report writes per-stage numbers (JSON): wall_s (model load to adapter saved), train_call_s (the
trainer.train() call), train_runtime (TRL's own), steps, tokens, completions, peak_rss_mb (VmHWM
of this process during the stage, reset before it through /proc/self/clear_refs), and on CUDA
peak_gpu_gib (torch.cuda.max_memory_allocated during the trainer.train() call).

The GPU check (bench/gpu/check.py) runs it with --device cuda --mode qlora|lora --dtype bfloat16
[--checkpointing] and its own lengths: the same 4-bit nf4 load (double quantisation, bf16
compute), the base frozen without upcasting the embeddings, as posttrain loads it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

T_PROCESS = time.time()
# runtime.threads: 1 in the preset. posttrain starts its sidecar with OMP_NUM_THREADS=1 and calls
# torch.set_num_threads(1); doing only the latter leaves OpenMP pools at 2 threads, which on a
# 2-core machine made this script's GRPO ~1.5x slower, so the baseline would look slow.
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent

# The smoke preset, resolved. Per-stage overrides: --set stage.key=value (throughput bench).
HP = {
    "sft": dict(max_steps=30, lr=5e-3, batch=8, save_steps=10, max_length=64),
    "dpo": dict(max_steps=30, lr=5e-3, batch=8, save_steps=10, max_length=64, max_prompt_length=32, beta=0.1),
    "grpo": dict(max_steps=30, lr=3e-3, batch=32, save_steps=10, max_prompt_length=32, num_generations=8,
                 max_completion_length=16, temperature=0.12, beta=0.04),
    "rm": dict(max_steps=100, lr=1e-3, batch=8, save_steps=25, max_length=64, eval_fraction=0.25),
    "policy": dict(max_steps=20, lr=5e-3, batch=8, save_steps=10, max_prompt_length=32, num_generations=4,
                   max_completion_length=16, temperature=1.0, beta=0.05),
    "lora": dict(r=8, alpha=16.0, dropout=0.0),
}
SEED = 42


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "data" / "smoke-model"))
    p.add_argument("--data", default=str(ROOT / "data" / "smoke"))
    p.add_argument("--out", required=True)
    p.add_argument("--stages", default="sft,dpo,grpo,rlhf")
    p.add_argument("--report", default=None)
    p.add_argument("--set", action="append", default=[], help="stage.key=value, e.g. sft.max_steps=60")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--mode", default="lora", choices=["lora", "qlora"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (non-reentrant)")
    a = p.parse_args()
    for s in a.set:
        key, _, value = s.partition("=")
        stage, _, name = key.partition(".")
        HP[stage][name] = type(HP[stage][name])(value)
    return a


# --- peak RSS per stage: writing "5" to clear_refs resets VmHWM (Linux >= 4.0) -----------------

def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak is then the process's so far


def peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --- what a user writes ----------------------------------------------------------------------

MARKED = re.compile(r"####\s*(-?\d[\d,]*(?:\.\d+)?)")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def answer_of(text: str):
    m = MARKED.search(text)
    if m:
        return float(m.group(1).replace(",", ""))
    nums = NUMBER.findall(text)
    return float(nums[-1].replace(",", "")) if nums else None


def format_reward(completions, **kw):
    return [1.0 if MARKED.search(c) else 0.0 for c in completions]


def exact_answer_reward(completions, answer, **kw):
    return [1.0 if (a := answer_of(c)) is not None and a == answer_of(str(t)) else 0.0 for c, t in zip(completions, answer)]


def main() -> None:
    a = parse()
    stages = a.stages.split(",")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    t_imports = time.time()
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

    if a.threads:
        torch.set_num_threads(a.threads)  # the preset's runtime.threads
    cuda = a.device == "cuda"
    dtype = getattr(torch, a.dtype)
    report: dict = {"imports_s": time.time() - t_imports, "stages": {}}

    def rows(name):
        with open(Path(a.data) / name, encoding="utf-8") as f:
            return Dataset.from_list([json.loads(line) for line in f if line.strip()])

    tok = None

    def tokenizer():
        # A fresh tokenizer per stage: trainers change padding_side on the one they are given, and
        # GRPO generating with the right padding SFT/DPO left behind is slower and different.
        nonlocal tok
        tok = AutoTokenizer.from_pretrained(a.model)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    def lora(task="CAUSAL_LM"):
        hp = HP["lora"]
        return LoraConfig(r=int(hp["r"]), lora_alpha=hp["alpha"], lora_dropout=hp["dropout"], target_modules="all-linear", task_type=task)

    def load_kwargs():
        kw = {"dtype": dtype}
        if a.mode == "qlora":
            from transformers import BitsAndBytesConfig

            kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
            kw["device_map"] = {"": torch.cuda.current_device()}
        return kw

    def placed(base):
        if a.mode == "qlora":
            for prm in base.parameters():
                prm.requires_grad_(False)
            if a.checkpointing:
                base.enable_input_require_grads()
        elif cuda:
            base = base.to("cuda")
        return base

    def policy(adapter):
        tokenizer()
        set_seed(SEED)  # LoRA weights are created before the Trainer seeds
        base = placed(AutoModelForCausalLM.from_pretrained(a.model, **load_kwargs()))
        if adapter:
            return PeftModel.from_pretrained(base, adapter, is_trainable=True)
        return get_peft_model(base, lora())

    def args(hp, outdir):
        return dict(
            output_dir=str(outdir), max_steps=hp["max_steps"], learning_rate=hp["lr"],
            per_device_train_batch_size=hp["batch"], per_device_eval_batch_size=hp["batch"],
            warmup_steps=0.0, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
            logging_steps=1, logging_first_step=True, save_strategy="steps", save_steps=hp["save_steps"],
            save_total_limit=2, seed=SEED, data_seed=SEED, report_to="none", disable_tqdm=True,
            use_cpu=not cuda, dataloader_num_workers=0, remove_unused_columns=False,
            # TRL 1.13's configs default to bf16=True (on CPU: autocast to bfloat16, though the preset's
            # model.dtype is float32) and gradient_checkpointing=True (the forward recomputed in the
            # backward). posttrain sets both off on CPU; left at TRL's defaults this script did other
            # work (every forward recomputed; bf16 numbers, so GRPO generated other completions).
            bf16=cuda and a.dtype == "bfloat16", fp16=cuda and a.dtype == "float16",
            gradient_checkpointing=a.checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if a.checkpointing else None,
        )

    def keep_last_tokens(ds, n):
        # TRL 1.13 DPO/GRPO have no max_prompt_length: keep the last n prompt tokens ourselves.
        def cut(r):
            ids = tok(r["prompt"], add_special_tokens=False)["input_ids"]
            if len(ids) > n:
                r["prompt"] = tok.decode(ids[-n:])
            return r
        return ds.map(cut)

    def timed(name, fn):
        reset_peak_rss()
        t0, c0 = time.time(), time.process_time()
        info = fn()
        info.update(wall_s=time.time() - t0, cpu_s=time.process_time() - c0, peak_rss_mb=peak_rss_mb())
        report["stages"][name] = info
        print(f"[plain] {name}: {info['wall_s']:.2f} s", file=sys.stderr)

    def train(trainer):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        res = trainer.train()
        st = trainer.state
        logged = [h["num_tokens"] for h in st.log_history if isinstance(h.get("num_tokens"), (int, float))]
        tokens = int(getattr(trainer, "_total_train_tokens", 0) or st.num_input_tokens_seen or (max(logged) if logged else 0))
        info = {"train_call_s": time.time() - t0, "train_runtime": res.metrics["train_runtime"], "steps": st.global_step,
                "tokens": tokens, "completions": st.global_step * trainer.args.per_device_train_batch_size}
        if cuda:
            info["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        info["linear4bit_modules"] = sum(1 for m in trainer.model.modules()
                                         if type(m).__name__ == "Linear4bit" and type(m).__module__.startswith("bitsandbytes"))
        return info

    adapter = None

    def sft():
        nonlocal adapter
        hp = HP["sft"]
        model = policy(adapter)
        ds = rows("sft.jsonl").rename_column("response", "completion")
        cfg = SFTConfig(**args(hp, out / "sft"), max_length=hp["max_length"], packing=False, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
        info = train(trainer)
        adapter = str(out / "sft" / "adapter")
        model.save_pretrained(adapter)
        return info

    def dpo():
        nonlocal adapter
        hp = HP["dpo"]
        model = policy(adapter)
        ds = keep_last_tokens(rows("dpo.jsonl"), hp["max_prompt_length"])
        cfg = DPOConfig(**args(hp, out / "dpo"), beta=hp["beta"], loss_type=["sigmoid"], max_length=hp["max_length"])
        trainer = DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
        info = train(trainer)
        adapter = str(out / "dpo" / "adapter")
        model.save_pretrained(adapter, selected_adapters=["default"])  # not TRL's frozen "ref" copy
        return info

    def epoch_seeded(trainer_cls):
        # Each epoch's prompt order from (seed, epoch) alone, as posttrain orders it so that a resumed
        # run sees the same prompts (TRL's RepeatSampler draws every epoch from one generator seeded
        # once; epoch 0 is the same either way). Without it the two sides train on other prompts from
        # the second epoch on (step 13 here), generate other lengths, and samples/s compares other work.
        class EpochSeeded(trainer_cls):
            def _get_train_sampler(self, dataset=None):
                sampler = super()._get_train_sampler(dataset)
                if getattr(sampler, "shuffle", False) and getattr(sampler, "seed", None) is not None:
                    sampler.set_epoch = lambda epoch: sampler.generator.manual_seed(int(sampler.seed) + int(epoch))
                return sampler
        return EpochSeeded

    def grpo_config(hp, outdir, weights):
        return GRPOConfig(
            **args(hp, outdir), num_generations=hp["num_generations"], max_completion_length=hp["max_completion_length"],
            temperature=hp["temperature"], top_p=1.0, beta=hp["beta"], epsilon=0.2, num_iterations=1,
            scale_rewards="group", loss_type="dapo", reward_weights=weights, log_completions=False,
        )

    def grpo():
        nonlocal adapter
        hp = HP["grpo"]
        model = policy(adapter)
        ds = keep_last_tokens(rows("grpo.jsonl"), hp["max_prompt_length"])
        trainer = epoch_seeded(GRPOTrainer)(model=model, reward_funcs=[format_reward, exact_answer_reward], args=grpo_config(hp, out / "grpo", [1.0, 1.0]),
                              train_dataset=ds, processing_class=tok)
        info = train(trainer)
        adapter = str(out / "grpo" / "adapter")
        model.save_pretrained(adapter, selected_adapters=["default"])
        return info

    def rlhf():
        nonlocal adapter
        hp = HP["rm"]
        tokenizer()
        set_seed(SEED)
        base = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1, **load_kwargs())
        base = base if a.mode == "qlora" or not cuda else base.to("cuda")
        base.config.pad_token_id = tok.pad_token_id
        rm = get_peft_model(base, lora("SEQ_CLS"))
        prefs = rows("preferences.jsonl")
        if hp["eval_fraction"] > 0:
            parts = prefs.train_test_split(test_size=max(1, round(len(prefs) * hp["eval_fraction"])), seed=SEED)
        else:
            parts = {"train": prefs, "test": None}

        # Score text as GRPO's reward path will see it: prompt + completion, no special tokens.
        def pair(r):
            ids = {s: tok(r["prompt"] + r[s], add_special_tokens=False)["input_ids"][-hp["max_length"]:] for s in ("chosen", "rejected")}
            return {"chosen_ids": ids["chosen"], "rejected_ids": ids["rejected"]}

        train_ds = parts["train"].map(pair, remove_columns=prefs.column_names)
        eval_ds = parts["test"].map(pair, remove_columns=prefs.column_names) if parts["test"] is not None else None
        cfg = RewardConfig(**args(hp, out / "rlhf" / "reward_model_ckpt"), max_length=hp["max_length"],
                           eval_strategy="steps" if eval_ds is not None else "no", eval_steps=hp["save_steps"])
        rm_info = train(RewardTrainer(model=rm, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok))
        rm.save_pretrained(out / "rlhf" / "reward_model")
        tok.save_pretrained(out / "rlhf" / "reward_model")
        rm = rm.merge_and_unload().eval()
        for p in rm.parameters():
            p.requires_grad_(False)

        hp = HP["policy"]
        rm_tok = tok
        model = policy(adapter)
        ds = keep_last_tokens(rows("prompts.jsonl"), hp["max_prompt_length"])
        trainer = epoch_seeded(GRPOTrainer)(model=model, reward_funcs=[rm], args=grpo_config(hp, out / "rlhf" / "policy_ckpt", [1.0]),
                              train_dataset=ds, processing_class=tok, reward_processing_classes=[rm_tok])
        info = train(trainer)
        adapter = str(out / "rlhf" / "adapter")
        model.save_pretrained(adapter, selected_adapters=["default"])
        return {"reward_model": rm_info, **info}

    for name in stages:
        timed(name, {"sft": sft, "dpo": dpo, "grpo": grpo, "rlhf": rlhf}[name])
    report["process_to_end_s"] = time.time() - T_PROCESS
    if a.report:
        Path(a.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
