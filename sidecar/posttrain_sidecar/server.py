"""``serve()``: the sidecar's main loop on top of a ``Connection``: hello, wait for hello.ack, then
answer ``stage.request`` (through a handler) and ``preflight`` (through a check) until shutdown.
Every request is answered in-band: an exception becomes a ``stage.result`` error, never a crash.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Mapping

from .connection import (
    DEFAULT_ACK_TIMEOUT_S,
    EXIT_OK,
    EXIT_USAGE,
    PREFLIGHT,
    Connection,
    eprint,
    normalise_problem,
)
from .errors import ConfigError, StageCancelled, StageError, error_block

Handler = Callable[[dict, Connection], Any]


def _check_request(body: Mapping[str, Any]) -> str | None:
    """Why a stage.request body is malformed, or None."""
    if not isinstance(body.get("stage"), str) or not body.get("stage"):
        return "'stage' must be a non-empty string"
    if not isinstance(body.get("config"), dict):
        return "'config' must be a map"
    if not isinstance(body.get("stage_dir"), str) or not body.get("stage_dir"):
        return "'stage_dir' must be a non-empty string"
    if body.get("data") is not None and not isinstance(body.get("data"), dict):
        return "'data' must be a map"
    for k in ("init_adapter", "resume_from"):
        if body.get(k) is not None and not isinstance(body.get(k), str):
            return f"'{k}' must be a path string or nil"
    return None


def run_request(conn: Connection, handler: Handler, request: Mapping[str, Any]) -> str:
    """Run one stage.request through ``handler`` and answer it with stage.result; returns the status."""
    body = dict(request["body"])
    stage = body.get("stage") if isinstance(body.get("stage"), str) else None
    problem = _check_request(body)
    if problem is not None:
        conn.result(request["id"], stage, "error", error={
            "code": "bad_request", "message": f"malformed stage.request: {problem}", "traceback": "",
            "retryable": False})
        return "error"
    body.setdefault("data", {})
    body.setdefault("init_adapter", None)
    body.setdefault("resume_from", None)
    conn.begin_stage(request)
    conn.busy(f"stage {stage}: setting up")
    try:
        ret = handler(body, conn)
    except StageCancelled as exc:
        conn.log("warning", str(exc), stage)
        conn.result(request["id"], stage, "cancelled", summary={"cancelled_in": str(exc)})
        return "cancelled"
    except Exception as exc:
        err = error_block(exc)
        if not isinstance(exc, StageError) or exc.__cause__ is not None:  # e.g. a user's reward function raised
            eprint(f"stage {stage} failed:\n{err['traceback'].rstrip()}")
        conn.result(request["id"], stage, "error", error=err)
        return "error"
    finally:
        conn.busy(None)
    status, summary = _normalise_return(ret)
    error = None
    if status == "error":
        error = {"code": "stage_failed", "message": f"stage {stage} reported an error", "traceback": "",
                 "retryable": False}
    try:
        conn.result(request["id"], stage, status, summary=summary, error=error)
    except (TypeError, ValueError) as exc:  # a summary that cannot be sent
        conn.result(request["id"], stage, "error", error=error_block(exc))
        return "error"
    return status


PreflightCheck = Callable[[dict, Connection], Any]


def run_preflight(conn: Connection, check: PreflightCheck | None, request: Mapping[str, Any]) -> bool:
    """Answer one ``preflight`` request with ``check(body, conn) -> [problem, ...]``; returns ok.

    Without a check (a sidecar that has nothing to verify) the answer is ok with no problems. A
    malformed request or a check that raises is answered with one error problem, never a crash.
    """
    body = request.get("body") or {}
    problems: list[Any]
    if not isinstance(body.get("config"), dict):
        problems = [{"stage": None, "code": "bad_request", "message": "malformed preflight: 'config' must be a map"}]
    elif not isinstance(body.get("stages"), list) or not all(isinstance(s, str) for s in body["stages"]):
        problems = [{"stage": None, "code": "bad_request", "message": "malformed preflight: 'stages' must be a list of stage names"}]
    elif check is None:
        problems = []
    else:
        try:
            problems = list(check(dict(body), conn) or [])
        except Exception as exc:  # noqa: BLE001 - a broken check is reported, not fatal to the sidecar
            eprint("preflight check failed:\n" + traceback.format_exc().rstrip())
            problems = [{"stage": None, "code": "preflight_failed",
                         "message": f"the preflight check itself failed: {type(exc).__name__}: {exc}",
                         "fix": "See the sidecar.log of the run for the traceback."}]
    try:
        conn.preflight_result(request.get("id"), problems)
    except (TypeError, ValueError) as exc:  # a problem that cannot be sent
        conn.preflight_result(request.get("id"), [{"stage": None, "code": "preflight_failed", "message": str(exc)}])
        return False
    return not any(normalise_problem(p)["severity"] == "error" for p in problems)


def _normalise_return(ret: Any) -> tuple[str, dict[str, Any]]:
    if ret is None:
        return "ok", {}
    if isinstance(ret, tuple) and len(ret) == 2:
        status, summary = ret
    elif isinstance(ret, Mapping):
        status, summary = "ok", ret
    else:
        status, summary = ret, {}
    if status not in ("ok", "error", "cancelled"):
        return "error", {"invalid_status": str(status)}
    return status, dict(summary or {})


def serve(
    handler: Handler,
    capabilities: list[str],
    fake: bool = False,
    *,
    protocol: str | None = None,
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
    conn: Connection | None = None,
    say_hello: bool = True,
    preflight: PreflightCheck | None = None,
) -> int:
    """Connect, say hello, wait for hello.ack, run stage requests until shutdown. Returns the exit code.

    SIGINT is ignored: a terminal Ctrl-C reaches the whole process group, but cancelling is the
    controller's call (it sends ``cancel``; it escalates with SIGTERM/SIGKILL).
    """
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    try:
        if conn is None:
            conn = Connection()
        conn.connect()
    except ConfigError as exc:
        eprint(f"cannot start: {exc}")
        return EXIT_USAGE
    if say_hello:
        conn.hello(capabilities, fake=fake, protocol=protocol)
    if not conn.wait_ack(ack_timeout_s):
        if conn.shutdown_requested.is_set():
            conn.close()
            return EXIT_OK
        eprint(f"no hello.ack from the controller within {ack_timeout_s:g} s; exiting")
        conn.close(flush_timeout=0)
        return EXIT_USAGE
    while not conn.shutdown_requested.is_set():
        request = conn.next_request(timeout=0.5)
        if request is None:
            continue
        if request["type"] == PREFLIGHT:
            run_preflight(conn, preflight, request)
            continue
        run_request(conn, handler, request)
    conn.close(flush_timeout=5.0)
    return EXIT_OK
