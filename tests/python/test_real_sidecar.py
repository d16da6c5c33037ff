"""The real entry point (`python -m posttrain_sidecar`) speaks the protocol; trainers are not there yet."""
from __future__ import annotations

import pytest

from posttrain_sidecar import __main__ as real


def test_real_sidecar_hello_and_not_implemented(controller, tmp_path):
    proc = controller.spawn(None, module="posttrain_sidecar")
    hello = controller.expect("hello", timeout=10)
    assert hello["_t"] - proc.started < 5.0
    body = hello["body"]
    assert body["protocol"] == "1.0" and body["fake"] is False and body["pid"] == proc.pid
    assert body["capabilities"] == sorted(real.STAGE_HANDLERS)
    assert "torch" in body["versions"] and "trl" in body["versions"]
    controller.send("hello.ack", {"heartbeat_interval_s": 0.2})

    req = controller.request("sft", tmp_path / "s")
    _, result = controller.run_until_result()
    assert result["re"] == req
    err = result["body"]["error"]
    assert result["body"]["status"] == "error" and result["body"]["stage"] == "sft"
    assert err["code"] == "not_implemented" and err["retryable"] is False
    assert "sft" in err["message"] and "Traceback" in err["traceback"]

    controller.request("distill", tmp_path / "x")
    _, result = controller.run_until_result()
    assert result["body"]["error"]["code"] == "unknown_stage"

    controller.send("shutdown")
    assert proc.wait(timeout=5) == 0
    assert proc.stderr().count("Traceback") == 0  # in-band errors are not crash noise


def test_real_sidecar_bad_env_exits_2(controller):
    proc = controller.spawn(None, module="posttrain_sidecar", POSTTRAIN_KEY="")
    assert proc.wait(timeout=10) == 2
    assert "POSTTRAIN_KEY" in proc.stderr()


def test_registry_dispatch_in_process():
    with pytest.raises(real.StageError) as exc:
        real.handle({"stage": "grpo"}, None)
    assert exc.value.code == "not_implemented"
    real.STAGE_HANDLERS["grpo"] = lambda req, conn: ("ok", {"stage": req["stage"]})
    try:
        assert real.handle({"stage": "grpo"}, None) == ("ok", {"stage": "grpo"})
    finally:
        del real.STAGE_HANDLERS["grpo"]
