"""The REAL sidecar: ``python -m posttrain_sidecar`` (or the ``posttrain-sidecar`` script).

Says hello fast (no torch import before hello), then serves stage requests by dispatching on the
stage name through ``STAGE_HANDLERS``. Trainers register there as ``"module:function"`` strings
(imported lazily, on the first request for that stage) or as callables
``handler(request_body, conn) -> (status, summary)``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Union

from .connection import Connection, StageError, serve

KNOWN_STAGES = ("sft", "dpo", "grpo", "rlhf")

# stage name -> "package.module:function" or a callable; imported on first use, so hello never
# waits for torch.
STAGE_HANDLERS: dict[str, Union[str, Callable[[dict, Connection], Any]]] = {
    "sft": "posttrain_sidecar.stages.sft:run",
    "dpo": "posttrain_sidecar.stages.dpo:run",
    "grpo": "posttrain_sidecar.stages.grpo:run",
    "rlhf": "posttrain_sidecar.stages.rlhf:run",
}


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
    return _resolve(target)(request, conn)


def preflight(body: dict[str, Any], conn: Connection) -> list[dict[str, Any]]:
    """Answer ``preflight {config, stages}`` before the first stage (no model weights loaded)."""
    from .preflight import check

    return check(body, STAGE_HANDLERS)


def main() -> None:
    sys.stdout = sys.stderr  # libraries that print must not write to the controller's stdout pipe
    sys.exit(serve(handle, sorted(STAGE_HANDLERS), fake=False, preflight=preflight))


if __name__ == "__main__":
    main()
