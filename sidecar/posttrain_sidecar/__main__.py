"""The REAL sidecar: ``python -m posttrain_sidecar`` (or the ``posttrain-sidecar`` script).

Says hello fast (no torch import before hello), then serves stage requests by dispatching on the
stage name through ``STAGE_HANDLERS``. Trainers register there as ``"module:function"`` strings
(imported lazily, on the first request for that stage) or as callables
``handler(request_body, conn) -> (status, summary)``.
"""
from __future__ import annotations

import atexit
import importlib
import os
import sys
from typing import Any, Callable, Union

from .catalogue import STAGE_NAMES, handlers
from .connection import Connection, StageError
from .server import serve

KNOWN_STAGES = STAGE_NAMES

# stage name -> "package.module:function" (from the catalogue) or a callable (tests); imported on
# first use, so hello never waits for torch.
STAGE_HANDLERS: dict[str, Union[str, Callable[[dict, Connection], Any]]] = dict(handlers())


def _resolve(target: Union[str, Callable]) -> Callable:
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr or "run")


def handle(request: dict[str, Any], conn: Connection):
    stage = request["stage"]
    target = STAGE_HANDLERS.get(stage)
    if target is None:
        if stage in KNOWN_STAGES:
            raise StageError("not_implemented", f"stage {stage} has no trainer yet", retryable=False)
        known = ", ".join(KNOWN_STAGES)
        raise StageError("unknown_stage", f"unknown stage {stage!r} (known: {known})", retryable=False)
    from . import training  # light: torch and friends are imported inside its functions

    spent = training.sample_seconds()
    ret = _resolve(target)(request, conn)
    spent = training.sample_seconds() - spent
    if spent > 0 and isinstance(ret, tuple) and len(ret) == 2 and isinstance(ret[1], dict):
        # The before/after samples are a feature, not training: their cost is reported on its own.
        ret[1].setdefault("samples_s", round(spent, 4))
    return ret


def preflight(body: dict[str, Any], conn: Connection) -> list[dict[str, Any]]:
    """Answer ``preflight {config, stages}`` before the first stage (no model weights loaded)."""
    from .preflight import check

    return check(body, STAGE_HANDLERS)


def _forget_working_folder() -> None:
    """``python -m`` puts the working folder first on the import path, so a user's ``datasets.py``
    would be imported instead of the library. The controller starts us with PYTHONSAFEPATH=1
    (Python >= 3.11); on 3.10 drop that entry here, before any library is imported. Reward modules
    still import from the working folder (rewards.import_reward)."""
    if not getattr(sys.flags, "safe_path", False) and sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


def main() -> None:
    _forget_working_folder()
    sys.stdout = sys.stderr  # libraries that print must not write to the controller's stdout pipe
    from . import distributed

    # runtime.launcher accelerate/torchrun: this process becomes the launcher (exec, same pid),
    # which starts the ranks; each rank comes back here with RANK/WORLD_SIZE set.
    if distributed.should_launch(os.environ):
        distributed.exec_launcher()
    if distributed.world_size() > 1:
        code = distributed.serve_ranks(handle, sorted(STAGE_HANDLERS), preflight)
    else:
        code = serve(lambda body, conn: distributed.with_world_size(handle(body, conn), 1), sorted(STAGE_HANDLERS),
                     fake=False, preflight=preflight)
    if "torch" not in sys.modules:
        sys.exit(code)
    # With torch/transformers/trl loaded, interpreter teardown (finalising modules and objects, not
    # the atexit handlers, which take ~5 ms) costs ~1 s on 2 cores, and the controller waits for the
    # exit. By now serve() has flushed and closed the connection, and every stage wrote its files
    # atomically, so run the atexit handlers (logging, integrations), flush, and leave without it.
    # Trap: os._exit skips waiting for non-daemon threads; integrations are finished per stage
    # (training.finish_integrations), so nothing of ours is left running.
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe must not change the exit code
                pass
        os._exit(code)


if __name__ == "__main__":
    main()
