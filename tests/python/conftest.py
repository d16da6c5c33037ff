"""Pytest plays the controller: a real ROUTER socket, real sidecar subprocesses, no mocks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from posttrain_sidecar.client import Controller, SidecarProc  # noqa: F401 - tests import SidecarProc from here

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def controller(tmp_path):
    ctl = Controller(tmp_path)
    try:
        yield ctl
    finally:
        ctl.close()


def metrics_of(events: list[dict[str, Any]], type: str = "event.metric") -> list[dict[str, Any]]:
    return [m["body"] for m in events if m["type"] == type]


def pytest_sessionstart(session):
    """A run starts the sidecar's reliability rows afresh (tests/python/reliability.py)."""
    from reliability import ROWS

    ROWS.unlink(missing_ok=True)
