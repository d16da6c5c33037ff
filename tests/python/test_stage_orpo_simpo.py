"""ORPO and SimPO (TRL's experimental ORPOTrainer and CPOTrainer with loss_type simpo) on the
offline smoke model, in-process, from the base model (both are reference-free, so either may be a
run's first stage): the preference signal, and cancel + resume equal to the uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain_sidecar.stages import orpo, simpo
from recorder import Recorder
from stage_helpers import assert_resume_reproduces, deterministic, make_request, smoke_config, step_logs

STEPS = 30
MODULES = {"orpo": orpo, "simpo": simpo}


def run(stage: str, tmp: Path, rec: Recorder, **kw):
    deterministic()
    cfg = smoke_config(**{stage: {"max_steps": STEPS, "save_steps": 10, "logging_steps": 1}})
    return MODULES[stage].run(make_request(stage, tmp, cfg, **kw), rec)


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


@pytest.fixture(scope="module", params=["orpo", "simpo"])
def full_run(request, tmp_path_factory):
    stage = request.param
    tmp = tmp_path_factory.mktemp(f"{stage}-full")
    rec = Recorder()
    status, summary = run(stage, tmp, rec)
    return stage, tmp, rec, status, summary


def test_chosen_pulls_ahead_of_rejected_from_the_base_model(full_run):
    stage, _, rec, status, summary = full_run
    assert status == "ok" and summary["global_step"] == STEPS and summary.get("init_adapter") is None
    logs = step_logs(rec)
    assert sorted(logs) == list(range(1, STEPS + 1))
    for v in logs.values():
        assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= v.keys()
    margins = [logs[s]["rewards/margins"] for s in range(1, STEPS + 1)]
    # Measured at seed 0, mean of the first vs the last 5 steps: ORPO 0.023 -> 0.099, SimPO 0.75 -> 3.49.
    assert mean(margins[-5:]) > mean(margins[:5]) + 0.02
    assert mean(logs[s]["train/loss"] for s in range(STEPS - 4, STEPS + 1)) < mean(logs[s]["train/loss"] for s in range(1, 6))
    if stage == "orpo":  # SFT is part of ORPO's loss
        assert logs[STEPS]["train/nll_loss"] < logs[1]["train/nll_loss"]


def test_cancel_then_resume_equals_uninterrupted(full_run, tmp_path):
    stage, full_tmp, full, _, _ = full_run
    k = 12
    status, summary = run(stage, tmp_path, Recorder(cancel_at_step=k))
    assert status == "cancelled"
    ckpt = Path(summary["checkpoint"])
    assert ckpt.name == f"checkpoint-{k}" and json.loads((ckpt / "posttrain-complete.json").read_text())["step"] == k
    second = Recorder()
    status, _ = run(stage, tmp_path, second, resume_from=str(ckpt))
    assert status == "ok"
    assert_resume_reproduces(second, full, k, STEPS, tmp_path / "stages" / stage / "adapter", full_tmp / "stages" / stage / "adapter")
