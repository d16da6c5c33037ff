"""Building stage requests for in-process stage tests: the resolved smoke config (from the real
CLI, so it never drifts from the presets) and canonical smoke data, as the controller writes them."""
from __future__ import annotations

import copy
import functools
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "data" / "smoke"


@functools.lru_cache(maxsize=1)
def _smoke_config_json() -> str:
    out = subprocess.run(
        ["node", str(ROOT / "bin" / "posttrain.js"), "config", "--preset", "smoke"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    return out.stdout


def smoke_config(**stage_overrides) -> dict:
    """The resolved smoke config; stage_overrides like sft={"max_steps": 10} are merged in."""
    cfg = json.loads(_smoke_config_json())
    for stage, patch in stage_overrides.items():
        target = cfg["stages"][stage]
        for k, v in patch.items():
            if isinstance(v, dict) and isinstance(target.get(k), dict):
                target[k].update(v)
            else:
                target[k] = v
    return copy.deepcopy(cfg)


def canonical_data(dest: Path) -> dict[str, str]:
    """Canonical rows for every target (what the controller writes to runs/<id>/data/)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}

    def write(target: str, rows):
        p = dest / f"{target}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        out[target] = str(p)

    read = lambda name: [json.loads(l) for l in (SMOKE / name).read_text(encoding="utf-8").splitlines() if l.strip()]
    write("sft", ({"prompt": r["prompt"], "completion": r["response"]} for r in read("sft.jsonl")))
    write("dpo", read("dpo.jsonl"))
    for target in ("kto", "orpo", "simpo"):  # the smoke preset points them at the DPO pairs
        write(target, read("dpo.jsonl"))
    write("grpo", read("grpo.jsonl"))
    write("rlhf.preferences", read("preferences.jsonl"))
    write("rlhf.prompts", read("prompts.jsonl"))
    return out


# Each stage's data targets: the catalogue's.
from posttrain_sidecar.catalogue import CATALOGUE  # noqa: E402

TARGETS = {stage: list(entry["data"]) for stage, entry in CATALOGUE.items()}


def make_request(stage: str, tmp: Path, config: dict | None = None, init_adapter: str | None = None,
                 resume_from: str | None = None, stage_dir: Path | None = None) -> dict:
    data = canonical_data(tmp / "data")
    return {
        "stage": stage,
        "config": config or smoke_config(),
        "stage_dir": str(stage_dir or tmp / "stages" / stage),
        "data": {t: data[t] for t in TARGETS[stage]},
        "init_adapter": init_adapter,
        "resume_from": resume_from,
    }


def adapter_tensors(adapter_dir) -> dict:
    """The tensors of a saved PEFT adapter, for exact comparisons between runs."""
    from safetensors.torch import load_file

    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def deterministic() -> None:
    """One thread and a fixed seed: what makes two runs of a stage comparable to 1e-6."""
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.set_seed(0)


def step_logs(rec) -> dict[int, dict]:
    """The per-step training logs (not the end-of-training summary, which carries train/train_runtime)."""
    return {step: v for _, step, v in rec.metrics if "train/loss" in v}


def assert_resume_reproduces(resumed_rec, full_rec, k: int, steps: int, adapter_dir, full_adapter_dir) -> None:
    """A stage resumed after step k logged exactly steps k+1..steps with every value of the
    uninterrupted run's, and saved the same adapter (both within 1e-6)."""
    import pytest

    resumed, uninterrupted = step_logs(resumed_rec), step_logs(full_rec)
    assert sorted(resumed) == list(range(k + 1, steps + 1))
    for step, values in resumed.items():
        assert values.keys() == uninterrupted[step].keys(), step
        for key, v in values.items():
            assert v == pytest.approx(uninterrupted[step][key], abs=1e-6), (step, key)
    a, b = adapter_tensors(adapter_dir), adapter_tensors(full_adapter_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name
