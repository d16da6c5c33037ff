"""Property tests of the wire format (hypothesis): decode never raises anything but ProtocolError,
encode → decode round-trips any msgpack-able body, and a live sidecar keeps answering ping after
bursts of garbage frames."""
from __future__ import annotations

import math
import time

import msgpack
import pytest

hypothesis = pytest.importorskip("hypothesis")  # in pyproject's dev extra
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from posttrain_sidecar.protocol import PROTOCOL_MAJOR, ProtocolError, decode, encode, make_envelope, sign  # noqa: E402

KEY = bytes(range(32))
SESSION = "fuzz-session"
FAST = settings(max_examples=300, deadline=None, database=None)

# --------------------------------------------------------------------------------------------
# strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
# Values that survive a msgpack round trip unchanged (lists, str-keyed maps; no NaN: NaN != NaN).
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
bodies = st.dictionaries(st.text(max_size=10), values, max_size=6)

# Anything msgpack can pack, odd map keys and NaN included.
any_msgpack = st.recursive(
    scalars | st.floats(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5) | st.binary(max_size=4) | st.none(), inner, max_size=4),
    max_leaves=20,
)

FIELDS = {
    "v": st.just(PROTOCOL_MAJOR) | any_msgpack,
    "id": st.text(min_size=1, max_size=8) | any_msgpack,
    "type": st.sampled_from(["ping", "cancel", "event.log", "bogus", "hello.ack", ""]) | any_msgpack,
    "re": st.none() | st.text(max_size=8) | any_msgpack,
    "session": st.just(SESSION) | st.text(max_size=8) | any_msgpack,
    "ts": st.floats() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | any_msgpack,
    "body": bodies | any_msgpack,
}
# Envelope-shaped maps: every field may be missing or of the wrong type.
envelopes = st.fixed_dictionaries({}, optional=FIELDS)


def signed(payload: bytes) -> list[bytes]:
    return [sign(payload, KEY), payload]


payloads = st.binary(max_size=200) | any_msgpack.map(lambda v: msgpack.packb(v, use_bin_type=True)) \
    | envelopes.map(lambda e: msgpack.packb(e, use_bin_type=True))

frame_lists = (
    st.lists(st.binary(max_size=80), min_size=0, max_size=4)  # any frames, unsigned
    | payloads.map(signed)  # past the HMAC: msgpack and envelope checks
    | st.tuples(st.binary(min_size=32, max_size=32), payloads).map(list)  # wrong signature, right length
    | st.lists(st.binary(max_size=8) | st.text(max_size=8) | st.integers() | st.none(), min_size=2, max_size=2)  # not bytes
)


def same(a, b) -> bool:
    """Equality for decoded values (msgpack returns lists for lists; floats compare exactly)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------------------------
# decode


@FAST
@given(frames=frame_lists, session=st.none() | st.just(SESSION))
def test_decode_raises_only_protocol_error(frames, session):
    try:
        msg = decode(frames, KEY, session)
    except ProtocolError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    # Whatever passes is a well-formed envelope.
    assert isinstance(msg, dict) and msg["v"] == PROTOCOL_MAJOR
    assert all(isinstance(msg[f], str) for f in ("id", "type", "session"))
    assert isinstance(msg["body"], dict) and (msg["re"] is None or isinstance(msg["re"], str))
    assert session is None or msg["session"] == session


@FAST
@given(env=envelopes)
def test_signed_envelope_shapes_decode_or_raise_protocol_error(env):
    try:
        decode(signed(msgpack.packb(env, use_bin_type=True)), KEY, SESSION)
    except ProtocolError:
        pass


# --------------------------------------------------------------------------------------------
# encode → decode


@FAST
@given(body=bodies, type=st.text(min_size=1, max_size=20), re=st.none() | st.text(max_size=20))
def test_encode_decode_round_trip(body, type, re):
    env = make_envelope(type, body, SESSION, re)
    frames = encode(env, KEY)
    assert len(frames) == 2 and len(frames[0]) == 32
    out = decode(frames, KEY, SESSION)
    assert out["type"] == type and out["re"] == re and out["id"] == env["id"] and out["ts"] == env["ts"]
    assert same(out["body"], body)
    # One flipped bit anywhere in the payload breaks the signature.
    payload = bytearray(frames[1])
    payload[len(payload) // 2] ^= 0x01
    with pytest.raises(ProtocolError):
        decode([frames[0], bytes(payload)], KEY, SESSION)


@settings(max_examples=50, deadline=None, database=None)
@given(body=bodies)
def test_round_trip_keeps_nan_and_infinities(body):
    body = {**body, "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
    out = decode(encode(make_envelope("event.metric", body, SESSION), KEY), KEY, SESSION)
    assert math.isnan(out["body"]["nan"]) and out["body"]["inf"] == math.inf and out["body"]["-inf"] == -math.inf
    assert same(out["body"], body)


# --------------------------------------------------------------------------------------------
# a live sidecar under garbage

# Garbage as it reaches the sidecar: anything, but never a valid message that changes its state
# (shutdown, stage.request, preflight are left out: valid ones are answered, not garbage).
live_frames = frame_lists | st.lists(st.binary(min_size=1, max_size=4096), min_size=1, max_size=3)


def _expect_pong(controller, ping_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = controller.expect("pong", timeout=max(0.0, deadline - time.monotonic()))
        if msg["re"] == ping_id:
            return msg


def test_live_sidecar_answers_ping_after_garbage_bursts(controller):
    # The fake sidecar runs the real Connection: same I/O thread, same decode path.
    proc = controller.spawn({})
    controller.handshake(heartbeat_interval_s=0.5)
    # The controller signs with its own key; the sidecar must check with the same one.
    controller_key, controller_session = controller.key, controller.session

    def resign(frames):
        # Frames signed with the test KEY are re-signed with the live key so they pass the HMAC
        # and exercise msgpack/envelope checks in the sidecar (unless the type is state-changing).
        if len(frames) == 2 and isinstance(frames[1], bytes) and frames[0] == sign(frames[1], KEY):
            try:
                msg = msgpack.unpackb(frames[1], raw=False, strict_map_key=False)
            except Exception:
                msg = None
            if isinstance(msg, dict):
                if msg.get("type") in ("shutdown", "stage.request", "preflight"):
                    return None
                if msg.get("session") == SESSION:
                    msg["session"] = controller_session
                    payload = msgpack.packb(msg, use_bin_type=True)
                    return [sign(payload, controller_key), payload]
            return [sign(frames[1], controller_key), frames[1]]
        return frames

    sent = {"n": 0}

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(burst=st.lists(live_frames, min_size=1, max_size=20))
    def burst_then_ping(burst):
        for frames in burst:
            frames = resign(frames)
            if frames is None or not frames:
                continue
            if not all(isinstance(f, bytes) for f in frames):
                frames = [f if isinstance(f, bytes) else repr(f).encode() for f in frames]
            controller.send_raw(frames)
            sent["n"] += 1
        ping_id = controller.send("ping", {})
        assert _expect_pong(controller, ping_id)["re"] == ping_id
        assert proc.poll() is None

    burst_then_ping()
    assert sent["n"] > 0
    # The sidecar still serves requests, and said why it dropped what it dropped.
    req = controller.send("preflight", {"config": {}, "stages": ["sft"]})
    assert controller.expect("preflight.result")["re"] == req
    assert "dropped an incoming message" in proc.stderr()
    controller.send("shutdown")
    assert proc.wait(timeout=10) == 0
