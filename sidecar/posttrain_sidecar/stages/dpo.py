"""DPO: direct preference optimisation on {prompt, chosen, rejected} rows.

Starts from the input adapter (the SFT adapter) loaded trainable. With a PeftModel and no
ref_model, TRL's DPOTrainer adds a frozen "ref" copy of that adapter, so the reference is the
SFT-adapted model (not the bare base): at the first step rewards are 0 and the sigmoid loss is ln 2.

The lifecycle is lifecycle.run_offline; this file holds what only DPO sets and checks.
"""
from __future__ import annotations

from ..connection import Connection, StageError
from ..lifecycle import OfflineStage, length_and_eval, run_offline
from ..training import truncate_prompts

STAGE = "dpo"


def _fields(train: dict, data: dict, rows, has_eval: bool) -> dict:
    return dict(
        **length_and_eval(train, data, has_eval),
        beta=float(train["beta"]),
        loss_type=[train["loss_type"]],
        label_smoothing=float(train.get("label_smoothing") or 0.0),
    )


def _prepare(rows, tokenizer, data: dict, seed: int):
    # TRL 1.13's DPOConfig has no max_prompt_length: keep the last N prompt tokens here, then
    # max_length truncates prompt + completion (keep_start) in the collator.
    return truncate_prompts(rows, tokenizer, data.get("max_prompt_length"))


def _after_build(trainer, train_ds, args, conn: Connection) -> None:
    # TRL drops pairs whose prompt alone fills max_length (nothing left to compare).
    kept = len(trainer.train_dataset)
    if kept == 0:
        raise StageError("data_empty", f"every DPO pair's prompt is at least data.dpo.max_length ({args.max_length}) tokens long; raise max_length or lower max_prompt_length")
    if kept < len(train_ds):
        conn.log("warning", f"{len(train_ds) - kept} of {len(train_ds)} DPO pairs dropped: the prompt alone fills max_length ({args.max_length})", STAGE)


DPO = OfflineStage(
    name=STAGE, target="dpo", trainer="DPOTrainer", config="DPOConfig", fields=_fields, prepare=_prepare,
    fresh_note="DPO starts from the base model with a fresh LoRA adapter; the reference is the base model.",
    after_build=_after_build, summary_init_adapter=True,
)


def run(request: dict, conn: Connection):
    return run_offline(DPO, request, conn)
