"""runtime.report_to: TRL's TensorBoard integration writes inside the stage folder, and the metric
stream posttrain records (metrics.jsonl's source) is the same with and without it."""
from __future__ import annotations

from pathlib import Path

import pytest

from posttrain_sidecar import training
from posttrain_sidecar.stages import sft
from recorder import Recorder
from stage_helpers import make_request, smoke_config

pytest.importorskip("tensorboard", reason="tensorboard is a dev dependency (pip install -e '.[dev]')")


def sft_config(report_to: list[str]) -> dict:
    cfg = smoke_config(sft={"max_steps": 6, "logging_steps": 1})
    cfg["runtime"]["report_to"] = report_to
    return cfg


def stream(rec: Recorder) -> list[tuple[int, list[str]]]:
    """The metric stream without its values: which keys at which step (timings differ run to run)."""
    return [(step, sorted(values)) for _, step, values in rec.metrics]


def scalar_tags(event_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_tensorboard_logs_land_in_the_stage_folder_and_the_stream_is_unchanged(tmp_path):
    plain, tracked = Recorder(), Recorder()
    status, _ = sft.run(make_request("sft", tmp_path / "plain", sft_config([])), plain)
    assert status == "ok"
    run_dir = tmp_path / "runs" / "20260101-000000-abcd"
    stage_dir = run_dir / "stages" / "sft"
    status, _ = sft.run(make_request("sft", run_dir, sft_config(["tensorboard"]), stage_dir=stage_dir), tracked)
    assert status == "ok"

    assert stream(tracked) == stream(plain) and len(plain.metrics) >= 6
    tb = stage_dir / "tensorboard"
    events = list(tb.glob("events.out.tfevents.*"))
    assert events, sorted(p.relative_to(stage_dir) for p in stage_dir.rglob("*"))
    assert "train/loss" in scalar_tags(tb)
    # Nothing written among the checkpoints (transformers' default) or outside the stage folder.
    assert not list((stage_dir / "checkpoints").rglob("events.out.tfevents.*"))
    assert not (tmp_path / "plain" / "stages" / "sft" / "tensorboard").exists()


def test_rlhf_reward_model_and_policy_phases_log_to_separate_folders(tmp_path):
    from posttrain_sidecar.stages import rlhf

    cfg = smoke_config()
    cfg["runtime"]["report_to"] = ["tensorboard"]
    run_dir = tmp_path / "runs" / "r1"
    stage_dir = run_dir / "stages" / "rlhf"
    status, _ = rlhf.run(make_request("rlhf", run_dir, cfg, stage_dir=stage_dir), Recorder())
    assert status == "ok"
    found = sorted(str(p.parent.relative_to(stage_dir)) for p in stage_dir.rglob("events.out.tfevents.*"))
    assert found == ["tensorboard/policy", "tensorboard/reward_model"]
    assert any(t.startswith("train/") for t in scalar_tags(stage_dir / "tensorboard" / "reward_model"))


class _Args:
    def __init__(self, output_dir, report_to, run_name):
        self.output_dir, self.report_to, self.run_name = str(output_dir), report_to, run_name


class _Trainer:
    def __init__(self, args, callbacks):
        self.args = args
        self.callback_handler = type("H", (), {"callbacks": callbacks})()


def test_rlhf_phases_get_their_own_tensorboard_folder_and_run_name(tmp_path):
    from transformers.integrations import TensorBoardCallback

    stage_dir = tmp_path / "runs" / "r1" / "stages" / "rlhf"
    cfg = {"runtime": {"report_to": ["tensorboard"]}}
    args = training.tracking_args(cfg, str(stage_dir))
    assert args == {"report_to": ["tensorboard"], "run_name": "r1-rlhf", "project": "posttrain"}
    for phase in ("reward_model", "policy"):
        cb = TensorBoardCallback()
        trainer = _Trainer(_Args(stage_dir / "checkpoints" / phase, ["tensorboard"], args["run_name"]), [cb])
        training.route_integrations(trainer)
        assert cb.logging_dir == str(stage_dir / "tensorboard" / phase)
        assert trainer.args.run_name == f"r1-rlhf-{phase}"


def test_wandb_defaults_respect_the_users_env(tmp_path, monkeypatch):
    import os

    stage_dir = tmp_path / "runs" / "r2" / "stages" / "dpo"
    for var in ("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_NAME"):
        monkeypatch.setenv(var, "")  # recorded, so what route_integrations sets is undone afterwards
        monkeypatch.delenv(var)
    trainer = _Trainer(_Args(stage_dir / "checkpoints", ["wandb"], "r2-dpo"), [])
    training.route_integrations(trainer)
    assert (os.environ["WANDB_PROJECT"], os.environ["WANDB_RUN_GROUP"]) == ("posttrain", "r2")
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    monkeypatch.setenv("WANDB_RUN_GROUP", "g")
    monkeypatch.setenv("WANDB_NAME", "my-name")
    training.route_integrations(trainer)
    assert (os.environ["WANDB_PROJECT"], os.environ["WANDB_RUN_GROUP"]) == ("mine", "g")
    assert training.tracking_args({"runtime": {"report_to": ["wandb"]}}, str(stage_dir))["run_name"] == "my-name"
    assert training.tracking_args({"runtime": {"report_to": []}}, str(stage_dir)) == {"report_to": "none"}
