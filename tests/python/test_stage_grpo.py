"""GRPO trained in-process on the smoke model: reward signal after SFT, KL reference = the SFT
adapter, cancel/resume at a generation-cycle boundary, and settings that fail before training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import set_seed

from posttrain_sidecar.connection import StageError
from posttrain_sidecar.stages import grpo, sft
from recorder import Recorder
from reliability import record_reliability
from stage_helpers import make_request, smoke_config

# Settings for the smoke preset's stages.grpo that make the reward signal reliable on the tiny
# random-init model: its tied 0.02-scale embeddings cap every logit near +-1.3, so at temperature
# 1 a sample is close to uniform noise; at 0.12 samples stay near the SFT mode but still differ
# within a group. 32 completions a step (4 prompts x 8) keep the per-step reward from being noise.
GRPO_SMOKE = {
    "max_steps": 30,
    "learning_rate": 3.0e-3,
    "batch_size": 32,
    "num_generations": 8,
    "temperature": 0.12,
}
# Wall-clock metrics, and the end-of-training summary (train_loss averages only the steps this
# process ran), differ between an uninterrupted and a resumed run by nature.
NOT_REPRODUCIBLE = ("train/step_time", "train/total_flos")


def _reproducible(key: str) -> bool:
    return key not in NOT_REPRODUCIBLE and not key.startswith("train/train_")


def _config(**grpo_patch):
    return smoke_config(grpo={**GRPO_SMOKE, **grpo_patch})


def _run_grpo(tmp: Path, init_adapter: str, config: dict, rec: Recorder, resume_from: str | None = None, stage_dir: Path | None = None):
    set_seed(int(config["runtime"]["seed"]))
    req = make_request("grpo", tmp, config, init_adapter=init_adapter, resume_from=resume_from, stage_dir=stage_dir)
    return grpo.run(req, rec)


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory):
    """The preset's SFT (30 steps): teaches "The answer is N.\\n#### N"."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("grpo-sft")
    config = smoke_config()
    set_seed(int(config["runtime"]["seed"]))
    status, summary = sft.run(make_request("sft", tmp, config), Recorder())
    assert status == "ok"
    return summary["adapter"]


def _quarters(values: list[float]) -> tuple[float, float]:
    q = max(1, len(values) // 4)
    return sum(values[:q]) / q, sum(values[-q:]) / q


def test_grpo_raises_reward_after_sft(sft_adapter, tmp_path):
    rec = Recorder()
    status, summary = _run_grpo(tmp_path, sft_adapter, _config(), rec)
    assert status == "ok", summary
    assert summary["global_step"] == GRPO_SMOKE["max_steps"] and summary["generation_cycle_steps"] == 1

    rewards = [v for _, v in rec.series("train/reward")]
    assert len(rewards) == GRPO_SMOKE["max_steps"]
    first, last = _quarters(rewards)
    print(f"train/reward first quarter {first:.3f}, last quarter {last:.3f}; {summary['train_runtime_s'] / summary['global_step']:.3f} s/step")
    assert last > first + 0.15, (first, last, rewards)

    keys = set().union(*(v for _, _, v in rec.metrics))
    for k in ("train/reward", "train/reward_std", "train/kl", "train/loss", "rewards/format/mean", "rewards/exact_answer/mean",
              "completions/mean_length", "completions/clipped_ratio"):
        assert k in keys, (k, sorted(keys))
    assert all(stage == "grpo" for stage, _, _ in rec.metrics)

    # The KL reference is the SFT adapter (TRL's frozen "ref" copy), not the bare base model: the
    # policy starts equal to it, so the first step's KL is 0; it grows as GRPO moves the policy.
    kl = [v for _, v in rec.series("train/kl")]
    assert abs(kl[0]) < 1e-6 and max(kl) > 1e-4

    stage_dir = tmp_path / "stages" / "grpo"
    adapter = Path(summary["adapter"])
    meta = json.loads((adapter / "posttrain.json").read_text())
    assert meta["stage"] == "grpo" and meta["parent_adapter"] == sft_adapter and meta["merged"] is False
    assert [f["name"] for f in meta["reward_funcs"]] == ["format", "exact_answer"]
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "ref").exists()
    samples = [json.loads(l) for l in (stage_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all({"prompt", "before", "after"} <= set(s) for s in samples)
    assert any(c[1] == 10 for c in rec.checkpoints)  # save_steps 10


def _tensors(adapter_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def _by_step(rec: Recorder) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for _, step, values in rec.metrics:
        out.setdefault(step, {}).update({k: v for k, v in values.items() if _reproducible(k)})
    return out


def test_grpo_cancel_at_cycle_boundary_then_resume_matches(sft_adapter, tmp_path):
    # Two optimizer steps per generation cycle: completions for steps 2c+1 and 2c+2 are generated
    # together and buffered, and the buffer is not in the checkpoint. 32 completions a step are 4
    # of the 48 prompts, so an epoch is 12 steps: the cut and the resume fall in the second epoch.
    config = _config(max_steps=16, steps_per_generation=2, save_steps=None)

    full = Recorder()
    status, full_summary = _run_grpo(tmp_path / "full", sft_adapter, config, full)
    assert status == "ok" and full_summary["global_step"] == 16 and full_summary["generation_cycle_steps"] == 2

    # Cancel requested while step 13 is logged: step 13 ends mid-cycle, so it stops (and saves) at 14.
    part_dir = tmp_path / "part" / "stages" / "grpo"
    cut = Recorder(cancel_at_step=13)
    status, summary = _run_grpo(tmp_path / "part", sft_adapter, config, cut, stage_dir=part_dir)
    assert status == "cancelled"
    assert summary["global_step"] == 14 and summary["checkpoint"].endswith("checkpoint-14")
    assert cut.checkpoints == [(summary["checkpoint"], 14)]
    assert (Path(summary["checkpoint"]) / "posttrain-complete.json").is_file()

    resumed = Recorder()
    status, final = _run_grpo(tmp_path / "part", sft_adapter, config, resumed, resume_from=summary["checkpoint"], stage_dir=part_dir)
    assert status == "ok" and final["global_step"] == 16

    want, got = _by_step(full), _by_step(resumed)
    steps = [s for s in sorted(want) if s > 14]
    assert steps == [15, 16] and sorted(got) == steps
    for s in steps:
        assert set(got[s]) == set(want[s]), s
        for k, v in want[s].items():
            assert got[s][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (s, k, got[s][k], v)
    a, b = _tensors(full_summary["adapter"]), _tensors(final["adapter"])
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7)


def test_bad_reward_path_fails_before_training(tmp_path):
    rec = Recorder()
    config = _config(reward_funcs=[{"name": "format", "weight": 1, "args": {}}, {"name": "no_such_rewards_mod:score", "weight": 1, "args": {}}])
    with pytest.raises(StageError) as exc:
        _run_grpo(tmp_path, None, config, rec)
    assert exc.value.code == "reward_import_failed"
    assert "no_such_rewards_mod:score" in exc.value.message and "No module named" in exc.value.message
    assert rec.states == [] and rec.metrics == []  # not even the model was loaded


def test_vllm_refused_without_cuda(tmp_path):
    rec = Recorder()
    with pytest.raises(StageError) as exc:
        _run_grpo(tmp_path, None, _config(use_vllm=True), rec)
    assert exc.value.code == "vllm_unavailable"
    assert "training" not in rec.states and rec.metrics == []


def test_generation_batch_not_divisible_by_num_generations(tmp_path):
    rec = Recorder()
    with pytest.raises(StageError) as exc:
        _run_grpo(tmp_path, None, _config(batch_size=6, num_generations=4), rec)
    assert exc.value.code == "bad_config"
    assert "num_generations" in exc.value.message and "6" in exc.value.message
    assert "training" not in rec.states and rec.metrics == []


def test_config_checkpoints_align_with_generation_cycles(tmp_path):
    from posttrain_sidecar.modeling import Runtime

    config = _config(grad_accum=2, steps_per_generation=4, num_iterations=2, save_steps=3, batch_size=8, num_generations=4)
    rec = Recorder()
    runtime = Runtime(device="cpu", mode="lora", dtype=torch.float32)
    args = grpo.build_grpo_config(config, config["stages"]["grpo"], runtime, str(tmp_path), [1.0, 1.0], conn=rec)
    # 4 micro-batches per generation, each reused for 2 iterations = 8 micro-steps = 4 optimizer steps
    assert grpo.cycle_steps(args) == 4 and args.save_steps == 4
    assert any("save_steps 3 moved to 4" in m for _, m in rec.logs)
    assert args.reward_weights == [1.0, 1.0] and args.scale_rewards == "group" and args.loss_type == "dapo"
    assert args.temperature == pytest.approx(0.12) and args.use_vllm is False and args.log_completions is False
    assert args.output_dir == str(tmp_path / "checkpoints")


def test_too_few_prompts_for_one_generation_batch_is_an_error_not_ok(tmp_path):
    """One prompt cannot fill a generation batch of batch_size / num_generations prompts: TRL
    trains 0 steps and ends normally; the stage must fail and say why, not report ok."""
    from posttrain_sidecar.connection import StageError

    req = make_request("grpo", tmp_path, smoke_config(grpo={"max_steps": 4, "save_steps": None}))
    first = Path(req["data"]["grpo"]).read_text(encoding="utf-8").splitlines()[0]
    one = tmp_path / "one.jsonl"
    one.write_text(first + "\n", encoding="utf-8")
    req["data"]["grpo"] = str(one)
    try:
        status, _ = grpo.run(req, Recorder())
        error = None
    except StageError as e:
        status, error = "error", e
    record_reliability(fault="GRPO with fewer prompts than one generation batch", stage="grpo",
                       survived=error is not None and error.code == "no_steps",
                       outcome=f"stage {status}{f' [{error.code}]' if error else ''}: 0 steps are an error naming the rows it lacked",
                       test="tests/python/test_stage_grpo.py")
    assert error is not None and error.code == "no_steps", status
    assert "1 prompt row(s) cannot fill one generation batch, which takes 4 prompts" in error.message
    assert "stages.grpo.batch_size" in error.message
    assert not (tmp_path / "stages" / "grpo" / "adapter").exists()
