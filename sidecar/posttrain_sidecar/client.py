"""A small Python controller for the sidecar protocol: binds the ROUTER, spawns sidecar
processes with the protocol environment, and sends and receives signed envelopes.

The TypeScript controller (src/bridge/) is the product. This is the same protocol from Python, for
two callers that cannot run Node.js: the sidecar's pytest suite, which plays the controller with
real sockets and real processes, and the GPU check (bench/gpu/check.py), which drives the real
sidecar on GPU hosts that have Python but no Node.js. It needs pyzmq and msgpack, like the sidecar.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from .protocol import ProtocolError, decode, encode, make_envelope


class SidecarProc:
    def __init__(self, popen: subprocess.Popen, stderr_path: Path, started: float):
        self.popen = popen
        self.stderr_path = stderr_path
        self.started = started

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def poll(self):
        return self.popen.poll()


class Controller:
    """Binds the ROUTER, spawns sidecars with the protocol env, sends/receives signed envelopes."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.sockdir = tempfile.mkdtemp(prefix="pt-", dir="/tmp")  # ipc paths must stay < 100 chars
        self.endpoint = f"ipc://{self.sockdir}/s"
        self.router.bind(self.endpoint)
        self.session = uuid.uuid4().hex
        self.key = os.urandom(32)
        self.identity: bytes | None = None
        self.procs: list[subprocess.Popen] = []
        self.received: list[dict[str, Any]] = []
        self.dropped: list[str] = []

    # -- processes -----------------------------------------------------------------------

    def env(self, script: dict | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("POSTTRAIN_WATCH_STDIN", None)
        env.update({
            "POSTTRAIN_ENDPOINT": self.endpoint,
            "POSTTRAIN_SESSION": self.session,
            "POSTTRAIN_KEY": self.key.hex(),
            "POSTTRAIN_PARENT_PID": str(os.getpid()),
            "PYTHONUNBUFFERED": "1",
        })
        if script is not None:
            env["POSTTRAIN_FAKE_SCRIPT"] = json.dumps(script)
        env.update(extra)
        return env

    def spawn(self, script: dict | None = None, module: str = "posttrain_sidecar.fake",
              stdin: Any = subprocess.DEVNULL, **extra_env: str) -> SidecarProc:
        stderr_path = self.workdir / f"stderr-{len(self.procs)}.txt"
        fh = open(stderr_path, "wb")
        started = time.monotonic()
        popen = subprocess.Popen(
            [sys.executable, "-m", module],
            env=self.env(script, **extra_env),
            stdin=stdin,
            stdout=fh,
            stderr=fh,
            cwd=str(self.workdir),
        )
        fh.close()
        self.procs.append(popen)
        return SidecarProc(popen, stderr_path, started)

    def track(self, popen: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(popen)
        return popen

    # -- wire ----------------------------------------------------------------------------

    def recv(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next valid message (any type), or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.router.poll(int(left * 1000) + 1, zmq.POLLIN):
                return None
            frames = self.router.recv_multipart()
            identity, rest = frames[0], frames[1:]
            try:
                msg = decode(rest, self.key, self.session)
            except ProtocolError as exc:
                self.dropped.append(exc.reason)
                continue
            msg["_t"] = time.monotonic()
            self.identity = identity
            self.received.append(msg)
            return msg

    def expect(self, type: str, timeout: float = 5.0, collect: list | None = None) -> dict[str, Any]:
        """Receive until a message of ``type``; the others go to ``collect``."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                seen = [m["type"] for m in (collect or [])][-10:]
                raise AssertionError(f"no {type!r} within {timeout} s (last seen: {seen})")
            if msg["type"] == type:
                return msg
            if collect is not None:
                collect.append(msg)

    def quiet_for(self, seconds: float, ignore: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Everything received during ``seconds`` except types in ``ignore``."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return got
            if msg["type"] not in ignore:
                got.append(msg)

    def send(self, type: str, body: dict | None = None, re: str | None = None, session: str | None = None,
             key: bytes | None = None) -> str:
        env = make_envelope(type, body or {}, session or self.session, re)
        self.send_raw(encode(env, key or self.key))
        return env["id"]

    def send_raw(self, frames: list[bytes]) -> None:
        assert self.identity is not None, "no sidecar has spoken yet"
        self.router.send_multipart([self.identity, *frames])

    def handshake(self, proc: SidecarProc | None = None, heartbeat_interval_s: float = 0.2,
                  timeout: float = 5.0) -> dict[str, Any]:
        hello = self.expect("hello", timeout=timeout)
        self.send("hello.ack", {"heartbeat_interval_s": heartbeat_interval_s})
        return hello

    def request(self, stage: str, stage_dir: Path, *, config: dict | None = None, data: dict | None = None,
                init_adapter: str | None = None, resume_from: str | None = None) -> str:
        return self.send("stage.request", {
            "stage": stage,
            "config": config if config is not None else {"model": {"id": "fake/tiny-model"}},
            "stage_dir": str(stage_dir),
            "data": data or {},
            "init_adapter": init_adapter,
            "resume_from": resume_from,
        })

    def preflight(self, config: dict, stages: list[str], timeout: float = 180.0) -> dict[str, Any]:
        """``preflight {config, stages}`` → the ``preflight.result`` body ({ok, problems})."""
        rid = self.send("preflight", {"config": config, "stages": stages})
        while True:
            msg = self.expect("preflight.result", timeout=timeout)
            if msg.get("re") == rid:
                return msg["body"]

    def run_stage(self, stage: str, stage_dir: Path, *, config: dict, data: dict, init_adapter: str | None = None,
                  resume_from: str | None = None, timeout: float = 600.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One stage.request, then every message up to its stage.result: (events, result body)."""
        self.request(stage, stage_dir, config=config, data=data, init_adapter=init_adapter, resume_from=resume_from)
        events, result = self.run_until_result(timeout=timeout)
        return events, result["body"]

    def run_until_result(self, timeout: float = 10.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        events: list[dict[str, Any]] = []
        result = self.expect("stage.result", timeout=timeout, collect=events)
        return events, result

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self.router.close(linger=0)
        self.ctx.term()
        shutil.rmtree(self.sockdir, ignore_errors=True)
