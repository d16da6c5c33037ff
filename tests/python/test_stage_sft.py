"""SFT on the offline smoke model, in-process: the learning signal, the artifacts, cancel and resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain_sidecar.stages import sft
from recorder import Recorder
from reliability import record_reliability
from stage_helpers import ROOT, adapter_tensors, make_request, smoke_config


def losses(rec: Recorder) -> list[float]:
    return [v for _, v in rec.series("train/loss")]



@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sft-full")
    rec = Recorder()
    status, summary = sft.run(make_request("sft", tmp, smoke_config(sft={"max_steps": 30, "save_steps": 10})), rec)
    return tmp, rec, status, summary


def test_loss_falls_and_metrics_are_namespaced(full_run):
    _, rec, status, summary = full_run
    assert status == "ok"
    assert summary["global_step"] == 30
    ls = losses(rec)
    assert len(ls) >= 25
    assert sum(ls[-5:]) / 5 < sum(ls[:5]) / 5 - 0.3, ls
    keys = {k for _, _, v in rec.metrics for k in v}
    assert {"train/loss", "train/learning_rate", "train/grad_norm"} <= keys
    assert all("/" in k for k in keys)
    steps = [s for s, _ in rec.series("train/loss")]
    assert steps == sorted(steps) and steps[0] == 1


def test_artifacts_load_with_plain_peft(full_run):
    tmp, rec, _, summary = full_run
    stage_dir = tmp / "stages" / "sft"
    adapter = stage_dir / "adapter"
    assert summary["adapter"] == str(adapter)
    meta = json.loads((adapter / "posttrain.json").read_text())
    assert meta["merged"] is False and meta["parent_adapter"] is None
    # checkpoints every 10 steps, each with its completion marker, reported to the controller
    assert [s for _, s in rec.checkpoints] == [10, 20, 30]
    kept = [(p, s) for p, s in rec.checkpoints if Path(p).exists()]
    assert [s for _, s in kept] == [20, 30]  # save_total_limit 2 rotates the oldest away
    for path, step in kept:
        assert json.loads((Path(path) / "posttrain-complete.json").read_text())["step"] == step
    samples = [json.loads(l) for l in (stage_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all({"prompt", "before", "after"} <= set(s) for s in samples)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ROOT / "data" / "smoke-model")
    model = PeftModel.from_pretrained(base, str(adapter))
    assert list(model.peft_config) == ["default"]


def test_cancel_then_resume_equals_uninterrupted(full_run, tmp_path):
    _, full, _, _ = full_run
    cfg = smoke_config(sft={"max_steps": 30, "save_steps": 10})
    first = Recorder(cancel_at_step=12)
    status, summary = sft.run(make_request("sft", tmp_path, cfg), first)
    assert status == "cancelled"
    ckpt = Path(summary["checkpoint"])
    # The cancel flag is seen at the next step boundary after the step-12 log.
    k = int(ckpt.name.split("-")[1])
    assert k in (12, 13) and (ckpt / "posttrain-complete.json").is_file()
    assert max(s for s, _ in first.series("train/loss")) == k

    second = Recorder()
    status, _ = sft.run(make_request("sft", tmp_path, cfg, resume_from=str(ckpt)), second)
    assert status == "ok"
    resumed = {s: v for s, v in second.series("train/loss")}
    uninterrupted = {s: v for s, v in full.series("train/loss")}
    assert min(resumed) == k + 1
    for step, value in resumed.items():
        assert value == pytest.approx(uninterrupted[step], abs=1e-6), step
    a = adapter_tensors(tmp_path / "stages" / "sft" / "adapter")
    b = adapter_tensors(full_run[0] / "stages" / "sft" / "adapter")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-6, k


def test_chat_rows_train_on_assistant_turns(tmp_path):
    rows = [json.loads(l) for l in (ROOT / "data" / "smoke" / "sft.jsonl").read_text().splitlines()]
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}]}) + "\n" for r in rows))
    req = make_request("sft", tmp_path, smoke_config(sft={"max_steps": 8, "save_steps": None}))
    req["data"]["sft"] = str(chat)
    rec = Recorder()
    status, _ = sft.run(req, rec)
    assert status == "ok"
    assert len(losses(rec)) >= 6


def test_resume_from_the_final_checkpoint_trains_nothing(full_run, tmp_path):
    """Killed while writing the final adapter (or the controller died before recording ok): the
    newest complete checkpoint is at max_steps. Resuming it must not train a step past max_steps;
    the adapter it saves is the uninterrupted run's."""
    src, full, _, _ = full_run
    import shutil

    stage_dir = tmp_path / "stages" / "sft"
    shutil.copytree(src / "stages" / "sft" / "checkpoints", stage_dir / "checkpoints")
    final = stage_dir / "checkpoints" / "checkpoint-30"
    rec = Recorder()
    cfg = smoke_config(sft={"max_steps": 30, "save_steps": 10})
    status, summary = sft.run(make_request("sft", tmp_path, cfg, resume_from=str(final)), rec)
    a = adapter_tensors(stage_dir / "adapter") if (stage_dir / "adapter").exists() else {}
    b = adapter_tensors(src / "stages" / "sft" / "adapter")
    same = a.keys() == b.keys() and all((a[k] - b[k]).abs().max().item() == 0 for k in a)
    record_reliability(fault="resume from a checkpoint already at max_steps (killed while writing the final adapter)", stage="sft",
                       survived=status == "ok" and not rec.series("train/loss") and same,
                       outcome=f"{len(rec.series('train/loss'))} steps trained; adapter {'identical to' if same else 'differs from'} the uninterrupted run's",
                       test="tests/python/test_stage_sft.py")
    assert status == "ok"
    assert rec.series("train/loss") == []  # not one step trained
    assert summary["global_step"] == 30 and summary.get("already_complete") is True
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() == 0, k


def test_rotation_keeps_the_last_complete_checkpoint_until_the_next_is_marked(tmp_path, monkeypatch):
    """save_total_limit 1, killed after checkpoint-20's files but before its completion marker:
    checkpoint-10 must still be there, complete (transformers rotated before the marker)."""
    from posttrain_sidecar import training

    real_marker = training.write_complete_marker

    class Killed(Exception):
        pass

    def marker(ckpt, **info):
        if info["step"] == 20:
            raise Killed()
        return real_marker(ckpt, **info)

    monkeypatch.setattr(training, "write_complete_marker", marker)
    cfg = smoke_config(sft={"max_steps": 30, "save_steps": 10, "save_total_limit": 1})
    with pytest.raises(Killed):
        sft.run(make_request("sft", tmp_path, cfg), Recorder())
    ckpts = tmp_path / "stages" / "sft" / "checkpoints"
    kept = (ckpts / "checkpoint-10" / "posttrain-complete.json").is_file()
    record_reliability(fault="killed between checkpoint rotation and the completion marker (save_total_limit 1)", stage="sft",
                       survived=kept, outcome="checkpoint-10 still complete: rotation waits for the new marker" if kept else "no complete checkpoint left",
                       test="tests/python/test_stage_sft.py")
    assert kept
    assert not (ckpts / "checkpoint-20" / "posttrain-complete.json").exists()

    # Uninterrupted, the limit still holds: one checkpoint left, the newest.
    monkeypatch.setattr(training, "write_complete_marker", real_marker)
    status, _ = sft.run(make_request("sft", tmp_path / "again", cfg), Recorder())
    assert status == "ok"
    left = (tmp_path / "again" / "stages" / "sft" / "checkpoints").glob("checkpoint-*")
    assert sorted(p.name for p in left) == ["checkpoint-30"]


@pytest.mark.parametrize("knob", ["use_dora", "use_rslora"])
def test_dora_and_rslora_reach_peft_and_train(knob, tmp_path):
    """model.adapter.use_dora / use_rslora: the saved adapter says so, loads with plain peft, and
    the loss falls in 6 steps on the smoke model."""
    from peft import PeftConfig

    cfg = smoke_config(sft={"max_steps": 6, "save_steps": None})
    cfg["model"]["adapter"][knob] = True
    rec = Recorder()
    status, summary = sft.run(make_request("sft", tmp_path, cfg), rec)
    assert status == "ok"
    saved = PeftConfig.from_pretrained(summary["adapter"])
    assert getattr(saved, knob) is True
    other = "use_rslora" if knob == "use_dora" else "use_dora"
    assert getattr(saved, other) is False
    lost = losses(rec)
    assert len(lost) == 6 and lost[-1] < lost[0]
