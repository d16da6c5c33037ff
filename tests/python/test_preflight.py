"""Preflight: what the sidecar checks before the first stage, without loading model weights."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from posttrain_sidecar import preflight as pf
from posttrain_sidecar.connection import normalise_problem

ROOT = Path(__file__).resolve().parents[2]
SMOKE_MODEL = ROOT / "data" / "smoke-model"
KNOWN = ("sft", "dpo", "grpo", "rlhf")


def codes(problems):
    return [(p["stage"], p["code"], p["severity"]) for p in problems]


def no_cuda_probe():
    raise AssertionError("torch must not be imported for this config")


# --------------------------------------------------------------------------------------------
# stages


def test_unknown_stages_are_errors_known_are_not():
    assert pf.check_stages(["sft", "grpo"], KNOWN) == []
    (p,) = pf.check_stages(["sft", "ppo"], KNOWN)
    assert p["stage"] == "ppo" and p["code"] == "unknown_stage" and "dpo, grpo, rlhf, sft" in p["message"]


# --------------------------------------------------------------------------------------------
# reward functions


def grpo_config(*specs):
    return {"stages": {"grpo": {"reward_funcs": list(specs)}}}


def test_builtin_rewards_resolve():
    cfg = grpo_config({"name": "format"}, {"name": "exact_answer"}, {"name": "length", "args": {"target": 8}})
    assert pf.check_rewards(cfg, ["grpo"]) == []


def test_every_bad_reward_function_is_reported_with_its_index():
    cfg = grpo_config({"name": "format"}, {"name": "nope_module:fn"}, {"name": "length", "args": {}}, {"name": "bare"})
    problems = pf.check_rewards(cfg, ["grpo"])
    assert codes(problems) == [("grpo", "reward_import_failed", "error"), ("grpo", "bad_reward_args", "error"),
                               ("grpo", "reward_import_failed", "error")]
    assert problems[0]["message"].startswith("stages.grpo.reward_funcs.1: ") and "nope_module" in problems[0]["message"]
    assert problems[1]["message"].startswith("stages.grpo.reward_funcs.2: ")
    assert all(p["fix"] for p in problems)


def test_reward_functions_only_for_a_selected_grpo_stage():
    cfg = grpo_config({"name": "nope_module:fn"})
    assert pf.check_rewards(cfg, ["sft", "dpo", "rlhf"]) == []


def test_user_reward_module_imports_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_pf.py").write_text("def score(prompts, completions, **kw):\n    return [1.0] * len(completions)\n")
    (tmp_path / "broken_rewards_pf.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    assert pf.check_rewards(grpo_config({"name": "my_rewards_pf:score"}), ["grpo"]) == []
    (p,) = pf.check_rewards(grpo_config({"name": "my_rewards_pf:missing"}), ["grpo"])
    assert p["code"] == "reward_import_failed" and "has no attribute" in p["message"]
    (p,) = pf.check_rewards(grpo_config({"name": "broken_rewards_pf:score"}), ["grpo"])
    assert p["code"] == "reward_import_failed" and "boom at import" in p["message"]


# --------------------------------------------------------------------------------------------
# runtime: device, vLLM, bitsandbytes


def runtime_config(device="auto", use_4bit=False, mode="auto", grpo_vllm=False, rlhf_vllm=False):
    return {
        "runtime": {"device": device},
        "model": {"use_4bit": use_4bit, "adapter": {"mode": mode}},
        "stages": {"grpo": {"use_vllm": grpo_vllm}, "rlhf": {"policy": {"use_vllm": rlhf_vllm}}},
    }


def test_plain_config_needs_no_torch():
    assert pf.check_runtime(runtime_config(), KNOWN, cuda=no_cuda_probe) == []
    assert pf.check_runtime(runtime_config("cpu"), KNOWN, cuda=no_cuda_probe) == []


def test_cuda_device_without_cuda_is_an_error():
    problems = pf.check_runtime(runtime_config("cuda"), ["sft"], cuda=lambda: False)
    assert codes(problems) == [(None, "device_unavailable", "error")]
    assert pf.check_runtime(runtime_config("cuda"), ["sft"], cuda=lambda: True) == []


def test_vllm_needs_cuda_and_vllm_for_selected_stages_only():
    cfg = runtime_config(grpo_vllm=True, rlhf_vllm=True)
    assert codes(pf.check_runtime(cfg, ["grpo", "rlhf"], cuda=lambda: False)) == [
        ("grpo", "vllm_unavailable", "error"), ("rlhf", "vllm_unavailable", "error")]
    missing = pf.check_runtime(cfg, ["grpo"], cuda=lambda: True, module=lambda name: False)
    assert codes(missing) == [("grpo", "vllm_unavailable", "error")] and "not installed" in missing[0]["message"]
    assert pf.check_runtime(cfg, ["grpo", "rlhf"], cuda=lambda: True, module=lambda name: True) == []
    assert pf.check_runtime(cfg, ["sft", "dpo"], cuda=no_cuda_probe) == []
    # device cpu on a CUDA machine: vLLM still has no GPU to use (and torch is not even asked).
    assert codes(pf.check_runtime(runtime_config("cpu", grpo_vllm=True), ["grpo"], cuda=no_cuda_probe)) == [
        ("grpo", "vllm_unavailable", "error")]


def test_4bit_without_cuda_or_bitsandbytes_is_a_warning():
    for cfg in (runtime_config(use_4bit=True), runtime_config(mode="qlora", use_4bit=True)):
        assert codes(pf.check_runtime(cfg, ["sft"], cuda=lambda: False)) == [(None, "qlora_unavailable", "warning")]
        no_bnb = pf.check_runtime(cfg, ["sft"], cuda=lambda: True, module=lambda name: name != "bitsandbytes")
        assert codes(no_bnb) == [(None, "qlora_unavailable", "warning")] and "bitsandbytes" in no_bnb[0]["message"]
        assert pf.check_runtime(cfg, ["sft"], cuda=lambda: True, module=lambda name: True) == []


# --------------------------------------------------------------------------------------------
# model config and tokenizer


def model_copy(tmp_path: Path, without=()) -> Path:
    dst = tmp_path / "model"
    dst.mkdir()
    for f in SMOKE_MODEL.iterdir():
        if f.name not in without:
            shutil.copy(f, dst / f.name)
    return dst


def test_the_smoke_model_passes():
    assert pf.check_model({"model": {"id": str(SMOKE_MODEL)}}) == []


def test_missing_model_folder(tmp_path):
    (p,) = pf.check_model({"model": {"id": str(tmp_path / "nothing")}})
    assert p["code"] == "model_not_found" and p["severity"] == "error" and p["stage"] is None


def test_model_folder_without_tokenizer(tmp_path):
    model = model_copy(tmp_path, without=("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"))
    problems = pf.check_model({"model": {"id": str(model)}})
    assert codes(problems) == [(None, "tokenizer_failed", "error")]
    assert "save_pretrained" in problems[0]["fix"]


def test_model_folder_with_a_broken_config(tmp_path):
    model = model_copy(tmp_path)
    (model / "config.json").write_text("{\"model_type\": \"no-such-architecture\"}")
    problems = pf.check_model({"model": {"id": str(model)}})
    assert (None, "model_config_failed", "error") in codes(problems)


def test_hub_model_not_in_the_cache_is_a_note_without_network(monkeypatch):
    monkeypatch.setattr(pf, "hub_cached", lambda model_id, revision: False)
    (p,) = pf.check_model({"model": {"id": "some-org/some-model"}})
    assert p["code"] == "model_not_cached" and p["severity"] == "info"


def test_hub_cache_lookup_does_not_raise_for_odd_ids():
    assert pf.hub_cached("definitely-not/a-cached-model-xyz", None) is False
    assert pf.hub_cached("not a valid id!!", None) is False


def test_check_combines_everything():
    body = {"config": {**runtime_config(), "model": {"id": str(SMOKE_MODEL), "adapter": {"mode": "lora"}},
                       "stages": {"grpo": {"reward_funcs": [{"name": "nope_module:fn"}]}}},
            "stages": ["grpo", "ppo"]}
    assert codes(pf.check(body, KNOWN)) == [("ppo", "unknown_stage", "error"), ("grpo", "reward_import_failed", "error")]


def test_normalise_problem_fills_defaults():
    assert normalise_problem({"code": "x", "message": "m"}) == {
        "stage": None, "code": "x", "message": "m", "severity": "error", "fix": None}
    assert normalise_problem({"stage": "sft", "code": "x", "message": "m", "severity": "bogus", "fix": 3})["severity"] == "error"
    assert normalise_problem("text")["message"] == "text"


# --------------------------------------------------------------------------------------------
# over the wire


def test_fake_sidecar_answers_preflight_with_its_script(controller):
    problems = [{"stage": "dpo", "code": "scripted", "message": "m", "fix": "f"},
                {"stage": None, "code": "note", "message": "n", "severity": "warning"}]
    controller.spawn({"preflight_problems": problems})
    controller.handshake()
    req = controller.send("preflight", {"config": {"model": {"id": "x"}}, "stages": ["sft"]})
    res = controller.expect("preflight.result")
    assert res["re"] == req
    assert res["body"]["ok"] is False
    assert res["body"]["problems"] == [
        {"stage": "dpo", "code": "scripted", "message": "m", "severity": "error", "fix": "f"},
        {"stage": None, "code": "note", "message": "n", "severity": "warning", "fix": None}]
    # Malformed requests are answered, not crashed on; the sidecar keeps serving.
    req = controller.send("preflight", {"config": "nope", "stages": ["sft"]})
    res = controller.expect("preflight.result")
    assert res["re"] == req and res["body"]["ok"] is False and res["body"]["problems"][0]["code"] == "bad_request"
    req = controller.send("preflight", {"config": {}, "stages": "sft"})
    assert controller.expect("preflight.result")["body"]["problems"][0]["code"] == "bad_request"


def test_fake_sidecar_without_script_answers_ok(controller):
    controller.spawn({})
    controller.handshake()
    controller.send("preflight", {"config": {}, "stages": ["sft"]})
    assert controller.expect("preflight.result")["body"] == {"ok": True, "problems": []}


def test_real_sidecar_preflight_then_serves(controller, tmp_path):
    proc = controller.spawn(None, module="posttrain_sidecar")
    controller.handshake(timeout=10)
    config = {**runtime_config("cpu"), "model": {"id": str(SMOKE_MODEL), "adapter": {"mode": "lora"}},
              "stages": {"grpo": {"reward_funcs": [{"name": "format"}, {"name": "nope_module:fn"}]}}}
    req = controller.send("preflight", {"config": config, "stages": ["sft", "grpo"]})
    res = controller.expect("preflight.result", timeout=60)
    assert res["re"] == req and res["body"]["ok"] is False
    assert codes(res["body"]["problems"]) == [("grpo", "reward_import_failed", "error")]
    config["stages"]["grpo"]["reward_funcs"] = [{"name": "format"}]
    controller.send("preflight", {"config": config, "stages": ["sft", "grpo"]})
    assert controller.expect("preflight.result", timeout=60)["body"] == {"ok": True, "problems": []}
    controller.send("shutdown")
    assert proc.wait(timeout=10) == 0


# --------------------------------------------------------------------------------------------
# runtime.report_to integrations


def report_to(*names):
    return {"runtime": {"report_to": list(names)}}


def test_missing_integration_is_an_error_with_the_install_command():
    installed = {"tensorboard"}
    problems = pf.check_integrations(report_to("tensorboard", "trackio"), module=lambda m: m in installed,
                                     env={}, python="/venv/bin/python")
    assert codes(problems) == [(None, "integration_missing", "error")]
    assert "'trackio'" in problems[0]["message"]
    assert problems[0]["fix"].startswith("/venv/bin/python -m pip install trackio")


def test_no_report_to_checks_nothing():
    assert pf.check_integrations({"runtime": {"report_to": []}}, module=lambda m: False, env={}) == []
    assert pf.check_integrations({}, module=lambda m: False, env={}) == []


def test_real_environment_reports_trackio_missing_through_check():
    # The real probe, the real venv: tensorboard is a dev dependency, trackio is not installed.
    if pf.has_module("trackio"):
        pytest.skip("trackio is installed here")
    problems = pf.check({"config": {**report_to("tensorboard", "trackio"), "model": {"id": str(SMOKE_MODEL)}}, "stages": ["sft"]}, KNOWN)
    assert codes(problems) == [(None, "integration_missing", "error")]
    assert "pip install trackio" in problems[0]["fix"]


def test_wandb_online_without_credentials_warns_offline_does_not(tmp_path):
    has_wandb = lambda m: m == "wandb"
    no_netrc = {"NETRC": str(tmp_path / "none")}
    (p,) = pf.check_integrations(report_to("wandb"), module=has_wandb, env=no_netrc)
    assert (p["code"], p["severity"]) == ("wandb_not_logged_in", "warning") and "WANDB_MODE=offline" in p["fix"]
    assert pf.check_integrations(report_to("wandb"), module=has_wandb, env={**no_netrc, "WANDB_MODE": "offline"}) == []
    assert pf.check_integrations(report_to("wandb"), module=has_wandb, env={**no_netrc, "WANDB_API_KEY": "k"}) == []
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert pf.check_integrations(report_to("wandb"), module=has_wandb, env={"NETRC": str(netrc)}) == []


def test_model_with_its_own_code_names_trust_remote_code_whole(tmp_path):
    """A model folder whose config.json maps to its own code: one whole message naming the key,
    not transformers' long text cut mid-sentence with an unrelated fix."""
    import json
    import shutil

    from posttrain_sidecar import preflight
    from stage_helpers import ROOT, smoke_config

    model = tmp_path / "custom"
    shutil.copytree(ROOT / "data" / "smoke-model", model)
    cfg_file = model / "config.json"
    mc = json.loads(cfg_file.read_text())
    mc.update(model_type="mycustom", auto_map={"AutoConfig": "configuration_my.MyConfig"})
    cfg_file.write_text(json.dumps(mc))
    (model / "configuration_my.py").write_text("class MyConfig: pass\n")
    cfg = smoke_config()
    cfg["model"]["id"] = str(model)
    problems = preflight.check_model(cfg)
    assert [p["code"] for p in problems] == ["trust_remote_code_required"]
    p = problems[0]
    assert p["message"].endswith("which posttrain does only when model.trust_remote_code is true")
    assert "…" not in p["message"] and "model.trust_remote_code true" in p["fix"]


def test_reward_module_from_the_working_folder_never_shadows_an_installed_library(tmp_path, monkeypatch):
    """The named module comes from the working folder; its helpers too; a ``json.py`` or
    ``fractions.py`` there is not what ``import fractions`` gets while it imports."""
    import sys

    (tmp_path / "fractions.py").write_text("raise ImportError('the working folder shadowed fractions')\n")
    (tmp_path / "reward_helper_pf.py").write_text("BONUS = 0.5\n")
    (tmp_path / "shadow_rewards_pf.py").write_text(
        "import fractions\nfrom reward_helper_pf import BONUS\n"
        "def score(prompts, completions, **kw):\n    return [float(fractions.Fraction(1, 2)) + BONUS] * len(completions)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "fractions", raising=False)
    before = list(sys.path)
    from posttrain_sidecar.rewards import import_reward

    fn = import_reward("shadow_rewards_pf:score")
    assert fn([None], ["x"]) == [1.0]
    assert sys.modules["fractions"].__file__ != str(tmp_path / "fractions.py")
    assert sys.path == before  # the working folder was on the path only during the import
