"""Raw baseline peer for bench/bridge.mjs: a plain pyzmq DEALER, no HMAC, no threads, no validation.

    python bench/raw_peer.py <endpoint>

Speaks just enough to be driven by the benchmark's zeromq.js ROUTER:
  * on connect it sends one ``hello`` frame pair, then waits for commands;
  * ``burst {n}``: sends n metric messages shaped like the bridge's (two frames: a 32-byte
    placeholder where the bridge puts the HMAC, and a msgpack envelope {v, id, type, re, session, ts,
    body{stage, step, values{3 floats}}} packed fresh for every message), then ``done``;
  * ``stop``: exits;
  * anything else is echoed back as is, immediately (the RTT baseline).
"""
from __future__ import annotations

import sys
import time

import msgpack
import zmq

SIG = b"\0" * 32
SESSION = "0123456789abcdef"
FIXED_ID = "0" * 32  # same length as a uuid4().hex id; the bridge generates one per message


def envelope(type: str, body: dict, re: str | None = None) -> bytes:
    return msgpack.packb({"v": 1, "id": FIXED_ID, "type": type, "re": re, "session": SESSION,
                          "ts": time.time(), "body": body}, use_bin_type=True)


def burst(sock: zmq.Socket, n: int, re: str) -> None:
    packb = msgpack.packb
    send = sock.send_multipart
    for s in range(1, n + 1):
        payload = packb({"v": 1, "id": FIXED_ID, "type": "event.metric", "re": None, "session": SESSION,
                         "ts": time.time(), "body": {"stage": "sft", "step": s, "values": {
                             "train/loss": round(1.0 / (1.0 + s), 6), "train/learning_rate": 1e-3,
                             "train/epoch": round(s / n, 6)}}}, use_bin_type=True)
        send([SIG, payload])
    send([SIG, envelope("done", {"n": n}, re)])


def main() -> int:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM, 100_000)  # as the sidecar's DEALER
    sock.connect(sys.argv[1])
    sock.send_multipart([SIG, envelope("hello", {})])
    while True:
        frames = sock.recv_multipart()
        try:
            msg = msgpack.unpackb(frames[-1], raw=False)
            kind = msg.get("type") if isinstance(msg, dict) else None
        except Exception:
            kind = None
        if kind == "burst":
            burst(sock, int(msg["body"]["n"]), msg["id"])
        elif kind == "stop":
            break
        else:
            sock.send_multipart(frames)
    sock.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
