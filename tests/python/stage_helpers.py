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
