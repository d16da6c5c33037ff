"""One lifecycle for the offline stages (SFT, DPO, and the preference methods to come).

A stage file declares an :class:`OfflineStage` — its data target, its TRL trainer and config, the
config fields only it sets, and the hooks where it differs — and :func:`run_offline` does the rest,
in this order (the order is part of the contract: a resumed run must see the same RNG draws):

1. load the runtime (device, adapter mode), seed, tokenizer, and the policy: the base model with
   the previous stage's adapter loaded trainable (``init_adapter``), or a fresh LoRA adapter;
2. read the run's copy of the data, ``prepare`` it (e.g. DPO's prompt truncation), split off the
   held-out rows (by prompt group, training.split);
3. build the TRL config from ``common_args`` + the stage's ``fields`` + the section's
   ``trainer_args`` (training.trl_args);
4. sample a few prompts before training, build the trainer, let ``after_build`` check or extend it;
5. train or resume (training.run_training: metrics, cancel, checkpoints), then save the adapter and
   the before/after samples, and answer with the summary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .connection import Connection
from .modeling import load_policy, load_tokenizer, resolve_runtime
from .training import (
    StreamCallback,
    common_args,
    eval_steps,
    latest_checkpoint,
    load_rows,
    max_length,
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


def length_and_eval(train: dict, data: dict, has_eval: bool) -> dict[str, Any]:
    """The fields every offline stage sets the same way: the token limit and the held-out evaluation."""
    return dict(max_length=max_length(data), eval_strategy="steps" if has_eval else "no", eval_steps=eval_steps(train))


@dataclass(frozen=True)
class OfflineStage:
    name: str
    #: data target the stage reads (``data.<target>``), a key of the catalogue's ``data``
    target: str
    #: TRL trainer and config classes (catalogue.trl_class names: ``SFTTrainer`` or ``module:Class``)
    trainer: str
    config: str
    #: the config fields only this stage sets: (train settings, data settings, rows, has held-out rows) -> fields
    fields: Callable[[dict, dict, Any, bool], dict[str, Any]]
    #: (rows, tokenizer, data settings, seed) -> rows, before the split
    prepare: Callable[[Any, Any, dict, int], Any] | None = None
    #: said when the stage has no parent adapter (what the reference model is then)
    fresh_note: str | None = None
    #: (trainer, train rows, trl config, conn) after the trainer is built: checks, callbacks
    after_build: Callable[[Any, Any, Any, Connection], None] | None = None
    #: record the input adapter in the summary
    summary_init_adapter: bool = False


def run_offline(stage: OfflineStage, request: dict, conn: Connection):
    from .catalogue import trl_class

    config = request["config"]
    stage_dir = request["stage_dir"]
    data_cfg = config["data"][stage.target]
    train_cfg = config["stages"][stage.name]
    seed = int(config["runtime"]["seed"])

    conn.state("loading_model", stage.name, config["model"]["id"])
    runtime = resolve_runtime(config, conn, stage.name)
    seed_everything(config)
    tokenizer = load_tokenizer(config)
    init_adapter = request.get("init_adapter")
    model = load_policy(config, runtime, init_adapter, stage.name)
    if not init_adapter and stage.fresh_note:
        conn.log("info", stage.fresh_note, stage.name)

    rows = load_rows(request["data"][stage.target], data_cfg.get("limit"))
    if stage.prepare is not None:
        rows = stage.prepare(rows, tokenizer, data_cfg, seed)
    train_ds, eval_ds = split(rows, float(data_cfg.get("eval_fraction") or 0), seed)
    fields = stage.fields(train_cfg, data_cfg, rows, eval_ds is not None)
    args = trl_args(trl_class(stage.config), f"stages.{stage.name}",
                    dict(**common_args(config, train_cfg, runtime, stage_dir), **fields), train_cfg, conn, stage.name)

    prompts = [prompt_text(r, tokenizer) for r in rows.select(range(min(3, len(rows))))]
    before = sample(model, tokenizer, prompts)
    trainer = trl_class(stage.trainer)(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer)
    if stage.after_build is not None:
        stage.after_build(trainer, train_ds, args, conn)
    callback = StreamCallback(conn, stage.name)
    summary = run_training(trainer, conn, stage.name, resume_checkpoint(request), callback)
    if stage.summary_init_adapter:
        summary["init_adapter"] = init_adapter
    if callback.cancelled:
        return "cancelled", {**summary, "checkpoint": latest_checkpoint(stage_dir)}

    conn.state("saving", stage.name)
    adapter = save_adapter(model, stage_dir, {"stage": stage.name, "base_model": config["model"]["id"], "parent_adapter": init_adapter})
    write_samples(stage_dir, stage.name, prompts, before, sample(model, tokenizer, prompts))
    return "ok", {**summary, "adapter": adapter, "adapter_mode": runtime.mode, "device": runtime.device}
