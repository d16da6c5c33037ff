"""DPO on the offline smoke model, in-process, starting from a short SFT run's adapter: the
reference is the SFT-adapted model, the preference signal, the artifacts, cancel and resume."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from posttrain_sidecar.stages import dpo, sft
from recorder import Recorder
from stage_helpers import ROOT, adapter_tensors, make_request, smoke_config

LN2 = math.log(2)
STEPS = 30


def deterministic() -> None:
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.set_seed(0)


def dpo_config(**dpo):
    return smoke_config(sft={"max_steps": 15, "save_steps": None}, dpo={"max_steps": STEPS, "save_steps": 10, "logging_steps": 1, **dpo})


def run_dpo(tmp: Path, sft_adapter: str, rec: Recorder, config: dict | None = None, **kw):
    deterministic()
    return dpo.run(make_request("dpo", tmp, config or dpo_config(), init_adapter=sft_adapter, **kw), rec)


def step_logs(rec: Recorder) -> dict[int, dict]:
    """The per-step training logs (not the end-of-training summary, which carries train/train_runtime)."""
    return {step: v for _, step, v in rec.metrics if "train/loss" in v}


def series(rec: Recorder, key: str) -> list[float]:
    return [v for _, v in rec.series(key)]



@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("dpo-sft")
    deterministic()
    status, summary = sft.run(make_request("sft", tmp, dpo_config()), Recorder())
    assert status == "ok"
    return summary["adapter"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, sft_adapter):
    tmp = tmp_path_factory.mktemp("dpo-full")
    rec = Recorder()
    status, summary = run_dpo(tmp, sft_adapter, rec)
    return tmp, rec, status, summary


def test_reference_is_the_sft_adapted_model(full_run, sft_adapter):
    """The log at step 1 is emitted after step 1's update, but TRL's DPO metrics (and the Trainer's
    loss) are the ones computed in that step's forward pass, before the update. With the frozen
    "ref" copy of the SFT adapter as reference, policy == reference there: rewards are exactly 0 and
    the sigmoid loss is ln 2. Step 2 (after one update) already shows non-zero rewards."""
    _, rec, status, _ = full_run
    assert status == "ok"
    logs = step_logs(rec)
    first = logs[1]
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/rejected"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert first["train/loss"] == pytest.approx(LN2, abs=1e-5)
    assert first["train/grad_norm"] > 0  # the update at step 1 did move the policy ...
    assert abs(logs[2]["rewards/chosen"]) > 1e-4  # ... and step 2's forward sees it

    # Had the reference been the bare base model, step-1 rewards would be far from 0: the SFT
    # adapter changes the chosen completions' log-probs by a lot.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ROOT / "data" / "smoke-model")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ROOT / "data" / "smoke-model"), sft_adapter).eval()
    rows = [json.loads(l) for l in (ROOT / "data" / "smoke" / "dpo.jsonl").read_text().splitlines()[:8]]

    def logp(row) -> float:
        p = tok(row["prompt"])["input_ids"]
        ids = torch.tensor([tok(row["prompt"] + row["chosen"] + tok.eos_token)["input_ids"]])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
        return lp[len(p) - 1:].sum().item()

    adapted = [logp(r) for r in rows]
    with model.disable_adapter():
        base = [logp(r) for r in rows]
    beta = dpo_config()["stages"]["dpo"]["beta"]
    assert beta * abs(sum(adapted) - sum(base)) / len(rows) > 0.1


def test_margins_and_accuracy_rise(full_run):
    _, rec, _, summary = full_run
    assert summary["global_step"] == STEPS
    margins = series(rec, "rewards/margins")
    acc = series(rec, "rewards/accuracies")
    losses = series(rec, "train/loss")
    assert len(margins) == STEPS and len(acc) == STEPS
    first, last = sum(margins[:5]) / 5, sum(margins[-5:]) / 5
    assert last > first + 0.2, margins
    assert sum(acc[-5:]) / 5 > 0.5, acc
    assert sum(losses[-5:]) / 5 < LN2 - 0.1, losses
    keys = {k for _, _, v in rec.metrics for k in v}
    assert {"train/loss", "train/grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"} <= keys
    assert all("/" in k for k in keys)


def test_artifacts(full_run, sft_adapter):
    tmp, rec, _, summary = full_run
    stage_dir = tmp / "stages" / "dpo"
    adapter = stage_dir / "adapter"
    assert summary["adapter"] == str(adapter) and summary["init_adapter"] == sft_adapter
    meta = json.loads((adapter / "posttrain.json").read_text())
    assert meta["parent_adapter"] == sft_adapter and meta["stage"] == "dpo" and meta["merged"] is False
    # only the trained adapter: TRL's frozen "ref" copy stays out of the stage's output
    assert not (adapter / "ref").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    trained, parent = adapter_tensors(adapter), adapter_tensors(sft_adapter)
    assert trained.keys() == parent.keys()
    assert max((trained[k] - parent[k]).abs().max().item() for k in trained) > 1e-4

    assert [s for _, s in rec.checkpoints] == [10, 20, 30]
    for path, step in rec.checkpoints[-2:]:
        assert json.loads((Path(path) / "posttrain-complete.json").read_text())["step"] == step
    samples = [json.loads(l) for l in (stage_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(s["stage"] == "dpo" and {"prompt", "before", "after"} <= set(s) for s in samples)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ROOT / "data" / "smoke-model"), str(adapter))
    assert list(model.peft_config) == ["default"]
    assert not any(".ref." in n for n, _ in model.named_parameters())


def test_cancel_then_resume_equals_uninterrupted(full_run, sft_adapter, tmp_path):
    _, full, _, _ = full_run
    k = 12
    first = Recorder(cancel_at_step=k)
    status, summary = run_dpo(tmp_path, sft_adapter, first)
    assert status == "cancelled"
    ckpt = Path(summary["checkpoint"])
    assert ckpt.name == f"checkpoint-{k}" and summary["global_step"] == k
    assert json.loads((ckpt / "posttrain-complete.json").read_text())["step"] == k
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "optimizer.pt").is_file()
    assert max(step_logs(first)) == k
    assert not (tmp_path / "stages" / "dpo" / "adapter").exists()  # a cancelled stage saves no final adapter

    second = Recorder()
    status, _ = run_dpo(tmp_path, sft_adapter, second, resume_from=str(ckpt))
    assert status == "ok"
    resumed, uninterrupted = step_logs(second), step_logs(full)
    assert sorted(resumed) == list(range(k + 1, STEPS + 1))
    # Every metric, not only the loss: a resume that silently reset the trained adapter (the
    # transformers 5.18 + "ref" adapter problem) would show loss ln 2 and zero rewards at k+1.
    for step, values in resumed.items():
        assert values.keys() == uninterrupted[step].keys(), step
        for key, v in values.items():
            assert v == pytest.approx(uninterrupted[step][key], abs=1e-6), (step, key)

    a = adapter_tensors(tmp_path / "stages" / "dpo" / "adapter")
    b = adapter_tensors(full_run[0] / "stages" / "dpo" / "adapter")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name


def test_ipo_loss_runs(sft_adapter, tmp_path):
    rec = Recorder()
    cfg = dpo_config(max_steps=8, save_steps=None, loss_type="ipo")
    status, summary = run_dpo(tmp_path, sft_adapter, rec, cfg)
    assert status == "ok" and summary["global_step"] == 8
    losses = series(rec, "train/loss")
    beta = cfg["stages"]["dpo"]["beta"]
    # IPO: (h - 1/(2β))² with h = 0 at the first step (policy == reference)
    assert losses[0] == pytest.approx((1 / (2 * beta)) ** 2, rel=1e-5)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_eval_split_and_prompt_truncation(sft_adapter, tmp_path):
    cfg = dpo_config(max_steps=4, save_steps=2)
    cfg["data"]["dpo"].update(eval_fraction=0.25, max_prompt_length=4, max_length=24)
    rec = Recorder()
    status, _ = run_dpo(tmp_path, sft_adapter, rec, cfg)
    assert status == "ok"
    evals = [(step, v) for _, step, v in rec.metrics if "eval/loss" in v]
    assert [s for s, _ in evals] == [2, 4]
    assert all("eval/rewards/margins" in v and "eval/rewards/accuracies" in v for _, v in evals)
