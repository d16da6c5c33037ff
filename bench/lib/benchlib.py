"""Shared pieces of the benchmarks (bench/pipeline.py, throughput.py, real.py, scaling.py).

Run with the sidecar's interpreter (.venv/bin/python): it reads package versions from there
without importing torch. Nothing here is installed beyond `make setup`.

Results files share one shape, read by bench/run-all.sh:
    {"bench": name, "machine": {...}, "versions": {...}, "config": {...}, "reps": [...],
     "targets": [{"name", "value", "baseline", "ratio", "target", "met", "unit"}], ...}
`target` is a string such as "<= 1.10" (applies to `ratio` when there is one, else to `value`).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("POSTTRAIN_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
CLI = [os.environ.get("NODE", "node"), str(ROOT / "bin" / "posttrain.js")]
# The larger tiny model of the throughput and scaling benches (git-ignored, built offline).
TINY_256 = ROOT / "bench" / "models" / "tiny-256"
TINY_256_ARGS = ["--hidden", "256", "--layers", "4", "--heads", "4"]


def ensure_tiny_model(path: Path, build_args: list[str]) -> Path:
    """A tiny model built offline by scripts/build_smoke_model.py, unless `path` already holds one."""
    if not (path / "model.safetensors").is_file():
        print(f"building {path} (scripts/build_smoke_model.py {' '.join(build_args)}) ...", file=sys.stderr, flush=True)
        subprocess.run([PYTHON, str(ROOT / "scripts" / "build_smoke_model.py"), *build_args, str(path)],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return path


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "os": f"{platform.system()} {platform.release()}",
            "load_avg_at_start": os.getloadavg()}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "pyzmq"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["node"] = subprocess.run([CLI[0], "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["node"] = None
    return out


def target(name: str, value, baseline, ratio, op: str, limit: float, unit: str) -> dict:
    """One row of the common `targets` array; `met` compares `ratio` (or `value` without a baseline)."""
    x = ratio if ratio is not None else value
    met = None if x is None else (x <= limit if op == "<=" else x >= limit)
    return {"name": name, "value": value, "baseline": baseline, "ratio": ratio, "target": f"{op} {limit:g}", "met": met, "unit": unit}


def ratio(a, b):
    return a / b if a is not None and b else None


def write_results(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "met" if v else "MISSED"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


class Scratch:
    """A temp folder per measurement (runs dir, plain script output), removed afterwards, so disk
    state (existing checkpoints, page cache of earlier outputs) is the same for every repetition."""

    def __init__(self, tag: str):
        self.path = Path(tempfile.mkdtemp(prefix=f"posttrain-bench-{tag}-"))

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


class Watch:
    """Optional per-stage peak RSS of another process (the sidecar), from outside: at stage start
    write "5" to /proc/<pid>/clear_refs (resets VmHWM, Linux >= 4.0, same user), at stage end read
    VmHWM from /proc/<pid>/status. Costs two small file writes per stage, nothing in the child."""

    def __init__(self):
        self.pid = None
        self.peaks: dict[str, float] = {}

    def event(self, e: dict) -> None:
        ev = e.get("event")
        if ev == "sidecar" and e.get("state") == "ready" and str(e.get("detail") or "").startswith("pid "):
            self.pid = int(str(e["detail"]).split()[1])
        elif ev == "stage_start" and self.pid:
            try:
                Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            except OSError:
                pass
        elif ev == "stage_end" and self.pid:
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[e["stage"]] = int(line.split()[1]) / 1024
            except OSError:
                pass


def run_cli(args: list[str], env: dict | None = None, watch: Watch | None = None) -> dict:
    """Run the posttrain CLI with --json; returns wall time of the whole process, every event
    (with t0 so timestamps can be made relative), and the exit code. Events are read as they come
    (a Watch sees stage boundaries live)."""
    t0 = time.time()
    p = subprocess.Popen([*CLI, *args, "--json", "--progress", "none"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    events = []
    for line in p.stdout:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if watch:
            watch.event(e)
        events.append(e)
    err = p.stderr.read()
    rc = p.wait()
    wall = time.time() - t0
    if rc != 0:
        sys.exit(f"posttrain {' '.join(args)} failed (exit {rc}):\n{err[-3000:]}")
    return {"t0": t0, "wall_s": wall, "events": events}


def run_plain(args: list[str], report: Path) -> dict:
    t0 = time.time()
    p = subprocess.run([PYTHON, str(ROOT / "bench" / "plain_trl.py"), *args, "--report", str(report)], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"bench/plain_trl.py failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return {"t0": t0, "wall_s": wall, "report": json.loads(report.read_text())}


def first(events, pred):
    return next((e for e in events if pred(e)), None)
