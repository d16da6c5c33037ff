"""encode/decode/to_wire: the wire format, unit by unit."""
from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from pathlib import Path

import msgpack
import pytest

from posttrain_sidecar import protocol
from posttrain_sidecar.checkpoints import latest_complete, write_complete_marker
from posttrain_sidecar.connection import Connection, ConfigError, probe_device
from posttrain_sidecar.protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_MAJOR,
    PROTOCOL_VERSION,
    ProtocolError,
    decode,
    encode,
    make_envelope,
    to_wire,
)

KEY = b"k" * 32
SESSION = "sess-1"


def frames_of(obj, key=KEY):
    payload = msgpack.packb(obj, use_bin_type=True)
    return [hmac.new(key, payload, hashlib.sha256).digest(), payload]


def envelope(**over):
    env = make_envelope("stage.request", {"stage": "sft"}, SESSION)
    env.update(over)
    return env


def test_constants():
    assert PROTOCOL_MAJOR == 1
    assert PROTOCOL_VERSION == "1.1"
    assert MAX_MESSAGE_BYTES == 64 * 1024 * 1024


def test_envelope_shape():
    env = make_envelope("heartbeat", None, SESSION)
    assert set(env) == {"v", "id", "type", "re", "session", "ts", "body"}
    assert env["v"] == 1 and isinstance(env["id"], str) and len(env["id"]) == 32
    assert env["re"] is None and env["body"] == {} and isinstance(env["ts"], float)
    assert make_envelope("x", {}, SESSION)["id"] != env["id"]


def test_round_trip_nested():
    body = {"a": [1, 2.5, "x", None, True], "b": {"c": {"d": [{"e": b"\x00\x01"}]}}, "big": 2**63 - 1, "neg": -5}
    env = make_envelope("stage.request", body, SESSION, re="abc")
    out = decode(encode(env, KEY), KEY, SESSION)
    assert out["body"] == body
    assert out["re"] == "abc" and out["type"] == "stage.request" and out["id"] == env["id"]


def test_wire_format_is_hmac_sha256_over_msgpack_payload():
    env = make_envelope("hello", {"x": 1}, SESSION)
    sig, payload = encode(env, KEY)
    assert len(sig) == 32
    assert sig == hmac.new(KEY, payload, hashlib.sha256).digest()
    assert msgpack.unpackb(payload, raw=False) == env


def test_nan_and_inf_survive():
    env = make_envelope("event.metric", {"values": {"nan": float("nan"), "inf": float("inf"),
                                                    "ninf": float("-inf")}}, SESSION)
    vals = decode(encode(env, KEY), KEY, SESSION)["body"]["values"]
    assert math.isnan(vals["nan"]) and vals["inf"] == math.inf and vals["ninf"] == -math.inf


def test_to_wire_sanitises():
    out = to_wire({"t": (1, 2, (3,)), "p": Path("/a/b"), 3: "int key", "s": {4}, "o": OrderedDict(x=1),
                   "huge": 2**70})
    assert out == {"t": [1, 2, [3]], "p": "/a/b", "3": "int key", "s": [4], "o": {"x": 1}, "huge": float(2**70)}
    with pytest.raises(TypeError):
        to_wire({"x": object()})


def test_to_wire_numpy_scalars():
    np = pytest.importorskip("numpy")
    out = to_wire({"f": np.float32(0.5), "i": np.int64(7), "b": np.bool_(True), "arr": np.arange(3),
                   "nan": np.float64("nan")})
    assert out["f"] == 0.5 and type(out["f"]) is float
    assert out["i"] == 7 and type(out["i"]) is int
    assert out["b"] is True
    assert out["arr"] == [0, 1, 2]
    assert math.isnan(out["nan"])
    env = make_envelope("event.metric", {"values": {"loss": np.float32(1.25)}}, SESSION)
    assert decode(encode(env, KEY), KEY, SESSION)["body"]["values"]["loss"] == 1.25


def test_tampered_payload_rejected():
    sig, payload = encode(envelope(), KEY)
    bad = bytearray(payload)
    bad[-1] ^= 0x01
    with pytest.raises(ProtocolError, match="signature"):
        decode([sig, bytes(bad)], KEY, SESSION)


def test_wrong_key_and_short_signature_rejected():
    frames = encode(envelope(), b"other-key")
    with pytest.raises(ProtocolError, match="signature"):
        decode(frames, KEY, SESSION)
    sig, payload = encode(envelope(), KEY)
    with pytest.raises(ProtocolError, match="signature"):
        decode([sig[:16], payload], KEY, SESSION)


def test_wrong_session_rejected():
    with pytest.raises(ProtocolError, match="session"):
        decode(encode(envelope(session="other"), KEY), KEY, SESSION)
    # session=None: no check (a test controller reading anything)
    assert decode(encode(envelope(session="other"), KEY), KEY, None)["session"] == "other"


@pytest.mark.parametrize("frames,reason", [
    ([b"only-one"], "frames"),
    ([b"a", b"b", b"c"], "frames"),
])
def test_frame_count(frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(frames, KEY, SESSION)


def test_garbage_payloads():
    payload = b"\xc1\xc1 definitely not msgpack"
    sig = hmac.new(KEY, payload, hashlib.sha256).digest()
    with pytest.raises(ProtocolError, match="msgpack"):
        decode([sig, payload], KEY, SESSION)
    with pytest.raises(ProtocolError, match="not a map"):
        decode(frames_of([1, 2, 3]), KEY, SESSION)


@pytest.mark.parametrize("field", ["v", "id", "type", "session", "ts", "body"])
def test_missing_field(field):
    env = envelope()
    del env[field]
    with pytest.raises(ProtocolError, match=field):
        decode(frames_of(env), KEY, SESSION)


@pytest.mark.parametrize("field,value", [
    ("v", "1"), ("v", True), ("id", 5), ("type", None), ("session", b"bytes"), ("ts", "now"),
    ("body", [1]), ("re", 12),
])
def test_wrong_types(field, value):
    with pytest.raises(ProtocolError):
        decode(frames_of(envelope(**{field: value})), KEY, SESSION)


def test_other_major_rejected():
    with pytest.raises(ProtocolError, match="major"):
        decode(frames_of(envelope(v=2)), KEY, SESSION)


def test_unknown_type_and_extra_fields_pass():
    env = envelope(type="future.thing", extra={"x": 1})
    del env["re"]
    out = decode(frames_of(env), KEY, SESSION)
    assert out["type"] == "future.thing" and out["re"] is None and out["extra"] == {"x": 1}


def test_oversized_rejected():
    payload = b"\x00" * (MAX_MESSAGE_BYTES + 1)
    with pytest.raises(ProtocolError, match="limit"):
        decode([b"x" * 32, payload], KEY, SESSION)


def test_connection_requires_env():
    with pytest.raises(ConfigError, match="POSTTRAIN_ENDPOINT"):
        Connection(env={})
    with pytest.raises(ConfigError, match="POSTTRAIN_KEY"):
        Connection(env={"POSTTRAIN_ENDPOINT": "ipc:///tmp/x", "POSTTRAIN_SESSION": "s",
                        "POSTTRAIN_KEY": "zz-not-hex"})


def test_probe_device_respects_cuda_visible_devices():
    assert probe_device({"CUDA_VISIBLE_DEVICES": ""})["type"] == "cpu"
    assert probe_device({"CUDA_VISIBLE_DEVICES": "-1"})["count"] == 0
    d = probe_device({})
    assert d["probe"] is True and d["type"] in ("cuda", "cpu") and d["count"] >= 0


def test_latest_complete_skips_incomplete(tmp_path):
    for step, complete in [(2, True), (4, True), (6, False)]:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text("{}")
        if complete:
            write_complete_marker(d, step=step)
    (tmp_path / "not-a-checkpoint").mkdir()
    assert latest_complete(tmp_path) == tmp_path / "checkpoint-4"
    assert latest_complete(tmp_path / "missing") is None
