"""DPO: direct preference optimisation on {prompt, chosen, rejected} rows.

Starts from the input adapter (the SFT adapter) loaded trainable. With a PeftModel and no
ref_model, TRL's DPOTrainer adds a frozen "ref" copy of that adapter, so the reference is the
SFT-adapted model (not the bare base): at the first step rewards are 0 and the sigmoid loss is ln 2.
"""
from __future__ import annotations

from ..connection import Connection, StageError
from ..modeling import load_policy, load_tokenizer, resolve_runtime
from ..training import (
    StreamCallback,
    common_args,
    latest_checkpoint,
    load_rows,
    prompt_text,
    resume_checkpoint,
    run_training,
    sample,
    save_adapter,
    seed_everything,
    split,
    truncate_prompts,
    write_samples,
)

STAGE = "dpo"


def run(request: dict, conn: Connection):
    from trl import DPOConfig, DPOTrainer

    config = request["config"]
    stage_dir = request["stage_dir"]
    data_cfg = config["data"]["dpo"]
    train_cfg = config["stages"]["dpo"]
    seed = int(config["runtime"]["seed"])

    conn.state("loading_model", STAGE, config["model"]["id"])
    runtime = resolve_runtime(config, conn, STAGE)
    seed_everything(config)
    tokenizer = load_tokenizer(config)
    init_adapter = request.get("init_adapter")
    model = load_policy(config, runtime, init_adapter, STAGE)
    if not init_adapter:
        conn.log("info", "DPO starts from the base model with a fresh LoRA adapter; the reference is the base model.", STAGE)

    rows = load_rows(request["data"]["dpo"], data_cfg.get("limit"))
    # TRL 1.13's DPOConfig has no max_prompt_length: keep the last N prompt tokens here, then
    # max_length truncates prompt + completion (keep_start) in the collator.
    rows = truncate_prompts(rows, tokenizer, data_cfg.get("max_prompt_length"))
    train_ds, eval_ds = split(rows, float(data_cfg.get("eval_fraction") or 0), seed)
    args = trl_args(DPOConfig, "stages.dpo", dict(
        **common_args(config, train_cfg, runtime, stage_dir),
        beta=float(train_cfg["beta"]),
        loss_type=[train_cfg["loss_type"]],
        label_smoothing=float(train_cfg.get("label_smoothing") or 0.0),
        max_length=int(data_cfg.get("max_length") or 1024),
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=int(train_cfg.get("save_steps") or 50),
    ), train_cfg, conn, STAGE)

    prompts = [prompt_text(r, tokenizer) for r in rows.select(range(min(3, len(rows))))]
    before = sample(model, tokenizer, prompts)
    trainer = DPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer)
    # TRL drops pairs whose prompt alone fills max_length (nothing left to compare).
    kept = len(trainer.train_dataset)
    if kept == 0:
        raise StageError("data_empty", f"every DPO pair's prompt is at least data.dpo.max_length ({args.max_length}) tokens long; raise max_length or lower max_prompt_length")
    if kept < len(train_ds):
        conn.log("warning", f"{len(train_ds) - kept} of {len(train_ds)} DPO pairs dropped: the prompt alone fills max_length ({args.max_length})", STAGE)
    if hasattr(trainer, "_total_train_tokens"):
        trainer.add_callback(_token_count_carrier(trainer))
    callback = StreamCallback(conn, STAGE)
    summary = run_training(trainer, conn, STAGE, resume_checkpoint(request), callback)
    summary["init_adapter"] = init_adapter
    if callback.cancelled:
        return "cancelled", {**summary, "checkpoint": latest_checkpoint(stage_dir)}

    conn.state("saving", STAGE)
    adapter = save_adapter(model, stage_dir, {"stage": STAGE, "base_model": config["model"]["id"], "parent_adapter": init_adapter})
    write_samples(stage_dir, STAGE, prompts, before, sample(model, tokenizer, prompts))
    return "ok", {**summary, "adapter": adapter, "adapter_mode": runtime.mode, "device": runtime.device}


def _token_count_carrier(trainer):
    """TRL keeps its running token count (logged as num_tokens) on the trainer, not in the
    checkpoint, so a resumed run would count from 0 again. Mirror it into TrainerState's
    num_input_tokens_seen (saved in trainer_state.json; logged only when the Trainer's own
    counting is on, which it is not) and take it back when a resumed run begins."""
    from transformers import TrainerCallback

    class _TokenCount(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            trainer._total_train_tokens = int(state.num_input_tokens_seen or 0)

        def on_step_end(self, args, state, control, **kw):
            state.num_input_tokens_seen = int(trainer._total_train_tokens)

    return _TokenCount()
