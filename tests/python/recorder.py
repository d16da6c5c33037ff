"""A stand-in for Connection that records what a stage sends, for in-process stage tests.

The real socket path is covered by the protocol tests and the end-to-end test; this lets a stage
be trained in-process and its metric stream asserted on directly.
"""
from __future__ import annotations

import threading


class Recorder:
    def __init__(self, cancel_at_step: int | None = None):
        self.metrics: list[tuple[str, int, dict]] = []
        self.logs: list[tuple[str, str]] = []
        self.states: list[str] = []
        self.checkpoints: list[tuple[str, int]] = []
        self.cancel_requested = threading.Event()
        self.cancel_at_step = cancel_at_step

    def metric(self, stage, step, values):
        self.metrics.append((stage, int(step), dict(values)))
        if self.cancel_at_step is not None and step >= self.cancel_at_step:
            self.cancel_requested.set()

    def log(self, level, message, stage=None):
        self.logs.append((level, message))

    def state(self, state, stage=None, message=None):
        self.states.append(state)

    def checkpoint(self, stage, path, step):
        self.checkpoints.append((str(path), int(step)))

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(step, v[key]) for _, step, v in self.metrics if key in v]
