"""KTO on the offline smoke model, in-process, from a short SFT run's adapter: the DPO pairs unpaired
by TRL, the learning signal (desirable rewards above undesirable ones), and cancel + resume equal
to the uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain_sidecar.stages import kto, sft
from recorder import Recorder
from stage_helpers import assert_resume_reproduces, deterministic, make_request, smoke_config, step_logs

STEPS = 30


def kto_config():
    return smoke_config(sft={"max_steps": 15, "save_steps": None}, kto={"max_steps": STEPS, "save_steps": 10, "logging_steps": 1})


def run_kto(tmp: Path, sft_adapter: str, rec: Recorder, **kw):
    deterministic()
    return kto.run(make_request("kto", tmp, kto_config(), init_adapter=sft_adapter, **kw), rec)


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory) -> str:
    deterministic()
    status, summary = sft.run(make_request("sft", tmp_path_factory.mktemp("kto-sft"), kto_config()), Recorder())
    assert status == "ok"
    return summary["adapter"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, sft_adapter):
    tmp = tmp_path_factory.mktemp("kto-full")
    rec = Recorder()
    status, summary = run_kto(tmp, sft_adapter, rec)
    return tmp, rec, status, summary


def test_desirable_completions_pull_ahead_of_undesirable_ones(full_run):
    _, rec, status, summary = full_run
    assert status == "ok" and summary["global_step"] == STEPS
    logs = step_logs(rec)
    assert sorted(logs) == list(range(1, STEPS + 1))
    first = logs[1]
    # At step 1 the policy is its reference (the frozen "ref" copy of the SFT adapter): rewards 0,
    # and the KTO loss of each completion is 1 - sigmoid(0) = 0.5.
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6) and first["rewards/rejected"] == pytest.approx(0.0, abs=1e-6)
    assert first["train/loss"] == pytest.approx(0.5, abs=1e-5)
    for v in logs.values():
        assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "train/kl"} <= v.keys()
    last = [logs[s]["rewards/margins"] for s in range(STEPS - 4, STEPS + 1)]
    assert sum(last) / len(last) > 0.2  # measured: 0.39 mean over the last 5 steps
    assert logs[STEPS]["rewards/rejected"] < -0.2 < logs[STEPS]["rewards/chosen"]
    assert sum(logs[s]["train/loss"] for s in range(STEPS - 4, STEPS + 1)) / 5 < 0.5


def test_cancel_then_resume_equals_uninterrupted(full_run, sft_adapter, tmp_path):
    _, full, _, _ = full_run
    k = 12
    first = Recorder(cancel_at_step=k)
    status, summary = run_kto(tmp_path, sft_adapter, first)
    assert status == "cancelled"
    ckpt = Path(summary["checkpoint"])
    assert ckpt.name == f"checkpoint-{k}" and json.loads((ckpt / "posttrain-complete.json").read_text())["step"] == k

    second = Recorder()
    status, _ = run_kto(tmp_path, sft_adapter, second, resume_from=str(ckpt))
    assert status == "ok"
    assert_resume_reproduces(second, full, k, STEPS, tmp_path / "stages" / "kto" / "adapter", full_run[0] / "stages" / "kto" / "adapter")
