"""The stage catalogue, Python side: the one place the sidecar names a stage.

Each entry says which module runs the stage (``handler``, imported lazily so ``hello`` never waits
for torch), which TRL trainers and configs it uses (for the docs and the trainer-argument checks),
and which data targets it reads with which row kind. The controller's twin is
``src/stages/catalogue.ts`` (health rules, key metrics, run order); ``tests/config/catalogue.test.ts``
fails when the two disagree on the names, their order or the data targets.
"""
from __future__ import annotations

from typing import Any

# In pipeline order.
CATALOGUE: dict[str, dict[str, Any]] = {
    "sft": {
        "handler": "posttrain_sidecar.stages.sft:run",
        "trl": {"trainer": "SFTTrainer", "config": "SFTConfig"},
        "sections": {"stages.sft": "SFTConfig"},
        # Offline stages: sequences through the model per row, and whether a frozen reference
        # adapter is kept (memory.estimate_stage reads this; online stages have their own model).
        "memory": {"sequences": 1, "reference": False},
        "data": {"sft": "sft"},
    },
    "orpo": {
        "handler": "posttrain_sidecar.stages.orpo:run",
        "trl": {"trainer": "trl.experimental.orpo:ORPOTrainer", "config": "trl.experimental.orpo:ORPOConfig"},
        "sections": {"stages.orpo": "trl.experimental.orpo:ORPOConfig"},
        "memory": {"sequences": 2, "reference": False},  # chosen and rejected together, no reference
        "data": {"orpo": "preference"},
    },
    "dpo": {
        "handler": "posttrain_sidecar.stages.dpo:run",
        "trl": {"trainer": "DPOTrainer", "config": "DPOConfig"},
        "sections": {"stages.dpo": "DPOConfig"},
        "memory": {"sequences": 2, "reference": True},
        "data": {"dpo": "preference"},
    },
    "kto": {
        "handler": "posttrain_sidecar.stages.kto:run",
        "trl": {"trainer": "KTOTrainer", "config": "KTOConfig"},
        "sections": {"stages.kto": "KTOConfig"},
        "memory": {"sequences": 2, "reference": True},  # each completion and its mismatched KL completion
        "data": {"kto": "preference"},
    },
    "simpo": {
        "handler": "posttrain_sidecar.stages.simpo:run",
        "trl": {"trainer": "trl.experimental.cpo:CPOTrainer", "config": "trl.experimental.cpo:CPOConfig"},
        "sections": {"stages.simpo": "trl.experimental.cpo:CPOConfig"},
        "memory": {"sequences": 2, "reference": False},
        "data": {"simpo": "preference"},
    },
    "grpo": {
        "handler": "posttrain_sidecar.stages.grpo:run",
        "trl": {"trainer": "GRPOTrainer", "config": "GRPOConfig"},
        "sections": {"stages.grpo": "GRPOConfig"},
        "data": {"grpo": "prompt"},
    },
    "rlhf": {
        "handler": "posttrain_sidecar.stages.rlhf:run",
        # Two phases: a reward model, then the policy (GRPO, or RLOO with policy.algorithm: rloo).
        "trl": {"trainer": "RewardTrainer, then GRPOTrainer or RLOOTrainer", "config": "RewardConfig, GRPOConfig / RLOOConfig"},
        "sections": {"stages.rlhf.reward_model": "RewardConfig",
                     "stages.rlhf.policy": {"algorithm": {"grpo": "GRPOConfig", "rloo": "RLOOConfig"}}},
        "data": {"rlhf.preferences": "preference", "rlhf.prompts": "prompt"},
    },
}

STAGE_NAMES: tuple[str, ...] = tuple(CATALOGUE)


def handlers() -> dict[str, str]:
    """Stage name -> "module:function" of its handler."""
    return {name: entry["handler"] for name, entry in CATALOGUE.items()}


def trl_class(name: str):
    """A TRL class by catalogue name: ``SFTConfig`` (``trl.SFTConfig``) or ``module:Class`` for
    the ones TRL keeps in its experimental namespace (ORPO, CPO/SimPO)."""
    import importlib

    module, sep, attr = name.partition(":")
    if not sep:
        module, attr = "trl", name
    if module.startswith("trl.experimental"):
        import os

        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # pinned and said in the docs
    return getattr(importlib.import_module(module), attr)


def trainer_sections(stage: str, config: dict) -> list[tuple[str, str]]:
    """[(config section, TRL config class name)] of a stage: each section's ``trainer_args`` is
    checked against that class. A section whose class depends on a setting (RLHF's policy:
    ``algorithm``) is resolved from ``config``."""
    out = []
    for section, cls in CATALOGUE[stage]["sections"].items():
        if isinstance(cls, dict):
            (key, choices), = cls.items()
            value = section_of(config, section).get(key)
            cls = choices.get(value, next(iter(choices.values())))
        out.append((section, cls))
    return out


def section_of(config: dict, dotted: str) -> dict:
    """The config map at a dotted section (``stages.rlhf.policy``); {} when it is not there."""
    cur: Any = config
    for k in dotted.split("."):
        cur = cur.get(k) if isinstance(cur, dict) else None
    return cur if isinstance(cur, dict) else {}


def describe() -> dict[str, Any]:
    """What the agreement test compares with the TypeScript catalogue."""
    return {"stages": list(STAGE_NAMES), "data": {name: dict(entry["data"]) for name, entry in CATALOGUE.items()}}


if __name__ == "__main__":
    import json

    print(json.dumps(describe()))
