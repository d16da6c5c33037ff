"""trainer_args: checked against the real TRL config dataclasses; posttrain's own fields refused."""
from __future__ import annotations

import pytest
import trl

from posttrain_sidecar import preflight as pf
from posttrain_sidecar.modeling import Runtime
from posttrain_sidecar.trainer_args import OWNED, merge, problems
from posttrain_sidecar.training import common_args


def test_unknown_owned_and_mistyped_fields_are_named_with_the_fix():
    found = dict(problems("stages.sft", trl.SFTConfig, {
        "neftune_alpha": 1, "output_dir": "x", "learning_rate": 1e-3, "neftune_noise_alpha": "five", "eval_accumulation_steps": 2,
    }))
    assert found == {
        "stages.sft.trainer_args.neftune_alpha": "SFTConfig has no field 'neftune_alpha'; did you mean 'neftune_noise_alpha'?",
        "stages.sft.trainer_args.output_dir": "posttrain sets output_dir itself (the run folder (stages/<s>/checkpoints)); it cannot be passed through",
        "stages.sft.trainer_args.learning_rate": "posttrain sets learning_rate itself (stages.sft.learning_rate); set stages.sft.learning_rate instead",
        "stages.sft.trainer_args.neftune_noise_alpha": "SFTConfig.neftune_noise_alpha expects a number or null, got 'five'",
    }


def test_literal_and_bool_fields_and_the_grpo_recipes():
    assert problems("stages.grpo", trl.GRPOConfig, {"importance_sampling_level": "sequence", "epsilon_high": 0.28, "mask_truncated_completions": True}) == []
    (bad,) = problems("stages.grpo", trl.GRPOConfig, {"mask_truncated_completions": "yes"})
    assert bad[1].endswith("expects true or false, got 'yes'")


def test_owned_covers_every_field_posttrain_sets_and_merge_refuses_a_stage_set_field():
    cfg = {"runtime": {"seed": 1, "report_to": []}}
    train = {"epochs": 1, "max_steps": 2, "learning_rate": 1e-4, "batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0,
             "lr_scheduler": "constant", "weight_decay": 0, "max_grad_norm": 1, "logging_steps": 1, "save_steps": None,
             "save_total_limit": 1}
    kwargs = common_args(cfg, train, Runtime(device="cpu", mode="lora", dtype="torch.float32"), "/tmp/x")
    assert set(kwargs) - set(OWNED) == set()
    with pytest.raises(ValueError, match="posttrain sets dataset_text_field itself for this stage"):
        merge("stages.sft", trl.SFTConfig, {"dataset_text_field": "text"}, {"dataset_text_field": "body"})
    assert merge("stages.sft", trl.SFTConfig, {"max_length": 8}, {"neftune_noise_alpha": 5})["neftune_noise_alpha"] == 5


def test_preflight_checks_each_trainer_section_of_selected_stages_only():
    cfg = {"stages": {"sft": {"trainer_args": {"nope": 1}}, "rlhf": {"reward_model": {"trainer_args": {"nope": 1}},
                                                                       "policy": {"algorithm": "rloo", "trainer_args": {"nope": 1}}}}}
    got = [(p["stage"], p["message"].split(":")[0]) for p in pf.check_trainer_args(cfg, ["rlhf"])]
    assert got == [("rlhf", "stages.rlhf.reward_model.trainer_args.nope"), ("rlhf", "stages.rlhf.policy.trainer_args.nope")]
    assert all(p["code"] == "bad_trainer_args" for p in pf.check_trainer_args(cfg, ["sft"]))


def test_a_value_trl_itself_refuses_is_named_not_an_internal_error(tmp_path):
    from posttrain_sidecar.connection import StageError
    from posttrain_sidecar.training import trl_args

    base = {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "bf16": False}
    with pytest.raises(StageError, match=r"SFTConfig refused stages.sft.trainer_args \(optim\): .*adamw_nope") as e:
        trl_args(trl.SFTConfig, "stages.sft", base, {"trainer_args": {"optim": "adamw_nope"}})
    assert e.value.code == "bad_trainer_args"
    assert trl_args(trl.SFTConfig, "stages.sft", base, {"trainer_args": {"optim": "adafactor"}}).optim == "adafactor"
