"""Device and adapter-mode decisions, as far as a CPU machine can check them: the GPU preset's
choices fall back loudly (never silently) and impossible requests are typed errors."""
from __future__ import annotations

import pytest

from posttrain_sidecar.connection import StageError
from posttrain_sidecar.modeling import lora_config, resolve_runtime
from recorder import Recorder
from stage_helpers import smoke_config


def gpu_like(device="auto", mode="qlora", use_4bit=True, dtype="bfloat16"):
    cfg = smoke_config()
    cfg["runtime"]["device"] = device
    cfg["model"].update(use_4bit=use_4bit, dtype=dtype)
    cfg["model"]["adapter"]["mode"] = mode
    return cfg


def test_qlora_on_a_cpu_machine_falls_back_to_lora_and_says_so():
    rec = Recorder()
    rt = resolve_runtime(gpu_like(), rec, "sft")
    assert (rt.device, rt.mode) == ("cpu", "lora")
    warnings = [m for level, m in rec.logs if level == "warning"]
    assert len(warnings) == 1 and "QLoRA" in warnings[0] and "CUDA" in warnings[0]
    assert any("adapter lora" in m for _, m in rec.logs)


def test_auto_mode_without_4bit_is_plain_lora_without_a_warning():
    rec = Recorder()
    rt = resolve_runtime(gpu_like(mode="auto", use_4bit=False, dtype="auto"), rec, "sft")
    assert rt.mode == "lora"
    assert str(rt.dtype) == "torch.float32"  # auto on CPU
    assert not [m for level, m in rec.logs if level == "warning"]


def test_cuda_requested_without_cuda_is_a_typed_error():
    with pytest.raises(StageError) as e:
        resolve_runtime(gpu_like(device="cuda"), Recorder(), "sft")
    assert e.value.code == "device_unavailable"
    assert "runtime.device" in str(e.value)


def test_lora_config_follows_the_model_section():
    cfg = smoke_config()
    cfg["model"]["adapter"].update(r=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj"])
    lc = lora_config(cfg, task_type="SEQ_CLS")
    assert (lc.r, lc.lora_alpha, lc.lora_dropout) == (4, 8, 0.1)
    assert set(lc.target_modules) == {"q_proj", "v_proj"}
    assert str(lc.task_type).endswith("SEQ_CLS")
