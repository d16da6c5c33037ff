"""ping/pong: the sidecar's I/O thread answers a controller ``ping`` with ``pong`` (re = the ping id);
and the send path under a fast burst (the bridge benchmark's load)."""
from __future__ import annotations

import time


def _expect_pong(controller, ping_id: str, timeout: float = 5.0, collect: list | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = controller.expect("pong", timeout=max(0.0, deadline - time.monotonic()), collect=collect)
        if msg["re"] == ping_id:
            return msg


def test_ping_gets_pong_with_its_id(controller):
    controller.spawn({})
    controller.handshake(heartbeat_interval_s=1.0)
    ids = [controller.send("ping", {}) for _ in range(3)]
    for ping_id in ids:
        pong = _expect_pong(controller, ping_id)
        assert pong["type"] == "pong" and pong["re"] == ping_id
        assert pong["session"] == controller.session and pong["body"] == {}
        assert pong["id"] != ping_id


def test_pong_comes_from_the_io_thread_while_a_stage_runs(controller, tmp_path):
    # The main thread is busy playing a slow stage; the I/O thread still answers at once.
    controller.spawn({"stages": {"*": {"steps": 40, "step_time_s": 0.05, "save_every": 0}}})
    controller.handshake(heartbeat_interval_s=1.0)
    controller.request("sft", tmp_path / "sft")
    controller.expect("event.metric", timeout=5)
    t0 = time.monotonic()
    ping_id = controller.send("ping", {})
    pong = _expect_pong(controller, ping_id)
    assert pong["_t"] - t0 < 1.0
    _, result = controller.run_until_result(timeout=10)
    assert result["body"]["status"] == "ok"


def test_unknown_types_are_still_ignored(controller):
    controller.spawn({})
    controller.handshake(heartbeat_interval_s=1.0)
    controller.send("no.such.type", {"x": 1})
    ping_id = controller.send("ping", {})
    assert _expect_pong(controller, ping_id)["re"] == ping_id


def test_a_fast_burst_arrives_whole_and_in_order(controller, tmp_path):
    # The bench's script (no sleep, no periodic checkpoint): the batched send path keeps order.
    controller.spawn({"stages": {"*": {"steps": 5000, "step_time_s": 0, "save_every": 0}}})
    controller.handshake(heartbeat_interval_s=1.0)
    controller.request("sft", tmp_path / "sft")
    events, result = controller.run_until_result(timeout=30)
    steps = [m["body"]["step"] for m in events if m["type"] == "event.metric"]
    assert steps == list(range(1, 5001))
    ckpts = [m["body"]["step"] for m in events if m["type"] == "event.checkpoint"]
    assert ckpts == [5000]  # save_every 0: only the final checkpoint
    assert result["body"]["status"] == "ok"
