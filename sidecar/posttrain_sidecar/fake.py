"""The FAKE sidecar: speaks the real protocol, trains nothing, plays a script.

    POSTTRAIN_FAKE_SCRIPT='{"stages": {"*": {"steps": 10}}}' python -m posttrain_sidecar.fake
    POSTTRAIN_FAKE_SCRIPT=@/path/to/script.json              python -m posttrain_sidecar.fake

Script fields (all optional):
  start_delay_s        sleep before connecting (slow start)
  exit_before_hello    {code, stderr}: print ``stderr`` to stderr and exit with ``code`` before hello
  protocol             the protocol string to announce in hello instead of PROTOCOL_VERSION ("1.1")
  no_hello             connect but never say hello (exits 0 on shutdown, 70 when the parent dies)
  ignore_cancel        keep playing when cancel arrives
  ack_timeout_s        how long to wait for hello.ack before exiting 2 (default 30)
  capabilities         stage names to announce (default sft, dpo, grpo, rlhf)
  preflight_problems   problems to answer ``preflight`` with ([{stage, code, message, severity, fix}];
                       default none: ok)
  stages               {<stage> or "*": {steps: 10, step_time_s: 0.01, save_every: 5,
                        crash_at_step: k, hang_at_step: k, error: {code, message, retryable},
                        metrics_per_step: 1, values: {}, values_from: {}}}
                       step_time_s 0: no sleep between steps; save_every 0: no periodic checkpoint
                       (the final one is still written), as bench/bridge.mjs uses it.
                       values {"<step>": {key: value}}: extra or replaced metric values at exactly
                       that step; values_from {"<step>": {key: value}}: the same for that step and
                       every later one (later starts override earlier ones; ``values`` wins over
                       both). A value is a number or "nan", "inf", "-inf" (JSON has no NaN; the
                       wire carries it as a float), so the controller's health rules can be
                       driven end to end, e.g. {"values": {"3": {"train/loss": "nan"}}}.

A stage plays deterministically (so resume can be checked): step s emits
``train/loss = round(1/(1+s), 6)``, ``train/learning_rate = 1e-3``, ``train/epoch = round(s/steps, 6)``,
with ``values`` / ``values_from`` applied on top. No torch import here.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from .catalogue import STAGE_NAMES
from .checkpoints import atomic_write_json, clear_complete_marker, is_complete, write_complete_marker
from .connection import (
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    Connection,
    StageError,
    eprint,
    start_parent_watch,
)
from .server import serve

ENV_FAKE_SCRIPT = "POSTTRAIN_FAKE_SCRIPT"
EXIT_CRASH = 3
FAKE_STAGES = list(STAGE_NAMES)
STAGE_DEFAULTS: dict[str, Any] = {
    "steps": 10,
    "step_time_s": 0.01,
    "save_every": 5,
    "crash_at_step": None,
    "hang_at_step": None,
    "error": None,
    "metrics_per_step": 1,
    "values": None,
    "values_from": None,
    "logs": None,  # [{level, message}] sent at the stage's start
}


def load_script(env: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env  # type: ignore[assignment]
    raw = env.get(ENV_FAKE_SCRIPT, "").strip()
    if not raw:
        return {}
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text(encoding="utf-8")
    script = json.loads(raw)
    if not isinstance(script, dict):
        raise ValueError("the fake script must be a JSON object")
    return script


def stage_script(script: dict[str, Any], stage: str) -> dict[str, Any]:
    stages = script.get("stages") or {}
    own = stages.get(stage)
    if own is None:
        own = stages.get("*", {})
    merged = dict(STAGE_DEFAULTS)
    merged.update(own or {})
    return merged


def metric_values(step: int, steps: int) -> dict[str, float]:
    return {
        "train/loss": round(1.0 / (1.0 + step), 6),
        "train/learning_rate": 1e-3,
        "train/epoch": round(step / steps, 6) if steps else 0.0,
    }


def parse_step_values(raw: Any, field: str) -> dict[int, dict[str, float]]:
    """``{"<step>": {key: number | "nan" | "inf" | "-inf"}}`` -> {step: {key: float}}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{field} must be an object {{\"<step>\": {{key: value}}}}, got {type(raw).__name__}")
    out: dict[int, dict[str, float]] = {}
    for step, values in raw.items():
        try:
            k = int(step)
        except (TypeError, ValueError):
            raise ValueError(f"{field}: {step!r} is not a step number") from None
        if not isinstance(values, dict):
            raise ValueError(f"{field}.{step} must be an object of metric values")
        row: dict[str, float] = {}
        for key, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ValueError(f"{field}.{step}.{key}: expected a number or \"nan\"/\"inf\"/\"-inf\", got {v!r}")
            try:
                row[str(key)] = float(v)  # float() reads "nan", "inf", "-inf", "Infinity"
            except ValueError:
                raise ValueError(f"{field}.{step}.{key}: {v!r} is not a number") from None
        out[k] = row
    return out


def scripted_values(step: int, at: dict[int, dict[str, float]], start: dict[int, dict[str, float]]) -> dict[str, float]:
    """What the script puts on top of the base metrics at ``step``."""
    merged: dict[str, float] = {}
    for k in sorted(s for s in start if s <= step):
        merged.update(start[k])
    merged.update(at.get(step, {}))
    return merged


def fake_safetensors() -> bytes:
    """A valid safetensors file holding no tensors (8-byte header length + JSON header)."""
    header = json.dumps({"__metadata__": {"format": "pt", "posttrain_fake": "true"}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def write_checkpoint(stage_dir: Path, stage: str, step: int) -> Path:
    ckpt = stage_dir / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True, exist_ok=True)
    clear_complete_marker(ckpt)
    atomic_write_json(ckpt / "trainer_state.json", {"global_step": step, "fake": True})
    (ckpt / "adapter_model.safetensors").write_bytes(fake_safetensors())
    write_complete_marker(ckpt, step=step, stage=stage, fake=True)
    return ckpt


def read_resume_step(resume_from: str) -> int:
    path = Path(resume_from)
    state_file = path / "trainer_state.json"
    if not path.is_dir():
        raise StageError("bad_checkpoint", f"resume_from {resume_from} is not a directory")
    if not is_complete(path):
        raise StageError("bad_checkpoint", f"checkpoint {resume_from} is incomplete (no completion marker)")
    try:
        step = json.loads(state_file.read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError("bad_checkpoint", f"cannot read {state_file}: {exc}") from None
    if not isinstance(step, int) or step < 0:
        raise StageError("bad_checkpoint", f"{state_file}: global_step {step!r} is not a step")
    return step


def crash(step: int, conn: Connection) -> None:
    conn.flush(1.0)  # what happened before the crash reaches the controller (deterministic tests)
    time.sleep(0.05)
    sys.stderr.write(
        f"fake: crashing at step {step}\n"
        "Traceback (most recent call last):\n"
        f'  File "{__file__}", line 1, in play_stage\n'
        "    raise RuntimeError(\"fake crash\")\n"
        f"RuntimeError: fake crash at step {step}\n"
    )
    sys.stderr.flush()
    os._exit(EXIT_CRASH)


def hang(step: int, conn: Connection) -> None:
    conn.flush(1.0)
    conn.freeze()
    eprint(f"fake: hanging at step {step} (no more messages, no heartbeats)")
    while True:
        time.sleep(3600)


def make_handler(script: dict[str, Any]):
    ignore_cancel = bool(script.get("ignore_cancel", False))

    def handle(request: dict[str, Any], conn: Connection):
        stage = request["stage"]
        cfg = stage_script(script, stage)
        if cfg.get("error"):
            err = cfg["error"]
            raise StageError(str(err.get("code", "fake_error")), str(err.get("message", "fake error")),
                             bool(err.get("retryable", False)))
        return play_stage(request, conn, cfg, ignore_cancel)

    return handle


def play_stage(request: dict[str, Any], conn: Connection, cfg: dict[str, Any], ignore_cancel: bool):
    t0 = time.monotonic()
    stage = request["stage"]
    stage_dir = Path(request["stage_dir"])
    config = request.get("config") or {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    model_id = model.get("id")
    init_adapter = request.get("init_adapter")
    resume_from = request.get("resume_from")
    for entry in cfg.get("logs") or []:
        conn.log(str(entry.get("level", "info")), str(entry.get("message", "")), stage)
    steps = int(cfg["steps"])
    step_time = float(cfg["step_time_s"] or 0)
    save_every = int(cfg["save_every"] or 0)
    per_step = max(1, int(cfg["metrics_per_step"] or 1))
    crash_at = cfg.get("crash_at_step")
    hang_at = cfg.get("hang_at_step")
    try:
        at = parse_step_values(cfg.get("values"), "values")
        start_at = parse_step_values(cfg.get("values_from"), "values_from")
    except ValueError as exc:
        raise StageError("bad_fake_script", str(exc)) from None

    if init_adapter is not None and not Path(init_adapter).is_dir():
        raise StageError("missing_adapter", f"init_adapter {init_adapter} does not exist")
    start = read_resume_step(resume_from) if resume_from else 0

    conn.log("info", f"fake sidecar: stage {stage}, {steps} steps, starting at step {start}", stage)
    conn.state("loading_model", stage, message=f"fake model {model_id}")
    stage_dir.mkdir(parents=True, exist_ok=True)
    conn.state("training", stage)

    final: dict[str, float] = {}
    last_ckpt: tuple[int, Path] | None = None

    def summary(step: int) -> dict[str, Any]:
        return {
            "steps": step,
            "start_step": start,
            "final": dict(final),
            "init_adapter": init_adapter,
            "resumed_from": resume_from,
            "runtime_s": round(time.monotonic() - t0, 6),
            "fake": True,
        }

    def save(step: int) -> Path:
        nonlocal last_ckpt
        if last_ckpt is not None and last_ckpt[0] == step:
            return last_ckpt[1]
        path = write_checkpoint(stage_dir, stage, step)
        last_ckpt = (step, path)
        conn.checkpoint(stage, str(path), step)
        return path

    for s in range(start + 1, steps + 1):
        if step_time > 0:
            time.sleep(step_time)
        if crash_at is not None and s == int(crash_at):
            crash(s, conn)
        if hang_at is not None and s == int(hang_at):
            hang(s, conn)
        final = {**metric_values(s, steps), **scripted_values(s, at, start_at)}
        conn.metric(stage, s, final)
        for k in range(1, per_step):
            conn.metric(stage, s, {**final, "train/substep": k})
        if save_every > 0 and s % save_every == 0:
            save(s)
        if conn.cancel_requested.is_set() and not ignore_cancel:
            path = save(s)
            conn.state("cancelled", stage, message=f"cancelled at step {s}")
            return "cancelled", {**summary(s), "checkpoint": str(path)}

    end = max(start, steps)
    conn.state("saving", stage)
    if end > start:
        save(end)
    adapter = stage_dir / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    atomic_write_json(adapter / "adapter_config.json", {
        "base_model_name_or_path": model_id,
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        # What a real adapter's weights depend on: the stage's settings and the adapter it grew
        # from, so re-running a stage with other settings writes another adapter (lineage tests).
        "posttrain": {"stage": stage, "init_adapter": init_adapter, "fake": True,
                      "trained_with": (config.get("stages") or {}).get(stage)},
    })
    (adapter / "adapter_model.safetensors").write_bytes(fake_safetensors())
    conn.state("done", stage)
    return "ok", {**summary(end), "adapter": str(adapter)}


def main() -> int:
    sys.stdout = sys.stderr  # stdout stays silent
    try:
        script = load_script()
    except (OSError, ValueError) as exc:
        eprint(f"fake: bad {ENV_FAKE_SCRIPT}: {exc}")
        return EXIT_USAGE
    start_parent_watch()
    delay = float(script.get("start_delay_s") or 0)
    if delay > 0:
        time.sleep(delay)
    early = script.get("exit_before_hello")
    if early:
        text = early.get("stderr", "") if isinstance(early, dict) else ""
        if text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()
        code = early.get("code", 1) if isinstance(early, dict) else 1
        return int(code)
    try:
        conn = Connection().connect()
    except ConfigError as exc:
        eprint(f"cannot start: {exc}")
        return EXIT_USAGE
    if script.get("no_hello"):
        while not conn.shutdown_requested.wait(0.5):
            pass
        conn.close()
        return EXIT_OK
    capabilities = script.get("capabilities", FAKE_STAGES)
    return serve(
        make_handler(script),
        list(capabilities),
        fake=True,
        protocol=script.get("protocol"),
        ack_timeout_s=float(script.get("ack_timeout_s", 30.0)),
        conn=conn,
        preflight=lambda body, conn: list(script.get("preflight_problems") or []),
    )


if __name__ == "__main__":
    sys.exit(main())
