"""Reward functions for GRPO (and the RLHF policy phase): built-ins and user functions.

Every reward function has TRL's signature ``f(prompts, completions, **columns) -> list[float]``:
``completions`` are strings (or, for chat rows, lists of messages whose last one is the
assistant's), and ``columns`` holds every other dataset column, one value per completion, plus
what TRL adds (``completion_ids``, ``trainer_state``, ``log_metric``, ...). Unknown keyword
arguments are ignored.

Built-ins (config ``stages.grpo.reward_funcs: [{name, weight, args}]``):

``exact_answer``  args: ``field`` (default ``"answer"``)
    1.0 when the completion's answer equals the row's answer column, else 0.0. The answer of a
    text is the number after the first ``####`` when the text has one (GSM8K style, "#### 72"),
    else its last number. The same rule reads the answer column, so it may hold a bare number
    (``"72"`` or ``72``) or GSM8K solution text ending in ``"#### 72"``. Numbers compare as
    decimals: thousands commas are stripped (``1,080`` == ``1080``), negatives are kept
    (``-5``), and ``3.0`` == ``3``. A row whose answer has no number scores 0.0.

``format``  args: ``partial`` (default ``0.0``)
    1.0 when the completion contains ``#### <number>``. A completion without that marker that
    still contains a number scores ``partial`` (``partial: 0.5`` gives half credit for a bare
    number; off by default because any digit would earn it); anything else scores 0.0.

``length``  args: ``target`` (required, > 0), ``unit`` (``"tokens"``, the default, or ``"chars"``),
``tolerance`` (default 0)
    ``max(0, 1 - max(0, |n - target| - tolerance) / target)`` where ``n`` is the completion's
    length in completion TOKENS (the ids TRL generated; ``unit: chars`` counts characters of the
    completion text instead). 1.0 within ``tolerance`` of the target, falling linearly to 0.0 at
    a distance of ``tolerance + target`` (an empty completion, or one twice the target).

User functions: ``name: "package.module:function"``. The named top-level module (or package) is
looked up in the working folder first, then where Python would find it; while it imports, the
working folder is LAST on the import path, so its sibling helper modules import but never shadow an
installed library (a ``datasets.py`` next to it stays unused). Nothing else in the sidecar sees the
working folder: it runs with ``PYTHONSAFEPATH``. ``args`` are passed to it as keyword arguments on
every call, next to TRL's columns. Every function is resolved before training starts; a bad path
or a non-callable raises ``StageError("reward_import_failed")``.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Sequence

from .connection import StageError
from .reward_guard import guarded

# A number: optional minus (not part of a range like "3-5"), digits with optional thousands commas
# ("1,080"), optional decimals. The trailing "." of a sentence is not a decimal point.
_NUMBER = r"(?<![\d.])-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
_MARKED_RE = re.compile(r"####\s*(" + _NUMBER + r")")

BUILTIN_NAMES = ("exact_answer", "format", "length")


# --------------------------------------------------------------------------------------------
# Text helpers


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or (chat rows) the content of its last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        if not completion:
            return ""
        return completion_text(completion[-1])
    return "" if completion is None else str(completion)


def parse_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


def extract_answer(text: Any) -> Decimal | None:
    """The answer a text gives: the number after the first "####" when the text has a "####"
    marker, else the last number in it; None when there is none. Non-strings (a bare int or
    float from JSON) are read as their decimal text."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        try:
            return Decimal(str(text))
        except InvalidOperation:  # nan, inf
            return None
    text = str(text)
    if "####" in text:
        m = _MARKED_RE.search(text)
        return parse_number(m.group(1)) if m else None
    numbers = _NUMBER_RE.findall(text)
    return parse_number(numbers[-1]) if numbers else None


def _column(columns: dict, field: str, n: int, func: str) -> list:
    values = columns.get(field)
    if values is None:
        have = sorted(k for k in columns if k not in _TRL_EXTRAS)
        raise KeyError(f"reward function {func} reads column {field!r}, which the prompt rows lack (columns: {have})")
    if len(values) != n:
        raise ValueError(f"reward function {func}: column {field!r} has {len(values)} values for {n} completions")
    return list(values)


_TRL_EXTRAS = {"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


# --------------------------------------------------------------------------------------------
# Built-ins


def exact_answer(prompts: Sequence[Any], completions: Sequence[Any], field: str = "answer", **columns) -> list[float]:
    answers = _column(columns, field, len(completions), "exact_answer")
    out = []
    for completion, answer in zip(completions, answers):
        want = extract_answer(answer)
        got = extract_answer(completion_text(completion))
        out.append(1.0 if want is not None and got is not None and got == want else 0.0)
    return out


def format_reward(prompts: Sequence[Any], completions: Sequence[Any], partial: float = 0.0, **columns) -> list[float]:
    out = []
    for completion in completions:
        text = completion_text(completion)
        if _MARKED_RE.search(text):
            out.append(1.0)
        elif _NUMBER_RE.search(text):
            out.append(float(partial))
        else:
            out.append(0.0)
    return out


format_reward.__name__ = "format"


def length_reward(prompts: Sequence[Any], completions: Sequence[Any], target: float = 0, unit: str = "tokens",
                  tolerance: float = 0, completion_ids: Sequence[Sequence[int]] | None = None, **columns) -> list[float]:
    if unit == "tokens":
        if completion_ids is None:
            raise ValueError("length reward with unit 'tokens' needs completion_ids (TRL passes them); use unit 'chars' otherwise")
        lengths = [len(ids) for ids in completion_ids]
    else:
        lengths = [len(completion_text(c)) for c in completions]
    target = float(target)
    tolerance = float(tolerance)
    return [max(0.0, 1.0 - max(0.0, abs(n - target) - tolerance) / target) for n in lengths]


length_reward.__name__ = "length"

BUILTINS: dict[str, Callable[..., list[float]]] = {
    "exact_answer": exact_answer,
    "format": format_reward,
    "length": length_reward,
}


def _check_builtin_args(name: str, args: dict) -> None:
    allowed = {"exact_answer": {"field"}, "format": {"partial"}, "length": {"target", "unit", "tolerance"}}[name]
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise StageError("bad_reward_args", f"reward function {name}: unknown args {unknown} (allowed: {sorted(allowed)})")
    if name == "exact_answer" and not isinstance(args.get("field", "answer"), str):
        raise StageError("bad_reward_args", "reward function exact_answer: args.field must be a column name (a string)")
    if name == "format":
        p = args.get("partial", 0.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise StageError("bad_reward_args", f"reward function format: args.partial must be a number in [0, 1], got {p!r}")
    if name == "length":
        t = args.get("target")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise StageError("bad_reward_args", f"reward function length needs args.target, a positive number of tokens (or chars with unit: chars); got {t!r}")
        if args.get("unit", "tokens") not in ("tokens", "chars"):
            raise StageError("bad_reward_args", f"reward function length: args.unit must be 'tokens' or 'chars', got {args.get('unit')!r}")
        tol = args.get("tolerance", 0)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
            raise StageError("bad_reward_args", f"reward function length: args.tolerance must be a number >= 0, got {tol!r}")


# --------------------------------------------------------------------------------------------
# Resolution


def import_reward(path: str) -> Callable:
    """Import ``"package.module:function"``; StageError("reward_import_failed") when that fails."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise StageError("reward_import_failed", f"reward function {path!r} is neither a built-in ({', '.join(BUILTIN_NAMES)}) nor an import path 'module:function'")
    cwd = os.getcwd()
    try:
        module = _import_from_folder(module_name, cwd)
    except BaseException as e:  # noqa: BLE001 - a user module may raise anything (or sys.exit) at import
        raise StageError("reward_import_failed", f"cannot import reward function {path!r}: {type(e).__name__}: {e} (working directory {cwd})") from e
    func = module
    for part in attr.split("."):
        try:
            func = getattr(func, part)
        except AttributeError as e:
            raise StageError("reward_import_failed", f"cannot import reward function {path!r}: module {module_name} ({getattr(module, '__file__', '?')}) has no attribute {attr!r}") from e
    if not callable(func):
        raise StageError("reward_import_failed", f"reward function {path!r} is a {type(func).__name__}, not a callable")
    return func


def _import_from_folder(name: str, folder: str):
    """Import ``name`` with its top-level module taken from ``folder`` when it is there, and
    ``folder`` appended (not prepended) to ``sys.path`` only during the import."""
    top = name.partition(".")[0]
    with _last_on_path(folder):
        if top not in sys.modules:
            spec = importlib.machinery.PathFinder.find_spec(top, [folder])
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules[top] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(top, None)
                    raise
        return importlib.import_module(name)


@contextlib.contextmanager
def _last_on_path(folder: str):
    added = folder not in sys.path
    if added:
        sys.path.append(folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def resolve_reward_funcs(specs: Sequence[dict], *, timeout_s: float | None = None, conn: Any = None,
                         warn: Callable[[str], None] | None = None) -> tuple[list[Callable], list[float]]:
    """Config ``reward_funcs`` → (callables for GRPOTrainer, weights for GRPOConfig.reward_weights).

    Names in the metrics: a built-in's name, or the import path with ":" as "." for a user
    function; a repeated name gets a suffix (``length_2``) so the per-function metrics stay apart.
    Each is wrapped by reward_guard.guarded (named errors, checked values, ``timeout_s`` per call).
    """
    if not specs:
        raise StageError("bad_reward_args", "reward_funcs is empty: GRPO needs at least one reward function")
    funcs: list[Callable] = []
    weights: list[float] = []
    seen: dict[str, int] = {}
    for spec in specs:
        name = spec["name"]
        args = dict(spec.get("args") or {})
        if name in BUILTINS:
            _check_builtin_args(name, args)
            func, label = BUILTINS[name], name
        else:
            func, label = import_reward(name), name.replace(":", ".")
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}_{seen[label]}"
        funcs.append(guarded(func, label, name, args, timeout_s=timeout_s, conn=conn, warn=warn))
        weight = spec.get("weight", 1.0)
        weights.append(float(1.0 if weight is None else weight))
    return funcs, weights


def required_columns(specs: Sequence[dict]) -> list[str]:
    """Dataset columns the built-ins read (mirrors the controller's rewardColumns)."""
    cols = []
    for spec in specs:
        if spec["name"] == "exact_answer":
            field = (spec.get("args") or {}).get("field", "answer")
            if field not in cols:
                cols.append(field)
    return cols


def check_columns(specs: Sequence[dict], column_names: Sequence[str]) -> None:
    """Fail before training when a built-in reads a column the prompt rows lack."""
    missing = [c for c in required_columns(specs) if c not in column_names]
    if missing:
        raise StageError(
            "data_missing_column",
            f"reward function exact_answer reads column(s) {missing}, which the prompt rows lack (columns: {sorted(column_names)}); "
            "set args.field or map the column in data.<stage>.columns",
        )
