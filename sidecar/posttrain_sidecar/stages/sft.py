"""SFT: supervised fine-tuning on prompt/completion or chat rows, loss on the response only."""
from __future__ import annotations

from ..connection import Connection
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
    trl_args,
    write_samples,
)

STAGE = "sft"


def run(request: dict, conn: Connection):
    from trl import SFTConfig, SFTTrainer

    config = request["config"]
    stage_dir = request["stage_dir"]
    data_cfg = config["data"]["sft"]
    train_cfg = config["stages"]["sft"]
    seed = int(config["runtime"]["seed"])

    conn.state("loading_model", STAGE, config["model"]["id"])
    runtime = resolve_runtime(config, conn, STAGE)
    seed_everything(config)
    tokenizer = load_tokenizer(config)
    model = load_policy(config, runtime, request.get("init_adapter"), STAGE)

    rows = load_rows(request["data"]["sft"], data_cfg.get("limit"))
    train_ds, eval_ds = split(rows, float(data_cfg.get("eval_fraction") or 0), seed)
    chat = "messages" in rows.column_names
    only_response = bool(train_cfg["completion_only_loss"])
    args = trl_args(SFTConfig, "stages.sft", dict(
        **common_args(config, train_cfg, runtime, stage_dir),
        max_length=int(data_cfg.get("max_length") or 1024),
        packing=bool(train_cfg["packing"]),
        # Prompt/completion rows: loss on the completion. Chat rows: loss on assistant turns
        # (needs a chat template with {% generation %} markers).
        completion_only_loss=only_response if not chat else None,
        assistant_only_loss=only_response and chat,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=int(train_cfg.get("save_steps") or 50),
    ), train_cfg, conn, STAGE)

    prompts = [prompt_text(r, tokenizer) for r in rows.select(range(min(3, len(rows))))]
    before = sample(model, tokenizer, prompts)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer)
    callback = StreamCallback(conn, STAGE)
    summary = run_training(trainer, conn, STAGE, resume_checkpoint(request), callback)
    if callback.cancelled:
        return "cancelled", {**summary, "checkpoint": latest_checkpoint(stage_dir)}

    conn.state("saving", STAGE)
    adapter = save_adapter(model, stage_dir, {"stage": STAGE, "base_model": config["model"]["id"], "parent_adapter": request.get("init_adapter")})
    write_samples(stage_dir, STAGE, prompts, before, sample(model, tokenizer, prompts))
    return "ok", {**summary, "adapter": adapter, "adapter_mode": runtime.mode, "device": runtime.device}
