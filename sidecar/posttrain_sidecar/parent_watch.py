"""Parent-death watchers of the sidecar: exit (code 70) when the controller goes away.

Split out of connection.py (which re-exports ``start_parent_watch``, ``parse_parent_pid`` and
``eprint``) so that file stays about the wire.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Mapping

ENV_PARENT_PID = "POSTTRAIN_PARENT_PID"
ENV_WATCH_STDIN = "POSTTRAIN_WATCH_STDIN"
EXIT_PARENT_GONE = 70
PARENT_POLL_S = 0.5


def eprint(message: str) -> None:
    """One line to stderr (the controller keeps a ring buffer of it)."""
    try:
        sys.stderr.write(f"posttrain-sidecar[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


_watch_lock = threading.Lock()
_watch_started = False


def _parent_gone(why: str) -> None:
    eprint(f"controller gone ({why}); exiting")
    os._exit(EXIT_PARENT_GONE)


def _watch_stdin() -> None:
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else 0
    except (AttributeError, ValueError, OSError):
        fd = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError as exc:
            _parent_gone(f"stdin unreadable: {exc}")
            return
        if not chunk:
            _parent_gone("stdin closed")
            return


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _watch_parent_pid(parent_pid: int) -> None:
    initial_ppid = os.getppid()
    while True:
        time.sleep(PARENT_POLL_S)
        ppid = os.getppid()
        if ppid != initial_ppid:
            _parent_gone(f"re-parented from pid {initial_ppid} to {ppid}")
        if not _pid_alive(parent_pid):
            _parent_gone(f"pid {parent_pid} no longer exists")


def parse_parent_pid(env: Mapping[str, str]) -> int | None:
    raw = env.get(ENV_PARENT_PID, "").strip()
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        eprint(f"ignoring {ENV_PARENT_PID}={raw!r}: not an integer")
        return None
    return pid if pid > 0 else None


def start_parent_watch(parent_pid: int | None = None, watch_stdin: bool | None = None,
                       env: Mapping[str, str] | None = None) -> None:
    """Start the parent-death watchers once per process (later calls are no-ops).

    stdin EOF counts as death only when ``POSTTRAIN_WATCH_STDIN=1`` (stdin may be /dev/null).
    The pid watcher exits when ``POSTTRAIN_PARENT_PID`` no longer exists or when this process is
    re-parented (its direct parent died). Not on Windows (os.kill(pid, 0) would kill there).
    """
    global _watch_started
    env = os.environ if env is None else env
    if watch_stdin is None:
        watch_stdin = env.get(ENV_WATCH_STDIN, "") == "1"
    if parent_pid is None:
        parent_pid = parse_parent_pid(env)
    with _watch_lock:
        if _watch_started:
            return
        _watch_started = True
    if watch_stdin:
        threading.Thread(target=_watch_stdin, name="posttrain-stdin-watch", daemon=True).start()
    if parent_pid is not None and os.name == "posix":
        threading.Thread(target=_watch_parent_pid, args=(parent_pid,), name="posttrain-parent-watch",
                         daemon=True).start()
