"""The sidecar's end of the wire: one DEALER socket owned by one I/O thread (``serve()``, the loop on
top of it, is server.py; the error types are errors.py).

Threads:
  * main thread: runs stages (training); talks to the controller only through ``Connection``
    methods, which encode on the caller's thread and enqueue frames (thread-safe). Metric events
    are queued as plain bodies instead: the I/O thread encodes them, one envelope for the events
    that are waiting together (``event.metrics``, protocol 1.1).
  * I/O thread ("posttrain-io"): owns the DEALER socket; sends queued frames in order, sends
    heartbeats once hello.ack arrived, receives and checks incoming messages. ``cancel`` and
    ``shutdown`` set events; ``stage.request`` (and ``hello.ack``) go to the inbound queue.
    ``ping`` is answered with ``pong`` right there, without the main thread (RTT probe).
  * parent watchers (daemon): exit the process (code 70) when the controller goes away.

Everything human-readable goes to stderr; stdout is never written.
"""
from __future__ import annotations

import collections
import math
import os
import platform
import queue
import re as _re
import signal
import socket
import threading
import time
import traceback
from typing import Any, Callable, Mapping

import zmq

from . import __version__
from .errors import ConfigError, StageCancelled, StageError  # noqa: F401 - re-exported: stages and tests import them from here
from .parent_watch import (  # noqa: F401 - re-exported: fake.py and tests import them from here
    ENV_PARENT_PID,
    ENV_WATCH_STDIN,
    EXIT_PARENT_GONE,
    eprint,
    parse_parent_pid,
    start_parent_watch,
)
from .protocol import (
    CANCEL,
    EVENT_CHECKPOINT,
    EVENT_LOG,
    EVENT_METRIC,
    EVENT_METRICS,
    EVENT_STATE,
    HEARTBEAT,
    HELLO,
    HELLO_ACK,
    LOG_LEVELS,
    MAX_BATCH_ITEMS,
    MAX_BATCH_VALUES,
    MAX_MESSAGE_BYTES,
    PING,
    PONG,
    PREFLIGHT,
    PREFLIGHT_RESULT,
    PROTOCOL_MAJOR,
    PROTOCOL_VERSION,
    SHUTDOWN,
    STAGE_REQUEST,
    STAGE_RESULT,
    ProtocolError,
    Signer,
    accepts_metric_batches,
    decode,
    encode,
    encode_native,
    make_envelope,
)

ENV_ENDPOINT = "POSTTRAIN_ENDPOINT"
ENV_SESSION = "POSTTRAIN_SESSION"
ENV_KEY = "POSTTRAIN_KEY"

EXIT_OK = 0
EXIT_USAGE = 2  # bad environment, or no hello.ack in time
EXIT_IO_FAILED = 71  # the I/O thread died: a sidecar that cannot talk is useless

DEFAULT_HEARTBEAT_S = 2.0
MIN_HEARTBEAT_S = 0.05
POLL_MS = 50
DEFAULT_ACK_TIMEOUT_S = 30.0
CLOSE_LINGER_MS = 1000

# ping/pong and preflight (protocol 1.x additions) are named in protocol.py with the other types:
# the I/O thread answers ``ping`` at once; the main thread answers ``preflight`` without loading
# weights, ``ok`` false when any problem has severity "error" ("warning"/"info" are notes).
PREFLIGHT_SEVERITIES = ("error", "warning", "info")

_PROBE_PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "trl": "trl",
    "accelerate": "accelerate",
    "bitsandbytes": "bitsandbytes",
}


# --------------------------------------------------------------------------------------------
# hello helpers (cheap: no torch import)


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "posttrain_sidecar": __version__}
    for key, dist in _PROBE_PACKAGES.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
        except Exception:
            pass
    versions["pyzmq"] = zmq.__version__
    return versions


def probe_device(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Guess the accelerator without importing torch: NVIDIA driver entries + CUDA_VISIBLE_DEVICES."""
    env = os.environ if env is None else env
    count = 0
    try:
        count = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        pass
    if count == 0:
        try:
            count = sum(1 for n in os.listdir("/dev") if _re.fullmatch(r"nvidia\d+", n))
        except OSError:
            pass
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for part in visible.split(","):
            part = part.strip()
            if not part or part.startswith("-"):
                break  # CUDA stops enumerating at the first invalid entry ("-1" hides all)
            ids.append(part)
        count = min(count, len(ids))
    return {"type": "cuda" if count > 0 else "cpu", "probe": True, "count": count}


# --------------------------------------------------------------------------------------------
# Connection


def _routing_id() -> bytes:
    """A fresh, unguessable routing id for one connection to the controller's ROUTER.

    The controller has no ROUTER_HANDOVER and adopts a new connection only on a signed hello, so the
    id is not a secret that protects anything by itself; being random it just cannot collide with,
    or be squatted by, a peer that connected first with a predictable id.
    """
    return b"sidecar-" + os.urandom(8).hex().encode()


def _parse_key(key: bytes | str | None) -> bytes:
    if isinstance(key, bytes):
        if not key:
            raise ConfigError("empty HMAC key")
        return key
    if not key:
        raise ConfigError(f"{ENV_KEY} is not set")
    try:
        raw = bytes.fromhex(key.strip())
    except ValueError:
        raise ConfigError(f"{ENV_KEY} is not hex") from None
    if not raw:
        raise ConfigError(f"{ENV_KEY} is empty")
    return raw


class Connection:
    """The sidecar's connection to the controller. Methods are safe to call from any thread."""

    def __init__(
        self,
        endpoint: str | None = None,
        session: str | None = None,
        key: bytes | str | None = None,
        parent_pid: int | None = None,
        watch_stdin: bool | None = None,
        env: Mapping[str, str] | None = None,
    ):
        env = os.environ if env is None else env
        self.endpoint = endpoint or env.get(ENV_ENDPOINT, "")
        if not self.endpoint:
            raise ConfigError(f"{ENV_ENDPOINT} is not set")
        self.session = session if session is not None else env.get(ENV_SESSION, "")
        if not self.session:
            raise ConfigError(f"{ENV_SESSION} is not set")
        self.key = _parse_key(key if key is not None else env.get(ENV_KEY))
        self.parent_pid = parent_pid if parent_pid is not None else parse_parent_pid(env)
        self.watch_stdin = watch_stdin if watch_stdin is not None else env.get(ENV_WATCH_STDIN, "") == "1"
        self.wire_major = PROTOCOL_MAJOR  # envelope `v` of what we send
        self._signer = Signer(self.key)
        # Set from hello.ack (I/O thread): the controller understands event.metrics (protocol >= 1.1).
        self._batch_metrics = False

        self.cancel_requested = threading.Event()
        self.shutdown_requested = threading.Event()
        self.acked = threading.Event()
        self.ack_body: dict[str, Any] | None = None
        self.heartbeat_interval_s = DEFAULT_HEARTBEAT_S

        self._cv = threading.Condition()
        # Outgoing, in order: encoded frames, or a metric body (a dict) that the I/O thread encodes,
        # coalescing the metric events that are waiting together (see _send_entries).
        self._out: collections.deque[list[bytes] | dict[str, Any]] = collections.deque()
        self._enqueued = 0
        self._sent = 0
        self._inbound: queue.Queue[dict[str, Any]] = queue.Queue()
        self._requests_seen = 0
        self._cancel_after = -1  # value of _requests_seen when the last cancel arrived
        self._stop = threading.Event()
        self._frozen = threading.Event()
        self._ready = threading.Event()
        self._io_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._pongs: list[str] = []  # ids of pings to answer (I/O thread only)
        self._send_blocked = False  # the last drain hit the high-water mark (set by the I/O thread)
        self._hello_body: dict[str, Any] | None = None
        # What the main thread is doing and since when (monotonic); heartbeats carry it.
        self._busy: tuple[str, float] | None = None
        # Called on the I/O thread when a cancel arrives (reward_guard interrupts a call with it).
        self.on_cancel: list[Callable[[], Any]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> "Connection":
        """Start the parent watchers and the I/O thread; return once the socket is connecting."""
        if self._thread is not None:
            return self
        start_parent_watch(self.parent_pid, self.watch_stdin)
        self._thread = threading.Thread(target=self._io_main, name="posttrain-io", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"could not set up the socket to {self.endpoint} in {timeout} s")
        if self._io_error is not None:
            raise ConfigError(f"cannot connect to {self.endpoint!r}: {self._io_error}")
        return self

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far was handed to the socket. False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            target = self._enqueued
            while self._sent < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._frozen.is_set() or self._thread is None or not self._thread.is_alive():
                    return False
                self._cv.wait(min(left, 0.1))
        return True

    def close(self, flush_timeout: float = 5.0, linger_ms: int = CLOSE_LINGER_MS) -> None:
        """Flush (bounded), stop the I/O thread, close the socket (bounded linger)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and flush_timeout > 0:
            if not self.flush(flush_timeout):
                eprint("could not send every queued message before closing")
        self._close_linger_ms = linger_ms if flush_timeout > 0 else 0
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=linger_ms / 1000.0 + 2.0)
        for s in (self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def freeze(self) -> None:
        """Stop all socket traffic, heartbeats included (the fake's "hang")."""
        self._frozen.set()
        self._wake()

    # -- sending -----------------------------------------------------------------------------

    def send(self, type: str, body: Mapping[str, Any] | None = None, re: str | None = None) -> str:
        """Queue one message; returns its id. Encodes on the caller's thread (TypeError surfaces here)."""
        env = make_envelope(type, body, self.session, re, v=self.wire_major)
        self._enqueue(type, encode(env, self.key))
        return env["id"]

    def _enqueue(self, type: str, entry: list[bytes] | dict[str, Any]) -> bool:
        if self._closed:
            eprint(f"dropping {type!r}: connection closed")
            return False
        with self._cv:
            # The I/O thread drains the whole queue once woken: wake it only when the queue was
            # empty (or its last send hit the high-water mark), not once per message.
            wake = not self._out or self._send_blocked
            self._out.append(entry)
            self._enqueued += 1
        if wake:
            self._wake()
        return True

    def hello(self, capabilities: list[str], fake: bool = False, protocol: str | None = None,
              extra: Mapping[str, Any] | None = None) -> str:
        body: dict[str, Any] = {
            "protocol": protocol if protocol is not None else PROTOCOL_VERSION,
            "pid": os.getpid(),
            "versions": package_versions(),
            "device": probe_device(),
            "capabilities": list(capabilities),
            "fake": bool(fake),
        }
        if extra:
            body.update(extra)
        self._hello_body = body  # sent again, signed, after a reconnect (see _reconnect)
        return self.send(HELLO, body)

    def state(self, state: str, stage: str | None = None, message: str | None = None) -> str:
        body: dict[str, Any] = {"state": state}
        if stage is not None:
            body["stage"] = stage
        if message is not None:
            body["message"] = message
        return self.send(EVENT_STATE, body)

    def metric(self, stage: str, step: int, values: Mapping[str, Any]) -> bool:
        """Queue numeric values only (non-numbers are skipped); False when nothing was numeric.

        A str stage (always, in practice) queues the plain body and leaves envelope, id, packing
        and HMAC to the I/O thread, which sends the metric events that are waiting together as one
        ``event.metrics`` (protocol 1.1; see ``_send_entries``). The body is built of msgpack-native
        values only (str stage, int step, floats from ``_as_float``), so nothing can fail to encode
        there; ``to_wire``'s generic walk is skipped (it was the hot spot of this path)."""
        clean: dict[str, float] = {}
        for k, v in values.items():
            num = _as_float(v)
            if num is not None:
                clean[str(k)] = num
        if not clean:
            return False
        if isinstance(stage, str):  # str stage, int step, float values: wire-native already
            return self._enqueue(EVENT_METRIC, {"stage": stage, "step": int(step), "values": clean})
        self.send(EVENT_METRIC, {"stage": stage, "step": int(step), "values": clean})
        return True

    def log(self, level: str, message: str, stage: str | None = None) -> str:
        level = level.lower() if isinstance(level, str) else "info"
        if level == "warn":
            level = "warning"
        if level not in LOG_LEVELS:
            level = "info"
        body: dict[str, Any] = {"level": level, "message": str(message)}
        if stage is not None:
            body["stage"] = stage
        return self.send(EVENT_LOG, body)

    def checkpoint(self, stage: str, path: str | os.PathLike[str], step: int) -> str:
        return self.send(EVENT_CHECKPOINT, {"stage": stage, "path": os.fspath(path), "step": int(step)})

    def heartbeat(self) -> str:
        return self.send(HEARTBEAT, self._heartbeat_body())

    def busy(self, what: str | None) -> None:
        """Say what the main thread is doing now ("training step 12", "reward function m:f"). The
        I/O thread's heartbeats carry it and for how long, so the controller can name a main thread
        stuck in one place (runtime.stall_timeout_s) while heartbeats still flow."""
        self._busy = None if what is None else (str(what), time.monotonic())

    @property
    def busy_with(self) -> str | None:
        b = self._busy
        return None if b is None else b[0]

    def _heartbeat_body(self) -> dict[str, Any]:
        b = self._busy  # one read: the main thread may replace it meanwhile
        if b is None:
            return {}
        return {"busy": b[0], "busy_s": round(time.monotonic() - b[1], 1)}

    def result(self, re: str | None, stage: str | None, status: str, summary: Mapping[str, Any] | None = None,
               error: Mapping[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"stage": stage, "status": status}
        if summary is not None:
            body["summary"] = dict(summary)
        if error is not None:
            body["error"] = dict(error)
        return self.send(STAGE_RESULT, body, re=re)

    def preflight_result(self, re: str | None, problems: list[Mapping[str, Any]]) -> str:
        """Answer a ``preflight`` request; ``ok`` is derived from the problems' severities."""
        clean = [normalise_problem(p) for p in problems]
        ok = not any(p["severity"] == "error" for p in clean)
        return self.send(PREFLIGHT_RESULT, {"ok": ok, "problems": clean}, re=re)

    # -- receiving ---------------------------------------------------------------------------

    def wait_ack(self, timeout: float = DEFAULT_ACK_TIMEOUT_S) -> bool:
        """True once hello.ack arrived; False on timeout or when shutdown arrives first."""
        deadline = time.monotonic() + timeout
        while not self.acked.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.shutdown_requested.is_set():
                return False
            self.acked.wait(min(left, 0.1))
        return True

    def next_request(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next stage.request envelope; None on timeout or once shutdown was requested."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.shutdown_requested.is_set():
                return None
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                msg = self._inbound.get(timeout=left) if left is None or left > 0 else self._inbound.get_nowait()
            except queue.Empty:
                return None
            if msg["type"] in (STAGE_REQUEST, PREFLIGHT):
                return msg
            if msg["type"] == SHUTDOWN:
                return None
            # hello.ack: nothing for the main thread to do (wait_ack uses the event)

    def begin_stage(self, request: Mapping[str, Any]) -> None:
        """Before running ``request``: clear a cancel that was meant for an earlier stage."""
        with self._cv:
            seq = request.get("_seq", self._requests_seen)
            if self._cancel_after < seq and not self.shutdown_requested.is_set():
                self.cancel_requested.clear()

    # -- I/O thread --------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # buffer full (a wake is pending anyway) or closed

    def _warn_dropped(self, reason: str) -> None:
        self._dropped += 1
        n = self._dropped
        if n <= 20 or n % 100 == 0:
            eprint(f"warning: dropped an incoming message ({reason}) [{n} dropped so far]")

    def _handle(self, frames: list[bytes]) -> None:
        try:
            msg = decode(frames, self.key, self.session, self._signer)
        except ProtocolError as exc:
            self._warn_dropped(exc.reason)
            return
        kind = msg["type"]
        body = msg["body"]
        if kind == CANCEL:
            with self._cv:
                self._cancel_after = self._requests_seen
            self.cancel_requested.set()
            for hook in list(self.on_cancel):
                try:
                    hook()
                except Exception:  # noqa: BLE001 - a hook must not take the I/O thread down
                    eprint("cancel hook failed:\n" + traceback.format_exc().rstrip())
        elif kind == SHUTDOWN:
            self.shutdown_requested.set()
            self.cancel_requested.set()
            self._inbound.put(msg)
        elif kind == HELLO_ACK:
            interval = body.get("heartbeat_interval_s")
            if isinstance(interval, (int, float)) and not isinstance(interval, bool) and math.isfinite(interval) \
                    and interval > 0:
                self.heartbeat_interval_s = max(MIN_HEARTBEAT_S, float(interval))
            self._batch_metrics = accepts_metric_batches(body.get("protocol"))
            self.ack_body = body
            self.acked.set()
            self._inbound.put(msg)
        elif kind == STAGE_REQUEST:
            with self._cv:
                self._requests_seen += 1
                msg["_seq"] = self._requests_seen
            self._inbound.put(msg)
        elif kind == PREFLIGHT:
            self._inbound.put(msg)  # answered by the main thread (it may import transformers)
        elif kind == PING:
            self._pongs.append(msg["id"])  # answered by the I/O thread right after this receive batch
        # unknown types: ignored

    def _drain_out(self, sock: zmq.Socket) -> None:
        # Takes what is queued in one batch (one lock round trip and one notify per batch, not
        # per message); what could not be sent goes back to the front, in order.
        while not self._frozen.is_set():
            with self._cv:
                if not self._out:
                    self._send_blocked = False
                    return
                batch = list(self._out)
                self._out.clear()
            done, blocked = self._send_entries(sock, batch)
            with self._cv:
                if done < len(batch):
                    self._out.extendleft(reversed(batch[done:]))
                self._sent += done
                self._send_blocked = blocked
                self._cv.notify_all()
            if done < len(batch):
                return

    def _send_entries(self, sock: zmq.Socket, batch: list[Any]) -> tuple[int, bool]:
        """Send queued entries in order; returns (entries consumed, whether the high-water mark blocked).

        Metric bodies are encoded here. A run of them that is already waiting goes out as one
        ``event.metrics`` envelope (one id, one packb, one HMAC, one send for up to MAX_BATCH_ITEMS
        events) when the controller speaks 1.1; nothing waits for a batch to fill, so a lone event
        leaves at once as ``event.metric`` and latency does not grow. Any other entry ends the run,
        so metrics, checkpoints, logs and the stage.result keep their order. ``freeze()`` is
        honoured envelope by envelope.
        """
        n = len(batch)
        i = 0
        while i < n:
            if self._frozen.is_set():
                return i, False
            entry = batch[i]
            if type(entry) is dict:
                frames, j = self._encode_metrics(batch, i, self._metric_run(batch, i))
                if frames is None:  # could not be encoded: dropped (and said so)
                    i = j
                    continue
            else:
                frames, j = entry, i + 1
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return i, True  # peer's queue full: these entries go back and are retried next turn
            i = j
        return n, False

    def _metric_run(self, batch: list[Any], i: int) -> int:
        """End of the run of queued metric bodies from ``i`` that one envelope may carry."""
        if not self._batch_metrics:
            return i + 1
        end = min(len(batch), i + MAX_BATCH_ITEMS)
        values = len(batch[i]["values"])
        j = i + 1
        while j < end:
            e = batch[j]
            if type(e) is not dict:
                break
            values += len(e["values"])
            if values > MAX_BATCH_VALUES:
                break
            j += 1
        return j

    def _encode_metrics(self, batch: list[Any], i: int, j: int) -> tuple[list[bytes] | None, int]:
        """Frames for the metric bodies ``batch[i:j]`` and the end actually covered (the run is
        halved while it cannot be encoded, e.g. over MAX_MESSAGE_BYTES). A lone body that still
        cannot be encoded is dropped with a line on stderr: raising here would kill the I/O thread."""
        while True:
            if j - i == 1:
                env = make_envelope(EVENT_METRIC, None, self.session, v=self.wire_major)
                env["body"] = batch[i]
            else:
                env = make_envelope(EVENT_METRICS, None, self.session, v=self.wire_major)
                env["body"] = {"items": batch[i:j]}
            try:
                return encode_native(env, self._signer), j
            except (ValueError, TypeError, OverflowError) as exc:
                if j - i == 1:
                    eprint(f"dropping the metric event of step {batch[i].get('step')!r}: {exc}")
                    return None, j
                j = i + (j - i) // 2

    def _send_pongs(self, sock: zmq.Socket) -> None:
        """Answer the pings just received (I/O thread; pongs may overtake queued events)."""
        pongs, self._pongs = self._pongs, []
        for ping_id in pongs:
            env = make_envelope(PONG, {}, self.session, ping_id, v=self.wire_major)
            try:
                sock.send_multipart(encode_native(env, self._signer), flags=zmq.NOBLOCK)
            except zmq.Again:
                pass  # peer's queue full: the controller's ping times out, like a lost heartbeat

    def _reconnect(self, sock: zmq.Socket, monitor: zmq.Socket) -> None:
        disconnected = False
        while True:
            try:
                monitor.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            disconnected = True
        if not disconnected or self._stop.is_set():
            return
        eprint("warning: the connection to the controller dropped (oversized or malformed frame?); reconnecting")
        try:
            sock.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass
        sock.setsockopt(zmq.ROUTING_ID, _routing_id())
        sock.connect(self.endpoint)
        # The controller moves its route to a new connection only on a signed hello from this pid.
        if self._hello_body is not None:
            env = make_envelope(HELLO, {**self._hello_body, "reconnect": True}, self.session, v=self.wire_major)
            sock.send_multipart(encode(env, self.key))

    def _io_main(self) -> None:
        ctx = zmq.Context()
        sock = None
        monitor = None
        try:
            try:
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
                sock.setsockopt(zmq.SNDHWM, 100_000)
                # A random routing id per connection: a guessable one (``sidecar-<pid>``) let any
                # local user take the route over on loopback TCP. See _routing_id.
                sock.setsockopt(zmq.ROUTING_ID, _routing_id())
                # libzmq drops the connection for good on a protocol error (e.g. a frame over
                # MAXMSGSIZE) instead of reconnecting: watch for disconnects and reconnect ourselves.
                monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
                sock.connect(self.endpoint)
            except Exception as exc:
                self._io_error = exc
                return
            finally:
                self._ready.set()
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            next_hb: float | None = None
            while not self._stop.is_set():
                if self._frozen.is_set():
                    self._stop.wait(0.05)
                    continue
                timeout_ms = POLL_MS
                if next_hb is not None:
                    timeout_ms = max(0, min(POLL_MS, int((next_hb - time.monotonic()) * 1000)))
                events = dict(poller.poll(timeout_ms))
                if self._wake_r.fileno() in events or self._wake_r in events:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                if monitor in events:
                    self._reconnect(sock, monitor)
                if sock in events:
                    for _ in range(1000):
                        try:
                            frames = sock.recv_multipart(flags=zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(frames)
                if self._frozen.is_set():
                    continue
                if self._pongs:
                    self._send_pongs(sock)
                self._drain_out(sock)
                if self.acked.is_set():
                    now = time.monotonic()
                    if next_hb is None or now >= next_hb:
                        env = make_envelope(HEARTBEAT, self._heartbeat_body(), self.session, v=self.wire_major)
                        try:
                            sock.send_multipart(encode_native(env, self._signer), flags=zmq.NOBLOCK)
                        except zmq.Again:
                            pass
                        next_hb = now + self.heartbeat_interval_s
            if not self._frozen.is_set():
                self._drain_out(sock)
        except Exception:
            eprint("I/O thread failed:\n" + traceback.format_exc().rstrip())
            os._exit(EXIT_IO_FAILED)
        finally:
            if monitor is not None:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
                monitor.close(linger=0)
            if sock is not None:
                linger = 0 if self._frozen.is_set() else getattr(self, "_close_linger_ms", 0)
                sock.close(linger=linger)
            ctx.term()
            with self._cv:
                self._cv.notify_all()


def normalise_problem(p: Any) -> dict[str, Any]:
    """One preflight problem in wire shape: {stage, code, message, severity, fix[, data]}; ``data``
    is an optional map of structured detail (the memory estimate's parts)."""
    if not isinstance(p, Mapping):
        return {"stage": None, "code": "preflight_failed", "message": str(p), "severity": "error", "fix": None}
    stage = p.get("stage")
    severity = p.get("severity") if p.get("severity") in PREFLIGHT_SEVERITIES else "error"
    fix = p.get("fix")
    out = {
        "stage": stage if isinstance(stage, str) else None,
        "code": str(p.get("code") or "preflight_failed"),
        "message": str(p.get("message") or ""),
        "severity": severity,
        "fix": fix if isinstance(fix, str) else None,
    }
    if isinstance(p.get("data"), Mapping):
        out["data"] = dict(p["data"])
    return out


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalar
        try:
            v = v.item()
        except Exception:
            return None
        return _as_float(v)
    return None
