"""Rows of docs/RELIABILITY.md from the sidecar's tests, in the shape of tests/helpers/reliability.ts.

Written from what a test observed, BEFORE its assertions, so a failure shows as a failed row.
scripts/test.sh runs pytest first; the vitest run after it renders both files into the document."""
from __future__ import annotations

import json
from pathlib import Path

ROWS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability-python.jsonl"


def record_reliability(*, fault: str, stage: str, survived: bool, outcome: str, test: str, injected: int = 1, lost: int = 0) -> None:
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    row = {"fault": fault, "stage": stage, "injected": injected, "survived": injected if survived else 0, "lost": lost,
           "outcome": outcome, "test": test}
    with open(ROWS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
