"""One table of every benchmark target, read from bench/results/*.json (bench/run-all.sh ends with it).

Each results file should carry `targets: [{name, value, baseline, ratio, target, met, unit}]`.
bridge.json (written by bench/bridge.mjs) predates that shape: its `targets` is an object of
limits and its numbers sit in `summary`; it is read as it is.

    .venv/bin/python bench/lib/summary.py [--dir bench/results] [--since EPOCH_S]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, table  # noqa: E402


def bridge_targets(d: dict) -> list[dict]:
    s, t = d.get("summary") or {}, d.get("targets") or {}
    out = []
    ev, p99 = s.get("events_per_s") or {}, s.get("rtt_p99_ms") or {}
    if ev:
        lim = t.get("throughput_ratio_min")
        out.append({"name": "bridge events/s vs raw sockets", "value": ev.get("bridge"), "baseline": ev.get("raw"), "ratio": ev.get("ratio"),
                    "target": f">= {lim:g}" if lim is not None else None, "met": t.get("throughput_met"), "unit": "events/s"})
    if p99:
        lim = t.get("rtt_p99_ratio_max")
        out.append({"name": "bridge RTT p99 vs raw sockets", "value": p99.get("bridge"), "baseline": p99.get("raw"), "ratio": p99.get("ratio"),
                    "target": f"<= {lim:g}" if lim is not None else None, "met": t.get("rtt_p99_met"), "unit": "ms"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--since", type=float, default=None, help="mark results files older than this (epoch seconds) as stale")
    a = ap.parse_args()
    rows = []
    for f in sorted(Path(a.dir).glob("*.json")):
        if f.name.endswith(".raw.json"):
            continue
        try:
            d = json.loads(f.read_text())
        except ValueError:
            print(f"{f.name}: not JSON, skipped", file=sys.stderr)
            continue
        targets = d.get("targets")
        if not isinstance(targets, list):
            targets = bridge_targets(d) if (d.get("benchmark") or d.get("bench")) == "bridge" else []
        stale = a.since is not None and f.stat().st_mtime < a.since
        when = time.strftime("%m-%d %H:%M", time.localtime(f.stat().st_mtime)) + (" STALE" if stale else "")
        for t in targets:
            unit = t.get("unit") or ""
            rows.append([t.get("name"), t.get("value"), t.get("baseline"), t.get("ratio"), t.get("target"), t.get("met"), unit, f"{f.name} {when}"])
    if not rows:
        print("no results in", a.dir)
        return
    print("\nAll targets (ratio = measured / baseline from the same run; `target` applies to the ratio, or to the value when there is no baseline)")
    print(table(["name", "measured", "baseline", "ratio", "target", "met", "unit", "file"], rows))


if __name__ == "__main__":
    main()
