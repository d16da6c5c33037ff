"""Protocol 1.1: ``event.metrics`` coalescing in the sidecar's I/O thread.

An in-process ``Connection`` talks to the pytest controller (conftest). Holding the connection's
lock while queueing makes the I/O thread find everything waiting at once, so the envelopes it
builds are deterministic: runs of metric events become ``event.metrics`` (bounded by
MAX_BATCH_ITEMS), any other message ends a run, a lone event stays ``event.metric``, and a
controller that did not announce 1.1 gets single events only.
"""
from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posttrain_sidecar import protocol
from posttrain_sidecar.connection import Connection
from posttrain_sidecar.protocol import MAX_BATCH_ITEMS, accepts_metric_batches


def _connect(controller, ack_protocol: str | None) -> Connection:
    env = controller.env()
    env.pop("POSTTRAIN_PARENT_PID")  # no parent watcher in the test process
    conn = Connection(env=env, watch_stdin=False).connect()
    conn.send("hello", {"protocol": protocol.PROTOCOL_VERSION})
    controller.expect("hello")
    body: dict[str, Any] = {"heartbeat_interval_s": 5.0}
    if ack_protocol is not None:
        body["protocol"] = ack_protocol
    controller.send("hello.ack", body)
    assert conn.wait_ack(5)
    return conn


def _collect(controller, until_type: str = "event.log", timeout: float = 10.0) -> list[dict[str, Any]]:
    """Messages (heartbeats left out) up to and including the first ``until_type``."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        msg = controller.recv(max(0.0, deadline - time.monotonic()))
        assert msg is not None, f"no {until_type} (got {[m['type'] for m in got][-5:]})"
        if msg["type"] == "heartbeat":
            continue
        got.append(msg)
        if msg["type"] == until_type:
            return got


def _flatten(msgs: list[dict[str, Any]]) -> list[tuple]:
    """What the controller dispatches, in order: one entry per metric item or other message."""
    out: list[tuple] = []
    for m in msgs:
        if m["type"] == "event.metrics":
            out.extend(("metric", it["step"]) for it in m["body"]["items"])
        elif m["type"] == "event.metric":
            out.append(("metric", m["body"]["step"]))
        else:
            out.append((m["type"], m["body"].get("step")))
    return out


@pytest.fixture
def conn_factory(controller):
    conns: list[Connection] = []

    def make(ack_protocol: str | None = "1.1") -> Connection:
        c = _connect(controller, ack_protocol)
        conns.append(c)
        return c

    yield make
    for c in conns:
        c.close(flush_timeout=1.0)


def test_version_negotiation():
    assert accepts_metric_batches("1.1") and accepts_metric_batches("1.12") and accepts_metric_batches("1.1.3")
    for v in ("1.0", "1", "2.1", "", None, 1.1, "1.x", "x.1"):
        assert not accepts_metric_batches(v), v


def test_waiting_metrics_share_envelopes_and_keep_order_around_other_messages(controller, conn_factory):
    conn = conn_factory("1.1")
    n_first = MAX_BATCH_ITEMS + 44
    with conn._cv:  # the I/O thread waits here, then finds everything queued
        for s in range(1, n_first + 1):
            assert conn.metric("sft", s, {"train/loss": 1.0 / s, "train/epoch": s / 1000})
        conn.checkpoint("sft", "/tmp/ckpt", n_first)
        for s in range(n_first + 1, n_first + 11):
            conn.metric("sft", s, {"train/loss": 1.0 / s})
        conn.log("info", "end")
    msgs = _collect(controller)
    shape = [(m["type"], len(m["body"]["items"]) if m["type"] == "event.metrics" else None) for m in msgs]
    assert shape == [("event.metrics", MAX_BATCH_ITEMS), ("event.metrics", 44), ("event.checkpoint", None),
                     ("event.metrics", 10), ("event.log", None)]
    assert _flatten(msgs) == ([("metric", s) for s in range(1, n_first + 1)] + [("event.checkpoint", n_first)]
                              + [("metric", s) for s in range(n_first + 1, n_first + 11)] + [("event.log", None)])
    first = msgs[0]["body"]["items"][0]
    assert first == {"stage": "sft", "step": 1, "values": {"train/loss": 1.0, "train/epoch": 0.001}}
    assert len({m["id"] for m in msgs}) == len(msgs)


def test_a_lone_metric_is_sent_at_once_as_event_metric(controller, conn_factory):
    conn = conn_factory("1.1")
    conn.metric("sft", 7, {"train/loss": 0.5})
    msg = controller.expect("event.metric", timeout=2)
    assert msg["body"] == {"stage": "sft", "step": 7, "values": {"train/loss": 0.5}}
    assert not [m for m in controller.received if m["type"] == "event.metrics"]


def test_a_controller_without_1_1_gets_single_events(controller, conn_factory):
    conn = conn_factory(None)  # a 1.0 controller: its hello.ack has no protocol
    with conn._cv:
        for s in range(1, 301):
            conn.metric("sft", s, {"train/loss": 1.0})
        conn.log("info", "end")
    msgs = _collect(controller)
    assert {m["type"] for m in msgs} == {"event.metric", "event.log"}
    assert _flatten(msgs) == [("metric", s) for s in range(1, 301)] + [("event.log", None)]


def test_oversized_runs_are_split_and_an_unsendable_lone_event_is_dropped(controller, conn_factory, monkeypatch, capfd):
    conn = conn_factory("1.1")
    monkeypatch.setattr(protocol, "MAX_MESSAGE_BYTES", 2000)  # ~20 small items per envelope
    with conn._cv:
        for s in range(1, 101):
            conn.metric("sft", s, {"train/loss": 1.0})
        conn.metric("sft", 101, {"x" * 3000: 1.0})  # over the limit on its own
        for s in range(102, 111):
            conn.metric("sft", s, {"train/loss": 1.0})
        conn.log("info", "end")
    msgs = _collect(controller)
    assert _flatten(msgs) == [("metric", s) for s in range(1, 111) if s != 101] + [("event.log", None)]
    assert max(len(m["body"]["items"]) for m in msgs if m["type"] == "event.metrics") < 50
    assert "dropping the metric event of step 101" in capfd.readouterr().err


def test_flush_counts_batched_events(controller, conn_factory):
    conn = conn_factory("1.1")
    with conn._cv:
        for s in range(1, 1001):
            conn.metric("sft", s, {"train/loss": 1.0})
    assert conn.flush(5.0)
    assert conn._sent == conn._enqueued


_entry = st.one_of(
    st.tuples(st.just("metric"), st.integers(1, 40)),  # how many values
    st.tuples(st.just("checkpoint"), st.just(0)),
    st.tuples(st.just("log"), st.just(0)),
)


def test_property_any_mix_arrives_complete_and_in_order(controller, conn_factory):
    conn = conn_factory("1.1")

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_entry, min_size=1, max_size=600))
    def check(entries):
        expected = []
        with conn._cv:
            for i, (kind, nvals) in enumerate(entries):
                if kind == "metric":
                    conn.metric("sft", i, {f"k{j}": float(j) for j in range(nvals)})
                    expected.append(("metric", i))
                elif kind == "checkpoint":
                    conn.checkpoint("sft", "/tmp/c", i)
                    expected.append(("event.checkpoint", i))
                else:
                    conn.log("info", "x")
                    expected.append(("event.log", None))
            conn.state("marker")
        msgs = _collect(controller, until_type="event.state")
        assert _flatten(msgs[:-1]) == expected
        for m in msgs:
            if m["type"] == "event.metrics":
                items = m["body"]["items"]
                assert 2 <= len(items) <= MAX_BATCH_ITEMS
                assert sum(len(it["values"]) for it in items) <= protocol.MAX_BATCH_VALUES

    check()
