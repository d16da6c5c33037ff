"""The sidecar as N ranks under accelerate or torchrun (``runtime.launcher``).

The controller still spawns ``python -m posttrain_sidecar``, with ``POSTTRAIN_LAUNCHER`` set. That
process replaces itself (exec: same pid, so the controller's SIGTERM/SIGKILL reach the launcher)
with ``accelerate launch`` or ``torchrun``, which start N copies of ``-m posttrain_sidecar``:

* rank 0 speaks the protocol: the normal ``serve()`` with the real ``Connection`` (hello,
  heartbeats from its I/O thread, metrics, checkpoints, results).
* the other ranks never connect to the controller. Rank 0 broadcasts every stage request to them
  over a gloo process group of its own (``control``, separate from the trainers' DDP group, so it
  works beside NCCL), they run the same stage handler with a :class:`NullConnection` (drops
  events), and every rank reports how its stage ended; ranks that disagree exit non-zero.
* cancel: the controller's ``cancel`` reaches rank 0 only; at every step boundary all ranks
  all-reduce the flag (MAX) in ``StreamCallback.on_step_end``, so every rank stops at the same
  step and the checkpoint holds every rank's files before rank 0 marks it complete.
* failure: an untyped exception (or an out-of-memory) on any rank exits that rank non-zero; the
  launcher then tears the others down and exits non-zero, which the controller reports as a
  crashed sidecar (stage failed). Typed StageErrors that every rank raises alike (bad settings,
  missing data) stay in-band.

Only the main process writes posttrain's own files (adapter, samples, markers); see
:func:`is_main_process`. Trainer itself saves model/optimizer on rank 0 and RNG state per rank.
Nothing here imports torch at module level: a local sidecar's hello must stay fast.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

from .parent_watch import eprint, start_parent_watch

ENV_LAUNCHER = "POSTTRAIN_LAUNCHER"  # "accelerate" | "torchrun"; unset or "local" = one process
ENV_NUM_PROCESSES = "POSTTRAIN_NUM_PROCESSES"
ENV_ACCELERATE_CONFIG = "POSTTRAIN_ACCELERATE_CONFIG"  # absolute path of the accelerate YAML
ENV_LAUNCHED = "POSTTRAIN_LAUNCHED"  # set for the ranks, so they serve instead of launching again

LAUNCHERS = ("accelerate", "torchrun")
EXIT_RANK_FAILED = 1
# How long a non-zero rank waits for rank 0's next request: a run sends stages back to back, but
# `posttrain stage` may sit on a preflight; a dead rank 0 ends the wait at once (connection reset).
CONTROL_TIMEOUT = timedelta(hours=24)


def rank(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get("RANK", "0") or 0)


def world_size(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Whether this process writes posttrain's own files (global rank 0, or not distributed)."""
    return rank() == 0


def barrier(conn: Any) -> None:
    """Wait for every rank (a no-op with one process: the real Connection has no barrier)."""
    wait = getattr(conn, "barrier", None)
    if wait is not None:
        wait()


def should_launch(env: Mapping[str, str]) -> bool:
    """True in the process the controller spawned when a launcher is configured."""
    return env.get(ENV_LAUNCHER, "local") in LAUNCHERS and env.get(ENV_LAUNCHED) != "1"


# --------------------------------------------------------------------------------------------
# launching


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config_sets_port(config_file: str) -> bool:
    """A user's accelerate config that names a port or several machines keeps its own rendezvous."""
    import yaml

    try:
        data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False  # accelerate itself reports an unreadable file, with its own message
    return bool(data.get("main_process_port")) or int(data.get("num_machines") or 1) > 1


def launcher_command(env: Mapping[str, str], python: str | None = None) -> list[str]:
    """The argv that starts N ranks of ``-m posttrain_sidecar`` under the configured launcher."""
    python = python or sys.executable
    launcher = env.get(ENV_LAUNCHER)
    n = int(env.get(ENV_NUM_PROCESSES, "1") or 1)
    module = "posttrain_sidecar"
    if launcher == "torchrun":
        # --standalone: a local rendezvous on a free port, so two runs on one machine never collide.
        return [python, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", str(n),
                "-m", module]
    if launcher == "accelerate":
        config_file = env.get(ENV_ACCELERATE_CONFIG)
        if not config_file:
            raise SystemExit(f"{ENV_ACCELERATE_CONFIG} is not set (the controller passes the resolved runtime.accelerate_config)")
        cmd = [python, "-m", "accelerate.commands.launch", "--config_file", config_file, "--num_processes", str(n)]
        # accelerate's static rendezvous defaults to port 29500: two runs on one machine would meet.
        if not _config_sets_port(config_file):
            cmd += ["--main_process_port", str(_free_port())]
        return cmd + ["-m", module]
    raise SystemExit(f"unknown {ENV_LAUNCHER}={launcher!r} (expected one of {', '.join(LAUNCHERS)})")


def exec_launcher(env: Mapping[str, str] | None = None) -> NoReturn:
    """Replace this process with the launcher (same pid: the controller's signals reach it).

    A new session keeps a terminal Ctrl-C away from the launcher and the ranks (torchrun's agent
    would turn SIGINT into killing every rank): cancelling is the controller's call, through rank
    0. Ranks still die with the controller: rank 0 watches the controller's pid and stdin, every
    rank exits when the launcher dies (re-parenting), and the launcher stops the ranks on SIGTERM.
    """
    env = dict(os.environ if env is None else env)
    cmd = launcher_command(env)
    env[ENV_LAUNCHED] = "1"
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    eprint(f"starting {env.get(ENV_NUM_PROCESSES, '1')} ranks: {' '.join(cmd[1:])}")
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


# --------------------------------------------------------------------------------------------
# ranks


class Ranks:
    """This process's place among the ranks, and the control collectives (gloo, CPU objects)."""

    def __init__(self) -> None:
        import torch
        import torch.distributed as dist

        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._dist = dist
        self._torch = torch
        # Every rank creates it in the same order, right after the default group.
        self._group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)

    @classmethod
    def init(cls) -> "Ranks":
        """Join the default process group from the launcher's env (RANK, WORLD_SIZE, MASTER_*).

        Trainer/accelerate find it initialised and use it. GPUs: each rank first takes its own
        device (LOCAL_RANK), because the models are moved to "cuda" before any Trainer exists."""
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                backend = "cpu:gloo,cuda:nccl"
            else:
                backend = "gloo"
            dist.init_process_group(backend=backend)
        return cls()

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        self._dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any rank."""
        t = self._torch.tensor([1 if flag else 0], dtype=self._torch.int32)
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX, group=self._group)
        return bool(t.item())

    def barrier(self) -> None:
        self._dist.barrier(group=self._group)

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(out, obj, group=self._group)
        return out


class NullConnection:
    """What a non-zero rank's stage talks to: the Connection methods stages use, all silent.

    ``cancel_requested`` is the flag agreed at the last step boundary (:meth:`sync_cancel`)."""

    is_main_process = False

    def __init__(self, ranks: Ranks):
        self.ranks = ranks
        self.world_size = ranks.world_size
        self.cancel_requested = threading.Event()

    def sync_cancel(self) -> bool:
        if self.ranks.any(False):
            self.cancel_requested.set()
        return self.cancel_requested.is_set()

    def barrier(self) -> None:
        self.ranks.barrier()

    def state(self, *a: Any, **k: Any) -> None:
        return None

    def metric(self, *a: Any, **k: Any) -> bool:
        return False

    def log(self, *a: Any, **k: Any) -> None:
        return None

    def checkpoint(self, *a: Any, **k: Any) -> None:
        return None


class RankConnection:
    """Rank 0's view of the real Connection during a distributed stage: everything is forwarded,
    except ``cancel_requested``, which is set only where all ranks agreed on it (sync_cancel)."""

    is_main_process = True

    def __init__(self, conn: Any, ranks: Ranks):
        self._conn = conn
        self.ranks = ranks
        self.world_size = ranks.world_size
        self.cancel_requested = threading.Event()

    def sync_cancel(self) -> bool:
        if self.ranks.any(self._conn.cancel_requested.is_set()):
            self.cancel_requested.set()
        return self.cancel_requested.is_set()

    def barrier(self) -> None:
        self.ranks.barrier()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _die(stage: str | None, exc: BaseException) -> NoReturn:
    """An untyped failure on one rank: the others may be stuck in a collective with it, so the
    whole group must go (the launcher kills the rest and exits non-zero)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    eprint(f"rank {rank()}: stage {stage} failed; stopping every rank:\n{tb}")
    sys.stderr.flush()
    os._exit(EXIT_RANK_FAILED)


def _outcome(ret: Any) -> str:
    from .server import _normalise_return

    return _normalise_return(ret)[0]


def run_stage(handle: Callable[[dict, Any], Any], body: dict, conn: Any, ranks: Ranks) -> Any:
    """Run one stage on this rank; every rank then reports how it ended, and any disagreement (or
    an untyped failure, or running out of memory) stops every rank."""
    from .connection import StageError

    stage = body.get("stage")
    try:
        ret = handle(body, conn)
    except StageError as exc:
        if exc.code == "out_of_memory":  # one rank's, mid-training: the others wait in a collective
            _die(stage, exc)
        _agree(ranks, stage, f"error:{exc.code}")
        raise
    except Exception as exc:  # noqa: BLE001 - any rank's crash ends the group
        _die(stage, exc)
    _agree(ranks, stage, _outcome(ret))
    return ret


def _agree(ranks: Ranks, stage: str | None, outcome: str) -> None:
    outcomes = ranks.gather(outcome)
    if len(set(outcomes)) > 1:
        eprint(f"rank {ranks.rank}: stage {stage} ended differently on the ranks ({', '.join(outcomes)}); stopping every rank")
        sys.stderr.flush()
        os._exit(EXIT_RANK_FAILED)


def with_world_size(ret: Any, n: int) -> Any:
    """A handler's return value with ``world_size`` in its summary (summary.json records it)."""
    from .server import _normalise_return

    status, summary = _normalise_return(ret)
    return status, {**summary, "world_size": n}


def serve_ranks(handle: Callable[[dict, Any], Any], capabilities: list[str], preflight: Callable | None) -> int:
    """Entry point of every rank (see the module docstring). Returns the exit code."""
    from .connection import EXIT_USAGE, ConfigError, Connection, StageError
    from .server import serve

    if rank() != 0:
        # Not the controller's child: die with the launcher (re-parenting) or the controller (stdin).
        start_parent_watch()
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
        ranks = Ranks.init()
        while True:
            msg = ranks.broadcast(None)
            if not msg or msg[0] == "shutdown":
                return 0
            try:
                run_stage(handle, msg[1], NullConnection(ranks), ranks)
            except StageError:  # a typed error every rank agreed on: rank 0 reports it
                pass

    # Rank 0: hello first (the controller is waiting for it), then meet the other ranks.
    try:
        conn = Connection().connect()
    except ConfigError as exc:
        eprint(f"cannot start: {exc}")
        return EXIT_USAGE
    n = world_size()
    conn.hello(capabilities, extra={"world_size": n})
    ranks = Ranks.init()

    def stage(body: dict, real: Connection) -> Any:
        ranks.broadcast(("stage", body))
        return with_world_size(run_stage(handle, body, RankConnection(real, ranks), ranks), n)

    code = serve(stage, capabilities, conn=conn, say_hello=False, preflight=preflight)
    try:
        ranks.broadcast(("shutdown",))
    except Exception as exc:  # noqa: BLE001 - ranks already gone: nothing left to tell
        eprint(f"could not tell the other ranks to stop: {exc}")
    return code
