"""RLHF on the offline smoke model, in-process: the reward model's held-out accuracy, the policy
phase against it (GRPO and RLOO, KL to the reference), cancel/resume in either phase, and the
saved reward model loading with plain peft."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain_sidecar.connection import StageError
from posttrain_sidecar.stages import rlhf, sft
from recorder import Recorder
from reliability import record_reliability
from stage_helpers import ROOT, make_request, smoke_config

# The preset's 30 reward-model steps at lr 5e-3 land anywhere in 0.56-0.75 held-out accuracy
# depending on the seed; 100 steps at 1e-3 (about a second on CPU) land in 0.84-0.97.
RM = {"max_steps": 100, "learning_rate": 1e-3, "save_steps": 25}
POLICY = {"max_steps": 20, "save_steps": 10}
N_RM = RM["max_steps"]


def rlhf_config(rm=None, policy=None):
    return smoke_config(rlhf={"reward_model": {**RM, **(rm or {})}, "policy": {**POLICY, **(policy or {})}})


def steps_of(rec: Recorder, key: str) -> list[int]:
    return [s for s, _ in rec.series(key)]


@pytest.fixture(scope="module")
def parent_adapter(tmp_path_factory):
    """A short SFT run stands in for the previous stage's (GRPO) adapter."""
    tmp = tmp_path_factory.mktemp("rlhf-parent")
    status, summary = sft.run(make_request("sft", tmp, smoke_config(sft={"max_steps": 8, "save_steps": None})), Recorder())
    assert status == "ok"
    return summary["adapter"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, parent_adapter):
    tmp = tmp_path_factory.mktemp("rlhf-full")
    rec = Recorder()
    status, summary = rlhf.run(make_request("rlhf", tmp, rlhf_config(), init_adapter=parent_adapter), rec)
    return tmp / "stages" / "rlhf", rec, status, summary


def test_reward_model_beats_chance_on_held_out_pairs(full_run):
    stage_dir, rec, status, summary = full_run
    assert status == "ok"
    rm = summary["reward_model"]
    assert rm["global_step"] == N_RM and rm["eval_pairs"] == 32
    assert rm["heldout_accuracy"] >= 0.7, rm
    assert summary["heldout_accuracy"] == rm["heldout_accuracy"]
    # the metric stream: rm/ prefix, steps 1..N_rm, eval at every checkpoint and at the end
    assert steps_of(rec, "rm/train/loss") == list(range(1, N_RM + 1))
    assert steps_of(rec, "rm/eval/accuracy") == [25, 50, 75, 100]
    assert rec.series("rm/eval/accuracy")[-1][1] == pytest.approx(rm["heldout_accuracy"])
    assert all(k.startswith("rm/") for _, s, v in rec.metrics if s <= N_RM for k in v)
    meta = json.loads((stage_dir / "reward_model" / "posttrain.json").read_text())
    assert meta["heldout_accuracy"] == rm["heldout_accuracy"] and meta["steps"] == N_RM
    assert meta["initialized_from"] == "base_model"
    for path, step in rec.checkpoints:
        marker = json.loads((Path(path) / "posttrain-complete.json").read_text()) if Path(path).is_dir() else None
        if step <= N_RM and marker:
            assert marker["phase"] == "reward_model" and Path(path).parent.name == "reward_model"


def test_policy_phase_optimises_against_the_reward_model_with_kl(full_run, parent_adapter):
    stage_dir, rec, status, summary = full_run
    assert status == "ok"
    assert summary["global_step"] == N_RM + POLICY["max_steps"]
    policy_steps = list(range(N_RM + 1, N_RM + POLICY["max_steps"] + 1))
    assert steps_of(rec, "train/reward") == policy_steps
    assert steps_of(rec, "train/kl") == policy_steps
    assert "rewards/reward_model/mean" in {k for _, _, v in rec.metrics for k in v}
    kl = [v for _, v in rec.series("train/kl")]
    assert kl[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference (the parent adapter) at first
    assert max(kl) > 0
    # checkpoints: stage-wide steps, policy phase marked, under checkpoints/policy
    assert [s for _, s in rec.checkpoints] == [25, 50, 75, 100, 110, 120]
    last = Path(rec.checkpoints[-1][0])
    assert last.parent.name == "policy"
    assert json.loads((last / "posttrain-complete.json").read_text())["phase"] == "policy"
    meta = json.loads((stage_dir / "adapter" / "posttrain.json").read_text())
    assert meta["parent_adapter"] == parent_adapter
    assert meta["reward_model"] == str(stage_dir / "reward_model") and meta["beta"] > 0
    samples = [json.loads(l) for l in (stage_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all({"prompt", "before", "after"} <= set(s) for s in samples)
    from safetensors.torch import load_file

    assert not any(".ref." in k for k in load_file(str(stage_dir / "adapter" / "adapter_model.safetensors")))


def test_rloo_policy_runs(tmp_path, parent_adapter):
    rec = Recorder()
    cfg = rlhf_config(rm={"max_steps": 10, "save_steps": None}, policy={"algorithm": "rloo", "max_steps": 6, "save_steps": None})
    status, summary = rlhf.run(make_request("rlhf", tmp_path, cfg, init_adapter=parent_adapter), rec)
    assert status == "ok", summary
    assert summary["policy"]["algorithm"] == "rloo"
    assert steps_of(rec, "train/reward") == list(range(11, 17))
    assert steps_of(rec, "train/kl") == list(range(11, 17))
    assert (tmp_path / "stages" / "rlhf" / "adapter" / "adapter_config.json").is_file()


def test_cancel_in_policy_phase_then_resume_equals_uninterrupted(full_run, parent_adapter, tmp_path):
    _, full, _, _ = full_run
    cfg = rlhf_config()
    first = Recorder(cancel_at_step=N_RM + 12)
    status, summary = rlhf.run(make_request("rlhf", tmp_path, cfg, init_adapter=parent_adapter), first)
    assert status == "cancelled" and summary["phase"] == "policy"
    ckpt = Path(summary["checkpoint"])
    assert ckpt.name == "checkpoint-12" and ckpt.parent.name == "policy"
    assert json.loads((ckpt / "posttrain-complete.json").read_text())["step"] == N_RM + 12

    second = Recorder()
    status, summary = rlhf.run(make_request("rlhf", tmp_path, cfg, init_adapter=parent_adapter, resume_from=str(ckpt)), second)
    assert status == "ok", summary
    assert summary["reward_model"]["reused"] is True
    assert not second.series("rm/train/loss")  # the reward model is not trained again
    for key in ("train/loss", "train/reward", "train/kl"):
        resumed = dict(second.series(key))
        uninterrupted = dict(full.series(key))
        assert sorted(resumed) == list(range(N_RM + 13, N_RM + 21)), key
        for step, value in resumed.items():
            assert value == pytest.approx(uninterrupted[step], abs=1e-5), (key, step)


def test_cancel_in_reward_model_phase_then_resume_completes_both(full_run, parent_adapter, tmp_path):
    _, full, _, full_summary = full_run
    cfg = rlhf_config()
    first = Recorder(cancel_at_step=30)
    status, summary = rlhf.run(make_request("rlhf", tmp_path, cfg, init_adapter=parent_adapter), first)
    assert status == "cancelled" and summary["phase"] == "reward_model"
    ckpt = Path(summary["checkpoint"])
    assert ckpt.name == "checkpoint-30" and ckpt.parent.name == "reward_model"
    assert json.loads((ckpt / "posttrain-complete.json").read_text())["phase"] == "reward_model"
    assert not (tmp_path / "stages" / "rlhf" / "reward_model").exists()
    assert not first.series("train/reward")

    second = Recorder()
    status, summary = rlhf.run(make_request("rlhf", tmp_path, cfg, init_adapter=parent_adapter, resume_from=str(ckpt)), second)
    assert status == "ok", summary
    assert steps_of(second, "rm/train/loss") == list(range(31, N_RM + 1))
    assert steps_of(second, "train/reward") == list(range(N_RM + 1, N_RM + 21))
    resumed, uninterrupted = dict(second.series("rm/train/loss")), dict(full.series("rm/train/loss"))
    for step, value in resumed.items():
        assert value == pytest.approx(uninterrupted[step], abs=1e-5), step
    assert summary["heldout_accuracy"] == pytest.approx(full_summary["heldout_accuracy"])
    assert (tmp_path / "stages" / "rlhf" / "adapter" / "adapter_config.json").is_file()


def test_policy_resume_needs_the_saved_reward_model(tmp_path):
    stage_dir = tmp_path / "stages" / "rlhf"
    ckpt = stage_dir / "checkpoints" / "policy" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    (ckpt / "posttrain-complete.json").write_text(json.dumps({"complete": True, "step": N_RM + 10, "phase": "policy"}))
    with pytest.raises(StageError) as e:
        rlhf.run(make_request("rlhf", tmp_path, rlhf_config(), resume_from=str(ckpt)), Recorder())
    assert e.value.code == "bad_checkpoint"


def test_reward_model_loads_with_plain_peft_and_ranks_pairs(full_run):
    """Outside the project: base + peft + the saved tokenizer, scoring prompt + response."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    stage_dir, _, _, summary = full_run
    rm_dir = stage_dir / "reward_model"
    tok = AutoTokenizer.from_pretrained(rm_dir)
    base = AutoModelForSequenceClassification.from_pretrained(ROOT / "data" / "smoke-model", num_labels=1)
    base.config.pad_token_id = tok.pad_token_id
    model = PeftModel.from_pretrained(base, str(rm_dir)).eval()

    def score(prompt: str, response: str) -> float:
        enc = tok(prompt + response, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            return model(**enc).logits[0, 0].item()

    # a clear pair: right answer vs a far-off wrong one
    assert score("What is 2 plus 7?", "The answer is 9.\n#### 9") > score("What is 2 plus 7?", "The answer is 17.\n#### 17")
    # and the same held-out accuracy the stage reported, from the same split
    from posttrain_sidecar.training import load_rows, split

    _, held_out = split(load_rows(str(ROOT / "data" / "smoke" / "preferences.jsonl")), 0.25, 42)
    wins = sum(score(r["prompt"], r["chosen"]) > score(r["prompt"], r["rejected"]) for r in held_out)
    assert wins / len(held_out) == pytest.approx(summary["heldout_accuracy"])


def test_kill_at_the_reward_model_to_policy_hand_off_resumes_bit_exact(full_run, parent_adapter, tmp_path):
    """Killed after the reward model's last checkpoint, before its folder was saved: the resume
    must not train the reward model a step past its max_steps, and the policy that follows must
    be the uninterrupted run's."""
    import shutil

    src, full, _, full_summary = full_run
    stage_dir = tmp_path / "stages" / "rlhf"
    shutil.copytree(src / "checkpoints" / "reward_model", stage_dir / "checkpoints" / "reward_model")
    ckpt = stage_dir / "checkpoints" / "reward_model" / f"checkpoint-{N_RM}"
    assert (ckpt / "posttrain-complete.json").is_file()
    rec = Recorder()
    status, summary = rlhf.run(make_request("rlhf", tmp_path, rlhf_config(), init_adapter=parent_adapter, resume_from=str(ckpt)), rec)
    same = all(rec.series(k) == full.series(k) for k in ("train/loss", "train/reward", "train/kl"))
    record_reliability(fault="killed at the RLHF reward-model to policy hand-off", stage="rlhf",
                       survived=status == "ok" and not rec.series("rm/train/loss") and same,
                       outcome=f"reward model trained {len(rec.series('rm/train/loss'))} more steps; policy metrics {'equal' if same else 'differ from'} the uninterrupted run",
                       test="tests/python/test_stage_rlhf.py")
    assert status == "ok", summary
    assert rec.series("rm/train/loss") == []  # the reward model was complete: not one step more
    assert summary["reward_model"]["global_step"] == N_RM
    assert summary["heldout_accuracy"] == full_summary["heldout_accuracy"]
    for key in ("train/loss", "train/reward", "train/kl"):
        assert rec.series(key) == full.series(key), key
    from stage_helpers import adapter_tensors

    a, b = adapter_tensors(stage_dir / "adapter"), adapter_tensors(src / "adapter")
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max().item() == 0 for k in a)
