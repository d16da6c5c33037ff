"""Typed failures of the sidecar, and how any exception becomes a stage.result error block.

``StageError`` is an in-band stage failure with a code the controller shows; ``StageCancelled``
ends a stage as cancelled from inside code that never reached a step boundary; ``ConfigError`` is
an environment the controller should have set. ``error_block`` maps anything else (an OOM, a full
disk or file-size limit, a bug) to ``{code, message, traceback, retryable}``.
"""
from __future__ import annotations

import errno
import traceback
from typing import Any


class ConfigError(Exception):
    """The environment the controller should have set is missing or malformed."""


class StageError(Exception):
    """A typed, in-band stage failure: becomes ``stage.result{status: error, error{...}}``."""

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = bool(retryable)


class StageCancelled(Exception):
    """The stage was stopped inside code that never reached a step boundary (a reward function
    interrupted by a cancel): becomes ``stage.result{status: cancelled}``; the stage's last complete
    checkpoint is where a resume starts."""


# Write failures a user can fix, by errno: (code, what happened, the fix). A resume continues from
# the last complete checkpoint (one cut by the failure has no completion marker and is skipped).
_WRITE_ERRORS = {
    errno.ENOSPC: ("disk_full", "the disk is full", "free some space (or set runtime.runs_dir on a bigger disk), then resume"),
    errno.EDQUOT: ("disk_full", "the disk quota is exceeded", "free some space within your quota, then resume"),
    errno.EFBIG: ("file_too_large", "a file reached the file-size limit (ulimit -f)", "raise it (`ulimit -f unlimited`), then resume"),
    errno.EROFS: ("not_writable", "the file system is read-only", "set runtime.runs_dir on a writable file system"),
    errno.EACCES: ("not_writable", "permission denied", "make the run folder writable for this user, then resume"),
}


def write_error(exc: BaseException) -> dict[str, Any] | None:
    """A user-fixable write failure in ``exc`` or its causes, as {code, message}; else None.

    torch's checkpoint writer hides the errno ("unexpected pos 102080 vs 101968", "PytorchStreamWriter
    failed writing file"): then the file-size limit is the likely cause when one is set."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRORS:
            code, what, fix = _WRITE_ERRORS[seen.errno]
            where = f" ({seen.filename})" if getattr(seen, "filename", None) else ""
            return {"code": code, "message": f"writing failed: {what}{where}. Fix: {fix}."}
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("unexpected pos" in text or "failed writing file" in text):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            code, what, fix = _WRITE_ERRORS[errno.EFBIG]
            return {"code": code, "message": f"writing a checkpoint failed: {what}, which is {soft} bytes here. Fix: {fix}."}
        return {"code": "write_failed", "message": f"writing a checkpoint failed ({text.strip()[:120]}); is the disk full? "
                "Fix: free some space, then resume."}
    return None


def error_block(exc: BaseException) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, StageError):
        return {"code": exc.code, "message": exc.message, "traceback": tb, "retryable": exc.retryable}
    disk = write_error(exc)
    if disk is not None:
        return {**disk, "traceback": tb, "retryable": True}
    name = type(exc).__name__
    if "OutOfMemoryError" in name:
        return {"code": "out_of_memory", "message": f"{name}: {exc}", "traceback": tb, "retryable": False}
    return {"code": "internal_error", "message": f"{name}: {exc}", "traceback": tb, "retryable": False}
