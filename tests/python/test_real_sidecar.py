"""The real entry point (`python -m posttrain_sidecar`) speaks the protocol and answers in-band errors."""
from __future__ import annotations

import pytest

from posttrain_sidecar import __main__ as real
from posttrain_sidecar.catalogue import STAGE_NAMES


def test_real_sidecar_hello_and_in_band_errors(controller, tmp_path):
    proc = controller.spawn(None, module="posttrain_sidecar")
    hello = controller.expect("hello", timeout=10)
    assert hello["_t"] - proc.started < 5.0
    body = hello["body"]
    assert body["protocol"] == "1.1" and body["fake"] is False and body["pid"] == proc.pid
    assert body["capabilities"] == sorted(real.STAGE_HANDLERS)
    assert "torch" in body["versions"] and "trl" in body["versions"]
    controller.send("hello.ack", {"heartbeat_interval_s": 0.2})

    # A request the trainer cannot serve (no config) is an in-band error, not a crash.
    req = controller.request("sft", tmp_path / "s")
    _, result = controller.run_until_result()
    assert result["re"] == req
    err = result["body"]["error"]
    assert result["body"]["status"] == "error" and result["body"]["stage"] == "sft"
    assert err["code"] and err["retryable"] is False and "Traceback" in err["traceback"]

    controller.request("distill", tmp_path / "x")
    _, result = controller.run_until_result()
    assert result["body"]["error"]["code"] == "unknown_stage"

    controller.send("shutdown")
    assert proc.wait(timeout=5) == 0
    # An unexpected exception is answered in-band and logged; the sidecar lives on to serve more.
    assert "KeyError" in proc.stderr()


def test_real_sidecar_bad_env_exits_2(controller):
    proc = controller.spawn(None, module="posttrain_sidecar", POSTTRAIN_KEY="")
    assert proc.wait(timeout=10) == 2
    assert "POSTTRAIN_KEY" in proc.stderr()


def test_registry_dispatch_in_process():
    assert list(real.STAGE_HANDLERS) == list(STAGE_NAMES)
    with pytest.raises(real.StageError) as exc:
        real.handle({"stage": "distill"}, None)
    assert exc.value.code == "unknown_stage"
    saved = real.STAGE_HANDLERS["grpo"]
    real.STAGE_HANDLERS["grpo"] = lambda req, conn: ("ok", {"stage": req["stage"]})
    try:
        assert real.handle({"stage": "grpo"}, None) == ("ok", {"stage": "grpo"})
    finally:
        real.STAGE_HANDLERS["grpo"] = saved
