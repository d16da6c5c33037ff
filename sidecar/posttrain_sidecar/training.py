"""What every stage shares: TRL argument building, the streaming callback, data loading,
resume, saving the adapter, and before/after samples.

A stage file (stages/<name>.py) builds its trainer from these pieces and calls ``train()``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from .checkpoints import atomic_write_json, latest_complete, rotate, write_complete_marker
from .connection import Connection, StageError
from .distributed import barrier, is_main_process
from .memory import peak_rss_bytes, reset_peak_rss
from .modeling import Runtime

# --------------------------------------------------------------------------------------------
# Metric keys: namespaced and identical across stages. TRL logs bare keys (loss, grad_norm, kl,
# reward) and namespaced ones (rewards/margins); eval keys come prefixed with eval_.

def metric_key(key: str) -> str:
    if key.startswith("eval_"):
        return f"eval/{key[5:]}"
    if "/" in key:
        return key
    return f"train/{key}"


def numeric(logs: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in logs.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[metric_key(k)] = float(v)
    return out


# --------------------------------------------------------------------------------------------

def common_args(config: dict, train: dict, runtime: Runtime, stage_dir: str) -> dict[str, Any]:
    """TrainingArguments shared by every TRL config, from one stage's train settings."""
    save_steps = train.get("save_steps")
    on_cpu = runtime.device == "cpu"
    return dict(
        output_dir=str(Path(stage_dir) / "checkpoints"),
        num_train_epochs=float(train["epochs"]),
        max_steps=int(train["max_steps"]) if train.get("max_steps") else -1,
        learning_rate=float(train["learning_rate"]),
        per_device_train_batch_size=int(train["batch_size"]),
        per_device_eval_batch_size=int(train["batch_size"]),
        gradient_accumulation_steps=int(train["grad_accum"]),
        # transformers 5: a float in [0, 1) is a ratio of total steps (warmup_ratio is gone).
        warmup_steps=float(train["warmup_ratio"]),
        lr_scheduler_type=train["lr_scheduler"],
        weight_decay=float(train["weight_decay"]),
        max_grad_norm=float(train["max_grad_norm"]),
        logging_steps=int(train["logging_steps"]),
        logging_first_step=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=int(save_steps) if save_steps else 500,
        save_total_limit=int(train["save_total_limit"]),
        seed=int(config["runtime"]["seed"]),
        data_seed=int(config["runtime"]["seed"]),
        **tracking_args(config, stage_dir),
        disable_tqdm=True,
        # CPU: no autocast (TRL's configs default bf16 on); GPU: bf16 compute where supported.
        use_cpu=on_cpu,
        bf16=(not on_cpu) and str(runtime.dtype) == "torch.bfloat16",
        fp16=(not on_cpu) and str(runtime.dtype) == "torch.float16",
        # model.gradient_checkpointing (auto: on with CUDA). Non-reentrant: it needs no input that
        # requires grad, works with a frozen base and LoRA, and is what torch recommends.
        gradient_checkpointing=runtime.checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if runtime.checkpointing else None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def eval_steps(train: dict) -> int:
    """How often the held-out rows are evaluated: the schema's ``eval_steps``, whose null means
    at each checkpoint (``save_steps``), or every 50 steps without checkpoints. One definition for
    every stage (the schema describes the same rule)."""
    return int(train.get("eval_steps") or train.get("save_steps") or 50)


def max_length(data: dict) -> int | None:
    """``data.<target>.max_length`` (schema default 1024 for SFT and DPO); null: no limit."""
    value = data.get("max_length")
    return None if value is None else int(value)


def trl_args(config_cls, section: str, kwargs: dict[str, Any], train: dict, conn: Connection | None = None, stage: str | None = None):
    """``config_cls(**kwargs)`` plus the section's ``trainer_args`` (trainer_args.py: checked
    against the dataclass, refused for fields posttrain sets); logs what was passed through, read
    back from the built config. StageError("bad_trainer_args") names every problem."""
    from .trainer_args import merge

    extra = train.get("trainer_args") or {}
    try:
        merged = merge(section, config_cls, kwargs, extra)
    except ValueError as e:
        raise StageError("bad_trainer_args", str(e)) from e
    try:
        args = config_cls(**merged)
    except ValueError as e:
        if not extra:  # posttrain's own settings: the stage says what it knows (GRPO's batch geometry)
            raise
        # A value of the right type that TRL's own checks refuse (an unknown optimiser name…).
        raise StageError("bad_trainer_args", f"{config_cls.__name__} refused {section}.trainer_args ({', '.join(sorted(extra))}): {e}") from e
    if extra and conn is not None:
        passed = ", ".join(f"{k}={getattr(args, k)!r}" for k in extra)
        conn.log("info", f"{section}.trainer_args passed to {config_cls.__name__}: {passed}", stage)
    return args


# --------------------------------------------------------------------------------------------
# runtime.report_to: TRL's own integrations, for users who live in TensorBoard, W&B or Trackio.
# They see the same on_log dicts as StreamCallback; metrics.jsonl stays the source of truth.

def tracking_args(config: dict, stage_dir: str) -> dict[str, Any]:
    """report_to plus a run name (``<run id>-<stage>``) and project (``posttrain``) for the trackers
    that read them from TrainingArguments (wandb takes the name, trackio both)."""
    report_to = list(config["runtime"].get("report_to") or [])
    if not report_to:
        return {"report_to": "none"}
    stage = Path(stage_dir)
    # A user's explicit WANDB_NAME wins (the WandbCallback passes run_name to wandb.init, which
    # would otherwise override it).
    name = os.environ.get("WANDB_NAME") or f"{stage.parent.parent.name}-{stage.name}"
    return {"report_to": report_to, "run_name": name, "project": "posttrain"}


def tracking_dirs(output_dir: str) -> tuple[Path, str | None]:
    """(stage folder, phase) of a trainer's output_dir: ``stages/<s>/checkpoints`` for one-phase
    stages, ``stages/<s>/checkpoints/<phase>`` for RLHF's reward_model and policy phases."""
    out = Path(output_dir)
    if out.name == "checkpoints":
        return out.parent, None
    return out.parent.parent, out.name


def _report_to(args) -> list[str]:
    """TrainingArguments.report_to as a list (it may hold one name as a plain string)."""
    return args.report_to if isinstance(args.report_to, list) else [args.report_to]


def route_integrations(trainer) -> None:
    """Point the report_to integrations of one trainer at this run and stage.

    TensorBoard: transformers 5 has no logging_dir argument (only TENSORBOARD_LOGGING_DIR, a
    process-wide env var, else ``<output_dir>/runs/<date_host>``, i.e. among the checkpoints), so
    the callback's directory is set here: ``stages/<s>/tensorboard`` (RLHF:
    ``stages/<s>/tensorboard/<phase>``), moved with the stage when an attempt is set aside.
    W&B: the user's WANDB_* env wins; unset, the project is ``posttrain`` and the group the run id,
    so a run's stages sit together. Phases get their own run name."""
    args = trainer.args
    report_to = _report_to(args)
    if not report_to or report_to == ["none"]:
        return
    stage_dir, phase = tracking_dirs(args.output_dir)
    if phase and args.run_name:
        args.run_name = f"{args.run_name}-{phase}"
    if "tensorboard" in report_to:
        from transformers.integrations import TensorBoardCallback

        for cb in trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback) and cb.tb_writer is None:
                cb.logging_dir = str(stage_dir / "tensorboard" / phase if phase else stage_dir / "tensorboard")
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_PROJECT", "posttrain")
        os.environ.setdefault("WANDB_RUN_GROUP", stage_dir.parent.parent.name)


def finish_integrations(trainer) -> None:
    """One sidecar serves every stage; WandbCallback reuses an open wandb.run, so without this all
    stages would log into the first stage's W&B run. (Trackio finishes itself on train end.)"""
    if "wandb" in _report_to(trainer.args):
        import wandb

        if wandb.run is not None:
            wandb.finish()


class StreamCallback:
    """Streams every on_log dict as event.metric, honours cancel at step boundaries, marks and
    reports checkpoints. Built lazily so transformers is imported only when a stage runs."""

    def __new__(cls, *args, **kwargs):  # noqa: D102 - returns an instance of a TrainerCallback subclass
        from transformers import TrainerCallback

        class _Stream(TrainerCallback):
            def __init__(self, conn: Connection, stage: str, boundary: int = 1, step_offset: int = 0, prefix: str = "", phase: str | None = None):
                self.conn = conn
                self.stage = stage
                self.phase = phase  # RLHF: "reward_model" or "policy", recorded in checkpoint markers
                self.boundary = max(1, boundary)  # GRPO: only stop where a generation cycle ends
                self.step_offset = step_offset  # RLHF: the policy phase continues the reward model's step count
                self.prefix = prefix
                self.cancelled = False
                self.last_step = 0
                self.keep = 0  # save_total_limit, set by run_training (which rotates here, not in transformers)

            def on_log(self, args, state, control, logs=None, **kw):
                values = numeric(logs or {})
                if self.cancelled and logs and "train_loss" in logs:
                    # The end-of-training summary of a cancelled attempt is not a step: recorded at
                    # the cancel step, a resumed run would keep it there and log its own at the end,
                    # so metrics.jsonl would differ from an uninterrupted run's (train/epoch twice at
                    # one step). The attempt's summary still reaches summary.json via train()'s metrics.
                    return control
                if self.prefix:
                    values = {(k if k.startswith(self.prefix) else f"{self.prefix}{k}"): v for k, v in values.items()}
                if values:
                    self.conn.metric(self.stage, self.step_offset + int(state.global_step), values)
                # A cancel that arrives while step N is logged (the log runs after on_step_end, before
                # the save check) stops at step N rather than N+1. Not on the end-of-training summary
                # log (train_loss, train_runtime), which runs after the loop when nothing more is saved.
                if (logs and "train_loss" not in logs and state.global_step > 0 and not self.cancelled
                        and self.conn.cancel_requested.is_set() and state.global_step % self.boundary == 0):
                    self.cancelled = True
                    control.should_save = True
                    control.should_training_stop = True
                return control

            def on_step_begin(self, args, state, control, **kw):
                busy = getattr(self.conn, "busy", None)  # heartbeats name where a stuck main thread is
                if busy is not None:
                    busy(f"training step {self.step_offset + int(state.global_step) + 1}")
                return control

            def on_step_end(self, args, state, control, **kw):
                self.last_step = int(state.global_step)
                # Several ranks (distributed.py): agree on the cancel flag here, on every rank at
                # every step, so all stop at the same step; on_log then reads the agreed flag.
                sync = getattr(self.conn, "sync_cancel", None)
                if sync is not None:
                    sync()
                if self.conn.cancel_requested.is_set() and state.global_step % self.boundary == 0:
                    self.cancelled = True
                    control.should_save = True
                    control.should_training_stop = True
                return control

            def on_save(self, args, state, control, **kw):
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                # Several ranks: each writes its own RNG state into the checkpoint; wait for all of
                # them before rank 0 marks it complete. Only rank 0 marks and reports.
                barrier(self.conn)
                if ckpt.is_dir() and getattr(self.conn, "is_main_process", True):
                    # Written last: a checkpoint without it was interrupted mid-save and is ignored.
                    # `step` is the stage-wide step (phase offset included): the controller resumes
                    # from the complete checkpoint with the highest one and truncates metrics there.
                    # world_size: a resume under another number of ranks is refused (resume.ts).
                    info = {"step": self.step_offset + int(state.global_step), "stage": self.stage,
                            "world_size": int(getattr(self.conn, "world_size", 1))}
                    if self.phase:
                        info["phase"] = self.phase
                    write_complete_marker(ckpt, **info)
                    # Only now may older checkpoints go (run_training took rotation from transformers).
                    if self.keep:
                        rotate(args.output_dir, self.keep)
                    self.conn.checkpoint(self.stage, str(ckpt), self.step_offset + int(state.global_step))

        return _Stream(*args, **kwargs)


def quiet(trainer) -> None:
    """Nothing may print to stdout: drop the console printer and progress bars."""
    from transformers import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)


# --------------------------------------------------------------------------------------------

def load_rows(path: str, limit: int | None = None):
    """The canonical JSONL the controller wrote (already validated and mapped)."""
    from datasets import Dataset

    if not path or not os.path.isfile(path):
        raise StageError("data_missing", f"canonical data file {path!r} is missing from the run folder")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise StageError("data_empty", f"{path} holds no rows")
    return Dataset.from_list(rows)


def group_key(row: dict) -> str:
    """What must not be on both sides of a held-out split: the prompt (a preference pair, an SFT
    or GRPO row), else the conversation up to its last turn, else the whole row. Duplicate rows,
    and pairs on one prompt with swapped or other completions, share it."""
    if isinstance(row.get("prompt"), str):
        content: Any = row["prompt"]
    elif isinstance(row.get("messages"), list) and len(row["messages"]) > 1:
        content = row["messages"][:-1]
    else:
        content = row
    return json.dumps(content, sort_keys=True, ensure_ascii=False)


def split(ds, eval_fraction: float, seed: int):
    """(train, held-out) with about ``eval_fraction`` of the rows held out, by prompt group: rows
    that share a group_key land on the same side. A random row split let a duplicated row (or the
    same pair with labels swapped) be trained on and then "predicted" from memory: the reward
    model's held-out accuracy read 0.97 on random labels. Groups are ordered by a seeded hash of
    their key, so the split depends on the seed and the content only, not on row order."""
    if not eval_fraction or len(ds) < 4:
        return ds, None
    n_eval = max(1, int(round(len(ds) * eval_fraction)))
    members: dict[str, list[int]] = {}
    for i, row in enumerate(ds):
        members.setdefault(group_key(row), []).append(i)
    order = sorted(members, key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).digest())
    held: list[int] = []
    for k in order:
        if len(held) >= n_eval or len(held) + len(members[k]) >= len(ds):
            break
        held.extend(members[k])
    if not held:
        return ds, None
    chosen = set(held)
    return ds.select([i for i in range(len(ds)) if i not in chosen]), ds.select(sorted(held))


def truncate_prompts(ds, tokenizer, max_prompt_length: int | None, column: str = "prompt"):
    """Keep the last max_prompt_length tokens of each prompt (TRL 1.13 GRPO has no such option)."""
    if not max_prompt_length:
        return ds

    def cut(row):
        ids = tokenizer(row[column], add_special_tokens=False)["input_ids"]
        if len(ids) > max_prompt_length:
            row[column] = tokenizer.decode(ids[-max_prompt_length:])
        return row

    return ds.map(cut)


# --------------------------------------------------------------------------------------------

def resume_checkpoint(request: dict) -> str | None:
    path = request.get("resume_from")
    if not path:
        return None
    if not (Path(path) / "posttrain-complete.json").is_file():
        raise StageError("bad_checkpoint", f"{path} is not a complete checkpoint")
    return path


def reload_trained_adapter(model, checkpoint: str) -> None:
    """transformers 5.18 resumes a PeftModel that carries TRL's frozen "ref" adapter by loading only
    the ref/ subfolder, silently resetting the trained adapter (DPO loss back to ln 2). Load the
    "default" adapter's weights from the checkpoint explicitly."""
    f = Path(checkpoint) / "adapter_model.safetensors"
    if f.is_file() and hasattr(model, "peft_config") and "ref" in getattr(model, "peft_config", {}):
        load_checkpoint_weights(model, checkpoint)


def carry_token_count(trainer) -> None:
    """SFTTrainer, DPOTrainer, KTOTrainer and RewardTrainer keep the running token count they log
    as num_tokens on the trainer, not in the checkpoint, so a resumed run counted from 0 again. Mirror it into TrainerState.num_input_tokens_seen (saved in
    trainer_state.json) and take it back when a run, resumed or not, begins. Not for GRPO/RLOO:
    they count in the state already."""
    from transformers import TrainerCallback
    from trl import DPOTrainer, KTOTrainer, RewardTrainer, SFTTrainer

    if not isinstance(trainer, (SFTTrainer, DPOTrainer, KTOTrainer, RewardTrainer)) or not hasattr(trainer, "_total_train_tokens"):
        return

    class _TokenCount(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            trainer._total_train_tokens = int(state.num_input_tokens_seen or 0)

        def on_step_end(self, args, state, control, **kw):
            state.num_input_tokens_seen = int(trainer._total_train_tokens)

    trainer.add_callback(_TokenCount())


def finished_at(trainer, checkpoint: str | None) -> dict[str, Any] | None:
    """The checkpoint's trainer state when it already holds the last step (killed while the final
    adapter was written, or before the controller recorded the stage as ok), else None.
    transformers resumed from there trains one step past max_steps; there is nothing left to train."""
    if not checkpoint:
        return None
    f = Path(checkpoint) / "trainer_state.json"
    if not f.is_file():
        return None
    state = json.loads(f.read_text(encoding="utf-8"))
    step = int(state.get("global_step") or 0)
    limit = int(trainer.args.max_steps) if trainer.args.max_steps and trainer.args.max_steps > 0 else int(state.get("max_steps") or 0)
    return state if limit and step >= limit else None


def load_checkpoint_weights(model, checkpoint: str) -> None:
    """The trained ("default") adapter of a checkpoint into the model, as training would end."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(Path(checkpoint) / "adapter_model.safetensors")), adapter_name="default")


def no_steps_message(trainer, stage: str) -> str:
    """Why a stage trained 0 steps: too few rows for one batch (drop_last batches; GRPO/RLOO draw
    batch_size / num_generations prompts per step)."""
    args = trainer.args
    rows = len(trainer.train_dataset) if trainer.train_dataset is not None else 0
    gens = getattr(args, "num_generations", None)
    key = "stages.rlhf.policy" if stage == "rlhf" else f"stages.{stage}"
    if gens:
        need = int(args.per_device_train_batch_size) * int(getattr(args, "steps_per_generation", None) or 1) // int(gens)
        return (f"stage {stage} trained 0 steps: {rows} prompt row(s) cannot fill one generation batch, which takes {need} prompts "
                f"({key}.batch_size {args.per_device_train_batch_size} completions / num_generations {gens}). "
                f"Add prompts, or lower {key}.batch_size (a multiple of num_generations).")
    return (f"stage {stage} trained 0 steps: {rows} training row(s) cannot fill one batch of {key}.batch_size "
            f"{args.per_device_train_batch_size} (less the held-out share, if any). Add rows or lower {key}.batch_size.")


def run_training(trainer, conn: Connection, stage: str, checkpoint: str | None, callback) -> dict[str, Any]:
    """Train (or resume), translating failures into typed stage errors."""
    import torch

    done = finished_at(trainer, checkpoint)
    if done is not None:
        # Nothing to train: the stage ends with the checkpoint's weights (never a step past max_steps).
        from transformers import TrainerState

        load_checkpoint_weights(trainer.model, checkpoint)
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        conn.log("info", f"checkpoint {Path(checkpoint).name} already holds the last step ({done['global_step']}); nothing left to train", stage)
        out = {"train_runtime_s": 0.0, "global_step": int(done["global_step"]), "already_complete": True}
        if done.get("num_input_tokens_seen"):
            out["tokens_seen"] = int(done["num_input_tokens_seen"])
        return out

    quiet(trainer)
    # Checkpoint rotation moves from transformers (which deletes old checkpoints before our
    # completion marker is written) to the callback, after the marker.
    callback.keep, trainer.args.save_total_limit = int(trainer.args.save_total_limit or 0), None
    trainer.add_callback(callback)
    carry_token_count(trainer)
    if checkpoint:
        reload_trained_adapter(trainer.model, checkpoint)
    conn.state("training", stage)
    cuda = torch.cuda.is_available() and next(trainer.model.parameters()).is_cuda
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()
    route_integrations(trainer)
    t0 = time.time()
    try:
        out = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.cuda.OutOfMemoryError as e:  # type: ignore[attr-defined]
        raise StageError("out_of_memory", f"CUDA out of memory: {e}. Lower batch_size or max lengths, or raise grad_accum.", retryable=True) from e
    finally:
        finish_integrations(trainer)
    if int(trainer.state.global_step) == 0 and not getattr(callback, "cancelled", False):
        raise StageError("no_steps", no_steps_message(trainer, stage))
    metrics = numeric(dict(out.metrics)) if out is not None else {}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            conn.log("warning", f"{k} is {v}", stage)
    summary = {"train_runtime_s": time.time() - t0, "global_step": int(trainer.state.global_step), **metrics}
    # SFT logs TRL's running num_tokens; DPO/GRPO keep it in state.num_input_tokens_seen.
    logged = [h["num_tokens"] for h in trainer.state.log_history if isinstance(h.get("num_tokens"), (int, float))]
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or (max(logged) if logged else 0))
    if tokens:
        summary["tokens_seen"] = tokens
    # QLoRA really in the model: bitsandbytes' own 4-bit linears (0 when the stage trains plain
    # LoRA). By module too: peft's LoRA wrapper around one is also named Linear4bit.
    summary["linear4bit_modules"] = sum(1 for m in trainer.model.modules()
                                        if type(m).__name__ == "Linear4bit" and type(m).__module__.startswith("bitsandbytes"))
    if cuda:
        summary["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    elif (rss := peak_rss_bytes()) is not None:
        # The model is resident already, so this is the stage's peak, as memory.estimate_stage counts it.
        summary["peak_rss_gb"] = rss / 2**30
    return summary


def save_adapter(model, stage_dir: str, meta: dict[str, Any]) -> str:
    """The stage's final adapter: only the trained "default" adapter (not TRL's "ref" copy), plus
    posttrain.json saying which base, which parent adapter, and that nothing was merged. Several
    ranks: only the main process writes (every rank holds the same weights after DDP)."""
    out = Path(stage_dir) / "adapter"
    if not is_main_process():
        return str(out)
    tmp = Path(stage_dir) / ".adapter.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    kwargs = {"selected_adapters": ["default"]} if "ref" in getattr(model, "peft_config", {}) else {}
    model.save_pretrained(str(tmp), **kwargs)
    atomic_write_json(tmp / "posttrain.json", {"merged": False, **meta})
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)  # whole or not at all
    return str(out)


_SAMPLE_S = [0.0]  # seconds spent in sample() by this process (each stage's share goes to its summary)


def sample_seconds() -> float:
    return _SAMPLE_S[0]


def sample(model, tokenizer, prompts: list[str], max_new_tokens: int = 32) -> list[str]:
    """Greedy completions for a few fixed prompts, so a user sees what a stage changed."""
    import torch

    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    outs = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for p in prompts:
            enc = tokenizer(p, return_tensors="pt").to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            outs.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    if was_training:
        model.train()
    _SAMPLE_S[0] += time.perf_counter() - t0
    return outs


def write_samples(stage_dir: str, stage: str, prompts: list[str], before: list[str], after: list[str]) -> None:
    if not is_main_process():
        return
    lines = [json.dumps({"stage": stage, "prompt": p, "before": b, "after": a}) for p, b, a in zip(prompts, before, after)]
    (Path(stage_dir) / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def prompt_text(row: dict, tokenizer) -> str:
    """The text a model sees as the prompt of a canonical row (chat rows through the template)."""
    if "messages" in row:
        msgs = [m for m in row["messages"] if m["role"] != "assistant"] or row["messages"][:1]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return row["prompt"]


def seed_everything(config: dict) -> None:
    # Before building each trainer: LoRA layers are created before Trainer seeds.
    from transformers import set_seed

    set_seed(int(config["runtime"]["seed"]))


def latest_checkpoint(stage_dir: str) -> str | None:
    p = latest_complete(Path(stage_dir) / "checkpoints")
    return str(p) if p else None


Handler = Callable[[dict, Connection], tuple[str, dict]]
