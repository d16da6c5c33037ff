"""The fake sidecar over real sockets: the behaviour the controller's tests will rely on."""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import subprocess
import time
from pathlib import Path

import msgpack
import pytest

from conftest import metrics_of
from posttrain_sidecar.catalogue import STAGE_NAMES
from posttrain_sidecar.checkpoints import COMPLETE_MARKER
from posttrain_sidecar.fake import metric_values, parse_step_values, scripted_values
from posttrain_sidecar.protocol import encode, make_envelope


def test_hello_is_fast_and_complete(controller):
    proc = controller.spawn({})
    hello = controller.expect("hello", timeout=5)
    elapsed = hello["_t"] - proc.started
    assert elapsed < 2.0, f"hello took {elapsed:.2f} s"
    body = hello["body"]
    assert hello["v"] == 1 and hello["session"] == controller.session and hello["re"] is None
    assert body["protocol"] == "1.1"
    assert body["pid"] == proc.pid
    assert body["fake"] is True
    assert body["capabilities"] == list(STAGE_NAMES)  # every stage of the catalogue
    assert body["versions"]["python"] and body["versions"]["posttrain_sidecar"]
    assert body["device"]["probe"] is True and body["device"]["type"] in ("cuda", "cpu")
    # independent check of the wire: raw HMAC over the raw msgpack payload
    controller.send("hello.ack", {"heartbeat_interval_s": 0.1})
    assert controller.router.poll(3000)
    ident, sig, payload = controller.router.recv_multipart()
    assert hmac.compare_digest(sig, hmac.new(controller.key, payload, hashlib.sha256).digest())
    assert msgpack.unpackb(payload, raw=False)["type"] == "heartbeat"


def test_full_stage_streams_metrics_then_ok(controller, tmp_path):
    controller.spawn({"stages": {"*": {"steps": 6, "save_every": 3, "step_time_s": 0.005}}})
    controller.handshake()
    stage_dir = tmp_path / "runs" / "r1" / "stages" / "sft"
    req = controller.request("sft", stage_dir, config={"model": {"id": "tiny/model"}})
    events, result = controller.run_until_result()

    metrics = metrics_of(events)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert all(m["stage"] == "sft" for m in metrics)
    assert metrics[2]["values"] == {"train/loss": 0.25, "train/learning_rate": 1e-3, "train/epoch": 0.5}
    ckpts = metrics_of(events, "event.checkpoint")
    assert [(c["step"], Path(c["path"]).name) for c in ckpts] == [(3, "checkpoint-3"), (6, "checkpoint-6")]
    states = [b["state"] for b in metrics_of(events, "event.state")]
    assert states[:2] == ["loading_model", "training"] and "saving" in states
    logs = metrics_of(events, "event.log")
    assert logs and logs[0]["level"] == "info" and logs[0]["stage"] == "sft"

    assert result["re"] == req
    body = result["body"]
    assert body["status"] == "ok" and body["stage"] == "sft"
    summary = body["summary"]
    assert summary["steps"] == 6 and summary["resumed_from"] is None and summary["init_adapter"] is None
    assert summary["final"] == metric_values(6, 6)
    assert summary["runtime_s"] >= 0
    adapter = Path(summary["adapter"])
    assert adapter == stage_dir / "adapter"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "tiny/model"
    assert cfg["posttrain"] == {"stage": "sft", "init_adapter": None, "fake": True, "trained_with": None}  # no stages section in this request
    assert (adapter / "adapter_model.safetensors").stat().st_size > 8
    for step in (3, 6):
        ck = stage_dir / "checkpoints" / f"checkpoint-{step}"
        assert json.loads((ck / "trainer_state.json").read_text())["global_step"] == step
        assert (ck / "adapter_model.safetensors").is_file()
        assert json.loads((ck / COMPLETE_MARKER).read_text())["complete"] is True

    # the same process serves the next stage, chained from the first adapter
    controller.request("dpo", tmp_path / "dpo", init_adapter=str(adapter))
    _, result2 = controller.run_until_result()
    assert result2["body"]["status"] == "ok"
    assert result2["body"]["summary"]["init_adapter"] == str(adapter)
    cfg2 = json.loads((tmp_path / "dpo" / "adapter" / "adapter_config.json").read_text())
    assert cfg2["posttrain"]["init_adapter"] == str(adapter)


def test_metrics_per_step(controller, tmp_path):
    controller.spawn({"stages": {"sft": {"steps": 3, "metrics_per_step": 3, "step_time_s": 0}}})
    controller.handshake()
    controller.request("sft", tmp_path / "s")
    events, result = controller.run_until_result()
    assert [m["step"] for m in metrics_of(events)] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert result["body"]["status"] == "ok"


def test_scripted_values_at_and_from_a_step():
    at = parse_step_values({"3": {"train/loss": "nan"}, "7": {"train/kl": 2}}, "values")
    start = parse_step_values({"4": {"train/kl": 0.5, "x": 1}, "6": {"train/kl": "inf"}}, "values_from")
    assert scripted_values(2, at, start) == {}
    assert math.isnan(scripted_values(3, at, start)["train/loss"])
    assert scripted_values(5, at, start) == {"train/kl": 0.5, "x": 1.0}
    assert scripted_values(6, at, start) == {"train/kl": math.inf, "x": 1.0}   # a later start overrides
    assert scripted_values(7, at, start) == {"train/kl": 2.0, "x": 1.0}        # values wins over values_from
    assert scripted_values(8, at, start)["train/kl"] == math.inf
    assert parse_step_values({"1": {"l": "-inf"}}, "v") == {1: {"l": -math.inf}}


@pytest.mark.parametrize("raw, msg", [
    ([1], "must be an object"),
    ({"three": {}}, "'three' is not a step number"),
    ({"3": 1.0}, "values.3 must be an object"),
    ({"3": {"train/loss": "lots"}}, "values.3.train/loss: 'lots' is not a number"),
    ({"3": {"train/loss": True}}, "expected a number"),
])
def test_scripted_values_are_checked(raw, msg):
    with pytest.raises(ValueError, match=msg):
        parse_step_values(raw, "values")


def test_scripted_nan_crosses_the_wire_as_a_float(controller, tmp_path):
    controller.spawn({"stages": {"sft": {"steps": 4, "step_time_s": 0, "values": {"2": {"train/loss": "nan"}},
                                         "values_from": {"3": {"completions/clipped_ratio": 1}}}}})
    controller.handshake()
    controller.request("sft", tmp_path / "s")
    events, result = controller.run_until_result()
    assert result["body"]["status"] == "ok"
    vals = {m["step"]: m["values"] for m in metrics_of(events)}
    assert vals[1] == metric_values(1, 4)
    assert math.isnan(vals[2]["train/loss"]) and vals[2]["train/epoch"] == 0.5
    assert vals[3]["completions/clipped_ratio"] == 1.0 and vals[4]["completions/clipped_ratio"] == 1.0
    assert "completions/clipped_ratio" not in vals[2]


def test_bad_scripted_values_fail_the_stage_in_band(controller, tmp_path):
    controller.spawn({"stages": {"sft": {"values": {"x": {}}}}})
    controller.handshake()
    controller.request("sft", tmp_path / "s")
    _, result = controller.run_until_result()
    assert result["body"]["status"] == "error"
    assert result["body"]["error"]["code"] == "bad_fake_script"


def test_heartbeats_during_slow_stage(controller, tmp_path):
    controller.spawn({"stages": {"*": {"steps": 4, "step_time_s": 0.25}}})
    controller.handshake(heartbeat_interval_s=0.1)
    controller.request("sft", tmp_path / "s")
    events, result = controller.run_until_result(timeout=10)
    assert result["body"]["status"] == "ok"
    beats = [m["_t"] for m in events if m["type"] == "heartbeat"]
    assert len(beats) >= 6, f"only {len(beats)} heartbeats in a ~1 s stage"
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert max(gaps) < 0.5


def test_cancel_mid_stage_saves_checkpoint(controller, tmp_path):
    controller.spawn({"stages": {"sft": {"steps": 50, "step_time_s": 0.02, "save_every": 100},
                                 "dpo": {"steps": 2, "step_time_s": 0}}})
    controller.handshake()
    stage_dir = tmp_path / "s"
    req = controller.request("sft", stage_dir)
    events: list = []
    while True:
        m = controller.expect("event.metric", collect=events)
        if m["body"]["step"] >= 3:
            break
    controller.send("cancel")
    more, result = controller.run_until_result()
    body = result["body"]
    assert result["re"] == req and body["status"] == "cancelled"
    step = body["summary"]["steps"]
    assert 3 <= step < 50
    ckpt = Path(body["summary"]["checkpoint"])
    assert ckpt.name == f"checkpoint-{step}"
    assert (ckpt / COMPLETE_MARKER).is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == step
    assert metrics_of(more, "event.checkpoint")[-1] == {"stage": "sft", "path": str(ckpt), "step": step}
    assert not (stage_dir / "adapter").exists()
    # the cancel does not leak into the next stage
    controller.request("dpo", tmp_path / "d")
    _, result2 = controller.run_until_result()
    assert result2["body"]["status"] == "ok"


def test_ignore_cancel(controller, tmp_path):
    controller.spawn({"ignore_cancel": True, "stages": {"*": {"steps": 8, "step_time_s": 0.02}}})
    controller.handshake()
    controller.request("sft", tmp_path / "s")
    controller.expect("event.metric")
    controller.send("cancel")
    _, result = controller.run_until_result()
    assert result["body"]["status"] == "ok" and result["body"]["summary"]["steps"] == 8


def test_resume_continues_with_identical_metrics(controller, tmp_path):
    script = {"stages": {"*": {"steps": 10, "step_time_s": 0.02, "save_every": 4}}}
    controller.spawn(script)
    controller.handshake()

    controller.request("sft", tmp_path / "full")
    events, result = controller.run_until_result()
    full = {m["step"]: m["values"] for m in metrics_of(events)}
    assert sorted(full) == list(range(1, 11))

    # interrupted run: cancel after step 3 arrives
    controller.request("sft", tmp_path / "cut")
    while controller.expect("event.metric")["body"]["step"] < 3:
        pass
    controller.send("cancel")
    _, cut = controller.run_until_result()
    assert cut["body"]["status"] == "cancelled"
    k = cut["body"]["summary"]["steps"]
    ckpt = cut["body"]["summary"]["checkpoint"]

    controller.request("sft", tmp_path / "cut", resume_from=ckpt)
    events, resumed = controller.run_until_result()
    steps = [m["step"] for m in metrics_of(events)]
    assert steps == list(range(k + 1, 11))
    for m in metrics_of(events):
        assert m["values"] == full[m["step"]]
    summary = resumed["body"]["summary"]
    assert resumed["body"]["status"] == "ok"
    assert summary["resumed_from"] == ckpt and summary["start_step"] == k and summary["steps"] == 10
    assert summary["final"] == full[10]

    # resuming from a periodic checkpoint of the full run
    controller.request("sft", tmp_path / "full", resume_from=str(tmp_path / "full" / "checkpoints" / "checkpoint-4"))
    events, _ = controller.run_until_result()
    assert [m["step"] for m in metrics_of(events)] == list(range(5, 11))


def test_resume_from_incomplete_checkpoint_is_refused(controller, tmp_path):
    bad = tmp_path / "s" / "checkpoints" / "checkpoint-2"
    bad.mkdir(parents=True)
    (bad / "trainer_state.json").write_text('{"global_step": 2}')
    controller.spawn({})
    controller.handshake()
    controller.request("sft", tmp_path / "s", resume_from=str(bad))
    _, result = controller.run_until_result()
    assert result["body"]["status"] == "error"
    assert result["body"]["error"]["code"] == "bad_checkpoint"


def test_in_band_error(controller, tmp_path):
    controller.spawn({"stages": {"dpo": {"error": {"code": "oom", "message": "out of memory", "retryable": True}}}})
    controller.handshake()
    req = controller.request("dpo", tmp_path / "d")
    _, result = controller.run_until_result()
    err = result["body"]["error"]
    assert result["re"] == req and result["body"]["status"] == "error"
    assert err["code"] == "oom" and err["message"] == "out of memory" and err["retryable"] is True
    assert "StageError" in err["traceback"]
    # other stages still work ("*" defaults)
    controller.request("sft", tmp_path / "s")
    _, ok = controller.run_until_result()
    assert ok["body"]["status"] == "ok"


def test_bad_request_answered_in_band(controller, tmp_path):
    controller.spawn({})
    controller.handshake()
    req = controller.send("stage.request", {"stage": "sft", "config": "nope", "stage_dir": str(tmp_path)})
    _, result = controller.run_until_result()
    assert result["re"] == req and result["body"]["error"]["code"] == "bad_request"


def test_crash_at_step(controller, tmp_path):
    proc = controller.spawn({"stages": {"*": {"steps": 10, "crash_at_step": 4, "step_time_s": 0.01}}})
    controller.handshake()
    controller.request("sft", tmp_path / "s")
    assert proc.wait(timeout=5) == 3
    err = proc.stderr()
    assert "fake: crashing at step 4" in err and "Traceback" in err
    steps = [m["body"]["step"] for m in controller.quiet_for(0.2) + controller.received if m["type"] == "event.metric"]
    assert sorted(set(steps)) == [1, 2, 3]


def test_hang_stops_heartbeats(controller, tmp_path):
    proc = controller.spawn({"stages": {"*": {"steps": 10, "hang_at_step": 3, "step_time_s": 0.01}}})
    controller.handshake(heartbeat_interval_s=0.1)
    controller.request("sft", tmp_path / "s")
    while controller.expect("event.metric")["body"]["step"] < 2:
        pass
    time.sleep(0.3)  # let the freeze happen
    while controller.recv(0.01) is not None:
        pass
    assert controller.quiet_for(0.8) == []
    assert proc.poll() is None  # hung, not dead


def test_bad_messages_are_ignored(controller, tmp_path):
    proc = controller.spawn({"stages": {"*": {"steps": 3, "step_time_s": 0}}})
    controller.handshake()
    good = make_envelope("stage.request", {"stage": "sft", "config": {}, "stage_dir": str(tmp_path / "x")},
                         controller.session)
    sig, payload = encode(good, controller.key)
    controller.send_raw([b"\x00" * 32, payload])                    # wrong HMAC
    controller.send_raw(encode(good, b"wrong key"))                 # signed with another key
    controller.send_raw([payload])                                  # one frame
    controller.send_raw([sig, payload, b"extra"])                   # three frames
    junk = b"\xc1garbage"
    controller.send_raw([hmac.new(controller.key, junk, hashlib.sha256).digest(), junk])  # not msgpack
    arr = msgpack.packb([1, 2])
    controller.send_raw([hmac.new(controller.key, arr, hashlib.sha256).digest(), arr])    # not a map
    controller.send("stage.request", {"stage": "sft", "config": {}, "stage_dir": str(tmp_path / "x")},
                    session="someone-else")                          # wrong session
    controller.send("cancel", session="someone-else")               # would cancel if honoured
    controller.send("shutdown", key=b"forged")                      # would stop it if honoured
    controller.send("future.message", {"whatever": 1})              # unknown type: ignored
    noise = controller.quiet_for(0.3, ignore=("heartbeat",))
    assert noise == []  # none of those started a stage
    assert not (tmp_path / "x").exists()

    req = controller.request("sft", tmp_path / "s")
    _, result = controller.run_until_result()
    assert result["re"] == req and result["body"]["status"] == "ok"
    assert proc.poll() is None
    err = proc.stderr()
    assert "bad signature" in err and "frames" in err and "msgpack" in err and "session" in err


def test_oversized_message_dropped(controller, tmp_path):
    proc = controller.spawn({"stages": {"*": {"steps": 2, "step_time_s": 0}}})
    controller.handshake(heartbeat_interval_s=0.1)
    big = b"\x00" * (64 * 1024 * 1024 + 16)
    controller.send_raw([b"\x00" * 32, big])
    # MAXMSGSIZE drops the connection; the DEALER reconnects with a fresh random routing id and says
    # a signed hello again, which is what moves the controller's route (no ROUTER_HANDOVER).
    again = controller.expect("hello", timeout=5)
    assert again["body"]["reconnect"] is True and again["body"]["pid"] == proc.pid
    controller.request("sft", tmp_path / "s")
    _, result = controller.run_until_result(timeout=10)
    assert result["body"]["status"] == "ok"
    assert proc.poll() is None
    assert "reconnecting" in proc.stderr()


def test_shutdown_exits_zero(controller, tmp_path):
    proc = controller.spawn({})
    controller.handshake()
    controller.send("shutdown")
    assert proc.wait(timeout=5) == 0


def test_shutdown_during_stage_finishes_with_cancelled(controller, tmp_path):
    proc = controller.spawn({"stages": {"*": {"steps": 100, "step_time_s": 0.02}}})
    controller.handshake()
    controller.request("sft", tmp_path / "s")
    controller.expect("event.metric")
    controller.send("shutdown")
    _, result = controller.run_until_result()
    assert result["body"]["status"] == "cancelled"
    assert proc.wait(timeout=5) == 0


def test_stdin_eof_exits_when_watched(controller):
    proc = controller.spawn({}, stdin=subprocess.PIPE, POSTTRAIN_WATCH_STDIN="1")
    controller.handshake()
    t0 = time.monotonic()
    proc.popen.stdin.close()
    assert proc.wait(timeout=3) == 70
    assert time.monotonic() - t0 < 3
    assert "controller gone" in proc.stderr()


def test_devnull_stdin_is_not_death_without_watch(controller, tmp_path):
    proc = controller.spawn({"stages": {"*": {"steps": 1, "step_time_s": 0}}})  # stdin = /dev/null
    controller.handshake()
    time.sleep(0.7)
    assert proc.poll() is None
    controller.request("sft", tmp_path / "s")
    _, result = controller.run_until_result()
    assert result["body"]["status"] == "ok"


def test_parent_pid_gone_exits(controller):
    parent = controller.track(subprocess.Popen(["sleep", "30"]))
    proc = controller.spawn({}, POSTTRAIN_PARENT_PID=str(parent.pid))
    controller.handshake()
    parent.kill()
    parent.wait()  # reaped: the pid no longer exists
    assert proc.wait(timeout=3) == 70
    assert "no longer exists" in proc.stderr()


def test_exit_before_hello(controller):
    proc = controller.spawn({"exit_before_hello": {"code": 9, "stderr": "ImportError: no module named torch"}})
    assert proc.wait(timeout=5) == 9
    assert "ImportError: no module named torch" in proc.stderr()
    assert controller.recv(0.1) is None


def test_start_delay_and_protocol_override(controller):
    proc = controller.spawn({"start_delay_s": 0.5, "protocol": "2.0"})
    hello = controller.expect("hello", timeout=5)
    assert hello["_t"] - proc.started >= 0.5
    assert hello["body"]["protocol"] == "2.0"


def test_no_hello(controller):
    proc = controller.spawn({"no_hello": True})
    assert controller.recv(0.7) is None
    assert proc.poll() is None


def test_no_ack_exits_2(controller):
    proc = controller.spawn({"ack_timeout_s": 0.3})
    controller.expect("hello")
    assert proc.wait(timeout=5) == 2
    assert "no hello.ack" in proc.stderr()


def test_script_from_file(controller, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"capabilities": ["sft"]}))
    controller.spawn(None, POSTTRAIN_FAKE_SCRIPT=f"@{script}")
    assert controller.expect("hello")["body"]["capabilities"] == ["sft"]
