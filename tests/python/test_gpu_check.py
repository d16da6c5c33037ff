"""The GPU check's CPU twin: bench/gpu/check.py --twin, the same driver and code path as on a GPU
host (models built from configs, the real sidecar over the real protocol, the plain TRL baseline,
the memory estimate against the measured peak), on a tiny model with LoRA on the CPU. So the kit
cannot rot between the rare occasions a GPU is at hand. Also: prepare.py's bundle logic (the
check config from the real CLI; bitsandbytes slimmed; what to bring for a host) on local wheels."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "gpu"))

import prepare  # noqa: E402

BAND = (0.75, 1.25)  # the estimate vs the measured peak (resident set here, GPU memory there)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-twin")
    bundle = tmp / "bundle"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu" / "prepare.py"), "--bundle", str(bundle), "--config-only"],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu" / "check.py"), "--config", str(bundle / "config.json"),
                           "--out", str(tmp / "out"), "--twin", "--budget-s", "400"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    results = json.loads((tmp / "out" / "gpu-check-twin.json").read_text())
    return done, results, json.loads((bundle / "config.json").read_text())


def test_check_config_is_the_gpu_preset_resolved_by_the_cli(twin):
    _, _, cfg = twin
    assert cfg["model"]["use_4bit"] is True and cfg["model"]["adapter"]["mode"] == "qlora"
    assert cfg["model"]["gradient_checkpointing"] is True and cfg["runtime"]["memory_check"] == "warn"
    assert cfg["data"]["sft"]["max_length"] == 512 and cfg["stages"]["sft"]["batch_size"] == 1


def test_twin_runs_every_stage_through_the_real_sidecar(twin):
    done, results, _ = twin
    assert done.returncode == 0, done.stderr[-3000:]
    job = results["jobs"]["tiny-lora"]
    assert job["preflight_ok"] is True
    expected_steps = {"sft": 4, "dpo": 3, "grpo": 2, "rlhf": 1}
    for stage, steps in expected_steps.items():
        row = job["stages"][stage]
        assert row["status"] == "ok", row
        assert row["steps"] == steps
        assert row["linear4bit_modules"] == 0  # LoRA on the CPU: no 4-bit layer may be there
        assert row["peak_rss_gib"] > 0.1
    assert job["stages"]["sft"]["tokens_per_s"] > 0 and job["stages"]["dpo"]["tokens_per_s"] > 0
    assert job["stages"]["grpo"]["completions_per_s"] > 0 and job["stages"]["rlhf"]["completions_per_s"] > 0
    assert job["stages"]["rlhf"]["rm_steps"] == 2
    # The stage said how it holds the model: the same line a GPU host shows with "adapter qlora".
    # Gradient checkpointing on, from the check's config, as QLoRA trains on the GPU host.
    assert any("adapter lora, dtype float32, gradient checkpointing on" in line for line in job["logs"])


def test_twin_without_gradient_checkpointing_trains(twin):
    _, results, _ = twin
    job = results["jobs"]["tiny-lora-no-checkpointing"]
    assert job["stages"]["sft"]["status"] == "ok" and job["stages"]["sft"]["steps"] == 4
    assert any("gradient checkpointing off" in line for line in job["logs"])


def test_twin_plain_trl_baseline_does_the_same_work(twin):
    _, results, _ = twin
    ours, plain = results["jobs"]["tiny-lora"]["stages"], results["jobs"]["tiny-lora-plain"]["stages"]
    for stage in ("sft", "dpo", "grpo", "rlhf"):
        assert plain[stage]["status"] == "ok"
        assert plain[stage]["steps"] == ours[stage]["steps"], stage
    names = [t["name"] for t in results["targets"]]
    assert any("posttrain / plain TRL" in n for n in names)


def test_twin_memory_estimate_within_band(twin):
    _, results, _ = twin
    ratios = {s: r["estimate_ratio"] for s, r in results["jobs"]["tiny-lora"]["stages"].items()}
    for stage, ratio in ratios.items():
        assert BAND[0] <= ratio <= BAND[1], (stage, ratio, results["jobs"]["tiny-lora"]["stages"][stage])


# --------------------------------------------------------------------------------------------
# prepare.py on local wheels (no index): what a host lacks, and the slim bitsandbytes.

def make_wheel(folder: Path, name: str, version: str, requires: list[str] = (), files: dict[str, bytes] | None = None) -> Path:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    entries = {f"{name.replace('-', '_')}/__init__.py": b"", **(files or {}),
               f"{dist}/METADATA": ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n%s" % (
                   name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))).encode()}
    with zipfile.ZipFile(path, "w") as z:
        record = []
        for n, data in entries.items():
            z.writestr(n, data)
            record.append(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}")
        z.writestr(f"{dist}/RECORD", "\n".join(record) + f"\n{dist}/RECORD,,\n")
    return path


def test_resolve_brings_only_what_the_host_lacks(tmp_path, monkeypatch):
    index = {  # a fake index: name -> (version, requires)
        "trl": ("1.13.0", ["accelerate>=1.4", "datasets>=4.7", "transformers>=4.56"]),
        "datasets": ("5.2.0", ["dill<0.4.2,>=0.3", "numpy>=1.17", "pandas", "multiprocess<0.70.20"]),
        "dill": ("0.4.1", []),
        "multiprocess": ("0.70.19", ["dill>=0.4.1"]),
        "pandas": ("3.1.1", ["numpy>=1.26", "tzdata; sys_platform == 'win32'"]),
        "pyzmq": ("27.3.0", ["cffi; implementation_name == 'pypy'"]),
        "transformers": ("5.18.0", ["numpy"]),
        "numpy": ("2.5.2", []),
    }
    cache = tmp_path / "cache"
    cache.mkdir()

    def fake_download(req: str, dest: Path) -> Path:
        from packaging.requirements import Requirement

        r = Requirement(req)
        version, requires = index[r.name]
        assert r.specifier.contains(version), req
        return make_wheel(dest, r.name, version, requires)

    monkeypatch.setattr(prepare, "download", fake_download)
    monkeypatch.setattr(prepare, "wanted", lambda: ["trl", "pyzmq>=26", "transformers>=5,<6"])
    monkeypatch.setattr(prepare, "pins", lambda: {})
    host = {"accelerate": None, "numpy": prepare.Version("2.5.2"), "transformers": prepare.Version("5.17.0")}
    bring, notes = prepare.resolve(host, cache)
    # transformers 5.17 satisfies >=5,<6 (no pin forces 5.18 on the host); markers for win32/pypy are off.
    assert sorted(bring) == ["datasets", "dill", "multiprocess", "pandas", "pyzmq", "trl"]
    assert notes == []
    host["numpy"] = prepare.Version("1.20")  # too old for pandas: brought, and said
    bring, notes = prepare.resolve(host, cache)
    assert "numpy" in bring and any(n.startswith("host has numpy 1.20") for n in notes)


def test_slim_bitsandbytes_keeps_one_cuda_major(tmp_path):
    libs = {f"bitsandbytes/libbitsandbytes_{v}.so": b"x" * 100 for v in ("cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm72")}
    src = make_wheel(tmp_path, "bitsandbytes", "0.50.2", ["torch>=2.4"], libs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    slim = prepare.slim_bitsandbytes(src, out_dir, "13")
    with zipfile.ZipFile(slim) as z:
        names = z.namelist()
        record = z.read(next(n for n in names if n.endswith("RECORD"))).decode()
    kept = sorted(n.split("_", 1)[1] for n in names if n.endswith(".so"))
    assert kept == ["cpu.so", "cuda130.so", "cuda132.so"]
    assert "cuda128" not in record and "cuda130" in record
    with pytest.raises(SystemExit, match="no libbitsandbytes_cuda10x"):
        prepare.slim_bitsandbytes(src, out_dir, "10")  # a host whose CUDA the wheel has no library for
