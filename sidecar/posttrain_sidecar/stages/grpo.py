"""GRPO: online RL on prompts with rule-based (or user) reward functions.

The policy starts from the previous stage's adapter (loaded trainable). With beta > 0 TRL 1.13's
GRPOTrainer copies that adapter into a frozen "ref" adapter and computes the KL reference with it,
so the reference is the previous stage's policy, not the bare base model.

GRPO generates once per generation cycle (steps_per_generation x num_iterations micro-steps) and
keeps the completions in a buffer that Trainer checkpoints do not hold. So a cancel stops only at
the end of a cycle, and periodic checkpoints are aligned to cycle ends: a resumed run then
regenerates exactly where the uninterrupted one would have.

The RLHF stage reuses :func:`build_grpo_trainer` for its policy phase, with its reward model as
the reward function.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

from ..connection import Connection, StageError
from ..modeling import Runtime, load_policy, load_tokenizer, resolve_runtime
from ..rewards import check_columns, resolve_reward_funcs
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
    eval_steps,
    trl_args,
    truncate_prompts,
    write_samples,
)

STAGE = "grpo"


def _has_vllm() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a broken CUDA build raising at import
        return False
    return True


def check_vllm(gen_cfg: dict, runtime: Runtime) -> bool:
    """Whether to generate with vLLM; a StageError when it is asked for and cannot be had."""
    if not gen_cfg.get("use_vllm"):
        return False
    if runtime.device != "cuda":
        raise StageError("vllm_unavailable", "use_vllm needs a CUDA device; this run trains on CPU. Set use_vllm: false.")
    if not _has_vllm():
        raise StageError("vllm_unavailable", "use_vllm is set but vllm is not installed in the sidecar's environment (pip install vllm), or it failed to import. Set use_vllm: false to generate with transformers.")
    return True


def cycle_steps(args) -> int:
    """Optimizer steps per generation cycle: the steps at which the generation buffer is empty.
    TRL generates every steps_per_generation x num_iterations micro-steps (forward/backward
    passes); an optimizer step is grad_accum micro-steps."""
    every = int(args.steps_per_generation) * int(args.num_iterations)
    ga = int(args.gradient_accumulation_steps)
    return every * ga // math.gcd(every, ga) // ga


@functools.lru_cache(maxsize=None)
def epoch_seeded(trainer_cls):
    """A subclass of TRL's GRPOTrainer or RLOOTrainer whose prompt order depends on (seed, epoch) only.

    TRL's RepeatSampler draws each epoch's permutation from one generator seeded once, so epoch k's
    order depends on how many epochs that sampler object has iterated. A run resumed in epoch k
    builds a fresh sampler and would replay epoch 0's order. Reseeding with seed + epoch in
    ``set_epoch`` (which Trainer/accelerate call before every epoch, resumed or not) keeps epoch 0
    exactly as TRL orders it and makes a resumed run see the same prompts as an uninterrupted one.
    """
    from trl.trainer.utils import RepeatSampler

    class _EpochSeededRepeatSampler(RepeatSampler):
        def set_epoch(self, epoch: int) -> None:
            if self.shuffle and self.seed is not None:
                self.generator.manual_seed(int(self.seed) + int(epoch))

    class EpochSeeded(trainer_cls):
        def _get_train_sampler(self, dataset=None):
            sampler = super()._get_train_sampler(dataset)
            if type(sampler) is RepeatSampler:
                sampler.__class__ = _EpochSeededRepeatSampler
            return sampler

    EpochSeeded.__name__ = f"Posttrain{trainer_cls.__name__}"
    return EpochSeeded


def _trainer_class():
    from trl import GRPOTrainer

    return epoch_seeded(GRPOTrainer)


def build_grpo_config(
    config: dict,
    gen_cfg: dict,
    runtime: Runtime,
    stage_dir: str,
    reward_weights: Sequence[float],
    *,
    output_dir: str | None = None,
    loss_type: str | None = None,
    eval_steps: int | None = None,
    conn: Connection | None = None,
    stage: str = STAGE,
    **overrides: Any,
):
    """GRPOConfig from the common train fields plus the generation fields of ``gen_cfg``
    (``stages.grpo``, or ``stages.rlhf.policy``). Periodic checkpoints are moved to cycle ends.
    A configuration TRL rejects (e.g. a generation batch not divisible by num_generations)
    becomes StageError("bad_config")."""
    from trl import GRPOConfig

    use_vllm = check_vllm(gen_cfg, runtime)
    kwargs = common_args(config, gen_cfg, runtime, stage_dir)
    if output_dir:
        kwargs["output_dir"] = str(output_dir)
    spg = gen_cfg.get("steps_per_generation")
    kwargs.update(
        num_generations=int(gen_cfg["num_generations"]),
        max_completion_length=int(gen_cfg["max_completion_length"]),
        temperature=float(gen_cfg["temperature"]),
        top_p=float(gen_cfg["top_p"]),
        beta=float(gen_cfg["beta"]),
        epsilon=float(gen_cfg["epsilon"]),
        steps_per_generation=int(spg) if spg else None,
        num_iterations=int(gen_cfg["num_iterations"]),
        scale_rewards=str(gen_cfg["scale_rewards"]),  # TRL 1.13: "group" | "batch" | "none"
        loss_type=str(loss_type or gen_cfg.get("loss_type") or "dapo"),
        reward_weights=[float(w) for w in reward_weights],
        use_vllm=use_vllm,
        log_completions=False,
    )
    if use_vllm:
        kwargs["vllm_mode"] = "colocate"  # server mode needs a separately started `trl vllm-serve`
    if eval_steps:
        kwargs.update(eval_strategy="steps", eval_steps=int(eval_steps))
    kwargs.update(overrides)
    section = "stages.grpo" if stage == STAGE else f"stages.{stage}.policy"
    try:
        args = trl_args(GRPOConfig, section, kwargs, gen_cfg, conn, stage)
    except StageError:
        raise
    except ValueError as e:
        batch = kwargs["per_device_train_batch_size"]
        raise StageError(
            "bad_config",
            f"GRPO settings rejected: {e} (batch_size {batch} x steps_per_generation "
            f"{kwargs['steps_per_generation'] or kwargs['gradient_accumulation_steps']} completions are generated at once, "
            f"in groups of num_generations {kwargs['num_generations']}; make that product a multiple of num_generations)",
        ) from e

    # Checkpoints only at cycle ends: the generation buffer is not saved, so a resume from the
    # middle of a cycle would regenerate for prompts the uninterrupted run had already scored.
    cycle = cycle_steps(args)
    if args.save_strategy != "no" and cycle > 1 and args.save_steps % cycle:
        aligned = int(math.ceil(args.save_steps / cycle) * cycle)
        if conn:
            conn.log("info", f"save_steps {int(args.save_steps)} moved to {aligned}: checkpoints only at the end of a generation cycle ({cycle} steps)", stage)
        args.save_steps = aligned
    return args


def build_grpo_trainer(
    config: dict,
    gen_cfg: dict,
    model,
    tokenizer,
    train_ds,
    reward_funcs: Sequence[Callable | Any],
    reward_weights: Sequence[float],
    stage_dir: str,
    runtime: Runtime,
    *,
    eval_ds=None,
    output_dir: str | None = None,
    loss_type: str | None = None,
    reward_processing_classes=None,
    conn: Connection | None = None,
    stage: str = STAGE,
    **overrides: Any,
):
    """A GRPOTrainer for ``model`` (a PeftModel: TRL adds the frozen "ref" copy when beta > 0).

    ``train_ds`` holds a ``prompt`` column (already truncated: see :func:`prepare_prompts`) and
    whatever columns the reward functions read. ``reward_funcs`` may be callables (see
    posttrain_sidecar.rewards) or a sequence-classification reward model, with its tokenizer in
    ``reward_processing_classes``. The cancel boundary for StreamCallback is
    :func:`cycle_steps`(trainer.args).
    """
    every = eval_steps(gen_cfg) if eval_ds is not None else None
    args = build_grpo_config(
        config, gen_cfg, runtime, stage_dir, reward_weights,
        output_dir=output_dir, loss_type=loss_type, eval_steps=every, conn=conn, stage=stage, **overrides,
    )
    try:
        return _trainer_class()(
            model=model,
            reward_funcs=list(reward_funcs),
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            reward_processing_classes=reward_processing_classes,
        )
    except ValueError as e:
        raise StageError("bad_config", f"GRPO trainer rejected its settings: {e}") from e


def prepare_prompts(ds, tokenizer, max_prompt_length: int | None):
    """Left-truncate string prompts to max_prompt_length tokens (TRL 1.13 GRPO has no such option).
    Chat prompts (lists of messages) are left as they are."""
    if not max_prompt_length or "prompt" not in ds.column_names or len(ds) == 0 or not isinstance(ds[0]["prompt"], str):
        return ds
    return truncate_prompts(ds, tokenizer, int(max_prompt_length))


def run(request: dict, conn: Connection):
    config = request["config"]
    stage_dir = request["stage_dir"]
    data_cfg = config["data"]["grpo"]
    train_cfg = config["stages"]["grpo"]
    seed = int(config["runtime"]["seed"])

    # Everything that can be wrong with the settings fails here, before the model loads.
    reward_funcs, reward_weights = resolve_reward_funcs(
        train_cfg["reward_funcs"], timeout_s=train_cfg.get("reward_timeout_s"), conn=conn,
        warn=lambda message: conn.log("warning", message, STAGE))
    rows = load_rows(request["data"]["grpo"], data_cfg.get("limit"))
    check_columns(train_cfg["reward_funcs"], rows.column_names)

    conn.state("loading_model", STAGE, config["model"]["id"])
    runtime = resolve_runtime(config, conn, STAGE)
    check_vllm(train_cfg, runtime)
    seed_everything(config)
    tokenizer = load_tokenizer(config)
    model = load_policy(config, runtime, request.get("init_adapter"), STAGE)

    rows = prepare_prompts(rows, tokenizer, data_cfg.get("max_prompt_length"))
    train_ds, eval_ds = split(rows, float(data_cfg.get("eval_fraction") or 0), seed)

    prompts = [prompt_text(r, tokenizer) for r in rows.select(range(min(3, len(rows))))]
    max_new = int(train_cfg["max_completion_length"])
    before = sample(model, tokenizer, prompts, max_new_tokens=max_new)
    trainer = build_grpo_trainer(
        config, train_cfg, model, tokenizer, train_ds, reward_funcs, reward_weights, stage_dir, runtime,
        eval_ds=eval_ds, conn=conn,
    )
    cycle = cycle_steps(trainer.args)
    callback = StreamCallback(conn, STAGE, boundary=cycle)
    summary = run_training(trainer, conn, STAGE, resume_checkpoint(request), callback)
    summary["generation_cycle_steps"] = cycle
    if callback.cancelled:
        return "cancelled", {**summary, "checkpoint": latest_checkpoint(stage_dir)}

    conn.state("saving", STAGE)
    adapter = save_adapter(model, stage_dir, {
        "stage": STAGE,
        "base_model": config["model"]["id"],
        "parent_adapter": request.get("init_adapter"),
        "reward_funcs": [{"name": f["name"], "weight": w} for f, w in zip(train_cfg["reward_funcs"], reward_weights)],
    })
    write_samples(stage_dir, STAGE, prompts, before, sample(model, tokenizer, prompts, max_new_tokens=max_new))
    return "ok", {**summary, "adapter": adapter, "adapter_mode": runtime.mode, "device": runtime.device}
