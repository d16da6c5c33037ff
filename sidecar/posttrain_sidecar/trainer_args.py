"""``stages.<s>.trainer_args``: any other field of a stage's TRL config, passed through.

Newer TRL options (GSPO's ``importance_sampling_level``, DAPO's ``epsilon_high``, NEFTune's
``neftune_noise_alpha``…) reach the trainer without a schema change. Each entry is checked against
the config dataclass itself, before any weights load (preflight calls :func:`problems`, the stage
calls :func:`merge`, which checks again):

- a name the dataclass does not have is refused with the closest real field;
- a value of the wrong type for the field's annotation (bool, int, float, str, list, dict, a
  Literal's values, Optional) is refused with what was expected;
- a field posttrain sets itself is refused with the config key that sets it (:data:`OWNED`; at
  stage time also any field the stage's own arguments already hold), because two sources for one
  setting is how a resume or a report ends up lying.

Sections (config prefix → TRL config class) are per stage in the catalogue (``trainer_sections``).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

# TRL / transformers field -> the posttrain key that sets it (or why posttrain owns it).
OWNED: dict[str, str] = {
    "output_dir": "the run folder (stages/<s>/checkpoints)",
    "num_train_epochs": "epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "warmup_steps": "warmup_ratio",
    "warmup_ratio": "warmup_ratio",
    "lr_scheduler_type": "lr_scheduler",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps",
    "logging_first_step": "posttrain (the metric stream starts at step 1)",
    "logging_strategy": "logging_steps",
    "logging_dir": "runtime.report_to",
    "save_strategy": "save_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "eval_strategy": "data.<target>.eval_fraction",
    "eval_steps": "save_steps (evaluation runs at each checkpoint)",
    "seed": "runtime.seed",
    "data_seed": "runtime.seed",
    "report_to": "runtime.report_to",
    "run_name": "runtime.report_to (the run id and stage)",
    "project": "runtime.report_to",
    "disable_tqdm": "posttrain (progress is the live view)",
    "use_cpu": "runtime.device",
    "bf16": "model.dtype",
    "fp16": "model.dtype",
    "gradient_checkpointing": "model.gradient_checkpointing",
    "gradient_checkpointing_kwargs": "model.gradient_checkpointing",
    "dataloader_num_workers": "posttrain",
    "remove_unused_columns": "posttrain (reward functions read extra columns)",
    "resume_from_checkpoint": "`posttrain stage <s> --resume`",
    # stage settings with their own schema keys
    "max_length": "data.<target>.max_length",
    "packing": "stages.sft.packing",
    "completion_only_loss": "stages.sft.completion_only_loss",
    "assistant_only_loss": "stages.sft.completion_only_loss",
    "beta": "beta",
    "loss_type": "loss_type",
    "label_smoothing": "label_smoothing",
    "desirable_weight": "desirable_weight",
    "simpo_gamma": "simpo_gamma",
    "cpo_alpha": "cpo_alpha",
    "undesirable_weight": "undesirable_weight",
    "num_generations": "num_generations",
    "max_completion_length": "max_completion_length",
    "temperature": "temperature",
    "top_p": "top_p",
    "epsilon": "epsilon",
    "steps_per_generation": "steps_per_generation",
    "num_iterations": "num_iterations",
    "scale_rewards": "scale_rewards",
    "reward_weights": "reward_funcs[].weight",
    "use_vllm": "use_vllm",
    "vllm_mode": "use_vllm (colocate)",
    "log_completions": "posttrain (samples.jsonl)",
    "center_rewards_coefficient": "stages.rlhf.reward_model.center_rewards_coefficient",
}


def problems(section: str, config_cls: type, args: Any) -> list[tuple[str, str]]:
    """[(dot path, what is wrong)] for ``args`` (the ``trainer_args`` map of config ``section``)."""
    if not isinstance(args, dict):
        return [(f"{section}.trainer_args", f"expected a map of {config_cls.__name__} fields, got {type(args).__name__}")]
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    out = []
    for key, value in args.items():
        path = f"{section}.trainer_args.{key}"
        if key in OWNED:
            owner = _owner(section, OWNED[key])
            how = f"set {owner} instead" if " " not in owner else "it cannot be passed through"
            out.append((path, f"posttrain sets {key} itself ({owner}); {how}"))
        elif key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            out.append((path, f"{config_cls.__name__} has no field {key!r}{hint}"))
        else:
            want = _mismatch(hints.get(key, Any), value)
            if want:
                out.append((path, f"{config_cls.__name__}.{key} expects {want}, got {value!r:.60}"))
    return out


def merge(section: str, config_cls: type, kwargs: dict[str, Any], args: Any) -> dict[str, Any]:
    """``kwargs`` (what the stage set) plus ``args``; a ValueError naming every problem."""
    found = problems(section, config_cls, args or {})
    found += [(f"{section}.trainer_args.{k}", f"posttrain sets {k} itself for this stage")
              for k in (args or {}) if k in kwargs and k not in OWNED]
    if found:
        raise ValueError("; ".join(f"{p}: {m}" for p, m in found))
    return {**kwargs, **(args or {})}


def _owner(section: str, key: str) -> str:
    # Bare names are keys of the same section (stages.grpo.beta); others are full paths.
    return f"{section}.{key}" if key.isidentifier() else key


def _mismatch(tp: Any, value: Any) -> str | None:
    """What ``tp`` expects when ``value`` does not fit it (loosely: containers are not looked into)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return None
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if any(_mismatch(o, value) is None for o in options):
            return None
        return " or ".join(_mismatch(o, value) or _name(o) for o in options)
    if origin is Literal:
        allowed = typing.get_args(tp)
        return None if value in allowed else "one of " + ", ".join(repr(a) for a in allowed)
    if tp is type(None):
        return None if value is None else "null"
    base = origin or tp
    if base is bool:
        return None if isinstance(value, bool) else "true or false"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if base is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if base is str:
        return None if isinstance(value, str) else "a string"
    if base in (list, tuple, typing.Sequence):
        return None if isinstance(value, list) else "a list"
    if base is dict:
        return None if isinstance(value, dict) else "a map"
    if isinstance(base, type) and issubclass(base, str):  # str enums (transformers' IntervalStrategy…)
        return None if isinstance(value, str) else "a string"
    return None  # a type we do not check here: TRL's own __post_init__ still does


def _name(tp: Any) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))
