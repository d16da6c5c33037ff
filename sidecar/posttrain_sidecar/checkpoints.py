"""Checkpoint completeness, shared by the fake and (later) the real trainers.

A checkpoint directory counts as complete only when its completion marker exists. The marker is
written LAST and atomically (temp file + os.replace), so a crash mid-save leaves a checkpoint that
``--resume`` skips instead of one it half-loads.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

COMPLETE_MARKER = "posttrain-complete.json"
CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_complete_marker(checkpoint_dir: str | os.PathLike[str], **info: Any) -> Path:
    """Mark ``checkpoint_dir`` complete. Call after every other file of the checkpoint is written.
    ``sha256`` holds every file's digest (subfolders too, by relative path): a resume names a file
    damaged since and falls back to the previous complete checkpoint (artifacts/checkpoints.ts).
    Cost: one read of the checkpoint (a LoRA checkpoint is a few MB)."""
    d = Path(checkpoint_dir)
    files = sorted(p.name for p in d.iterdir() if p.name != COMPLETE_MARKER and not p.name.startswith("."))
    digests = {str(p.relative_to(d)): file_sha256(p) for p in sorted(d.rglob("*"))
               if p.is_file() and p.name != COMPLETE_MARKER and not p.name.startswith(".")}
    marker = d / COMPLETE_MARKER
    atomic_write_json(marker, {"complete": True, "written_at": time.time(), "files": files, "sha256": digests, **info})
    return marker


def clear_complete_marker(checkpoint_dir: str | os.PathLike[str]) -> None:
    """Before (re)writing a checkpoint in place: it is incomplete until the marker is written again."""
    try:
        os.unlink(Path(checkpoint_dir) / COMPLETE_MARKER)
    except FileNotFoundError:
        pass


def is_complete(checkpoint_dir: str | os.PathLike[str]) -> bool:
    return (Path(checkpoint_dir) / COMPLETE_MARKER).is_file()


def checkpoint_step(checkpoint_dir: str | os.PathLike[str]) -> int | None:
    m = _CHECKPOINT_RE.match(Path(checkpoint_dir).name)
    return int(m.group(1)) if m else None


def latest_complete(checkpoints_dir: str | os.PathLike[str]) -> Path | None:
    """The complete ``checkpoint-<step>`` under ``checkpoints_dir`` with the highest step, or None."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for child in root.iterdir():
        step = checkpoint_step(child)
        if step is None or not child.is_dir() or not is_complete(child):
            continue
        if best is None or step > best[0]:
            best = (step, child)
    return best[1] if best else None


def rotate(checkpoints_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete older checkpoints so that the newest ``keep`` COMPLETE ones remain; incomplete ones
    older than the newest complete one go too (a crash's leftovers). Called only after the newest
    checkpoint's marker is written: transformers rotates before, so with ``save_total_limit: 1`` a
    kill between its rotation and our marker left no complete checkpoint at all."""
    import shutil

    root = Path(checkpoints_dir)
    if keep < 1 or not root.is_dir():
        return []
    found = sorted((step, child) for child in root.iterdir()
                   if child.is_dir() and (step := checkpoint_step(child)) is not None)
    complete = [(step, c) for step, c in found if is_complete(c)]
    if not complete:
        return []
    kept = {c for _, c in complete[-keep:]}
    oldest_kept = min(step for step, c in complete if c in kept)
    removed = []
    for step, c in found:
        if c not in kept and step < oldest_kept:
            shutil.rmtree(c, ignore_errors=True)
            removed.append(c)
    return removed
