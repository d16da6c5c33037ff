"""Calling a user's reward function: named errors, checked values, a time limit, and a way out.

Every reward function GRPO calls (built-in or ``module:function``) goes through :func:`guarded`.
One call:

- runs with ``conn.busy("reward function <path>")`` set: heartbeats (sent by the I/O thread, which
  keeps running whatever the main thread does) carry it, so the controller can name a main thread
  that stays there past ``runtime.stall_timeout_s`` and stop the process;
- is limited to ``timeout_s`` seconds (``stages.grpo.reward_timeout_s``; None: no limit): a SIGALRM
  timer interrupts Python code and blocking system calls in the main thread; past the limit the
  stage fails with ``StageError("reward_timeout")``;
- is interrupted by a cancel (Ctrl-C): the I/O thread sends SIGUSR1 to the main thread and the
  stage ends ``cancelled`` (``StageCancelled``) instead of waiting for a call that may never end;
- an exception becomes ``StageError("reward_failed")`` naming the function, the exception and its
  message (the traceback goes to sidecar.log);
- the result must hold one number (bool included) or None per completion: a non-list, a wrong
  length or a non-number is ``StageError("reward_bad_value")`` naming the first bad value and its
  completion index;
- a non-finite number (nan, inf) goes to TRL as None, which TRL reads as "does not apply", and is
  counted: the share of such completions in the call is logged as ``rewards/<name>/nonfinite``,
  which the controller's health rule ``reward_nonfinite`` watches (fatal by default: a function
  that only returns nan would otherwise train with every advantage 0 and loss 0, "successfully").
  The first one is named once, in a warning.

The interrupts are BaseExceptions, so a user's ``except Exception:`` does not swallow them.
Known limit: code that blocks those signals or never returns to the interpreter (a C extension's
loop) cannot be interrupted from inside; the controller's stall watchdog then stops the process.
Async reward functions (TRL runs them on its own event-loop thread) get the limit through
``asyncio.wait_for``, and no SIGUSR1 (it is delivered to the main thread only).
"""
from __future__ import annotations

import asyncio
import inspect
import math
import signal
import threading
from typing import Any, Callable

from .connection import StageCancelled, StageError


class _Interrupt(BaseException):
    """Raised inside the user's code by the signal handler; not an Exception on purpose."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class _Calls:
    """The call in progress in the main thread (None when none), and the handlers, set up once."""

    active: str | None = None
    installed = False


def _on_signal(signum, _frame) -> None:
    # A stray signal between calls (the timer fired as the call returned, a cancel just after it
    # ended) must do nothing: the handlers stay installed for the process's life for that reason.
    if _Calls.active is None:
        return
    raise _Interrupt("timeout" if signum == signal.SIGALRM else "cancel")


def _interrupt_main() -> None:
    """A cancel hook (runs on the I/O thread): interrupt the call in progress, if there is one."""
    main = threading.main_thread().ident
    if _Calls.active is not None and main is not None:
        signal.pthread_kill(main, signal.SIGUSR1)


def _install(conn: Any) -> bool:
    """Install the handlers (once) and this connection's cancel hook; False when not on the main
    thread (signals are delivered to it only)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _Calls.installed:
        signal.signal(signal.SIGALRM, _on_signal)
        signal.signal(signal.SIGUSR1, _on_signal)
        _Calls.installed = True
    hooks = getattr(conn, "on_cancel", None)
    if hooks is not None and _interrupt_main not in hooks:
        hooks.append(_interrupt_main)
    return True


def guarded(func: Callable, name: str, path: str, args: dict, *, timeout_s: float | None = None,
            conn: Any = None, warn: Callable[[str], None] | None = None) -> Callable:
    """``func`` with ``args`` bound, under ``name`` (TRL logs rewards/<__name__>/mean), called as the
    module docstring says. ``path`` is what the user wrote (``badrewards:score``), for messages."""
    named = [False]  # the first non-finite value was named already

    def finish(out: Any, n: int, columns: dict) -> list:
        clean, nonfinite = checked(out, n, path)
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            log_metric(f"rewards/{name}/nonfinite", len(nonfinite) / n if n else 0.0)
        if nonfinite and not named[0] and warn is not None:
            named[0] = True
            i, v = nonfinite[0]
            state = columns.get("trainer_state")
            step = f" at step {int(state.global_step) + 1}" if state is not None else ""
            warn(f"reward function {path} returned {v} for completion {i} of {n}{step}; a non-finite reward is dropped "
                 f"(TRL reads it as None) and counted in rewards/{name}/nonfinite")
        return clean

    if inspect.iscoroutinefunction(func):

        async def reward(prompts, completions, **columns):
            try:
                call = func(prompts, completions, **{**columns, **args})
                out = await (asyncio.wait_for(call, timeout_s) if timeout_s else call)
            except asyncio.TimeoutError:
                raise _timeout(path, timeout_s) from None
            except StageError:
                raise
            except Exception as e:  # noqa: BLE001 - the user's code may raise anything
                raise _failed(path, e) from e
            return finish(out, len(completions), columns)

    else:

        def reward(prompts, completions, **columns):
            signals = _install(conn)
            busy = getattr(conn, "busy", None)
            before = getattr(conn, "busy_with", None)
            if busy:
                busy(f"reward function {path}")
            _Calls.active = path
            try:
                if signals and timeout_s:
                    signal.setitimer(signal.ITIMER_REAL, float(timeout_s))
                out = func(prompts, completions, **{**columns, **args})
            except _Interrupt as i:
                if i.why == "timeout":
                    raise _timeout(path, timeout_s) from None
                raise StageCancelled(f"cancelled inside reward function {path}") from None
            except Exception as e:  # noqa: BLE001 - the user's code may raise anything
                raise _failed(path, e) from e
            finally:
                _Calls.active = None
                if signals and timeout_s:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if busy:
                    busy(before)
            return finish(out, len(completions), columns)

    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def checked(out: Any, n: int, path: str) -> tuple[list, list[tuple[int, float]]]:
    """(the rewards as TRL takes them, [(index, value) of each non-finite one]); StageError when
    ``out`` is not one number or None per completion."""
    if hasattr(out, "tolist") and not isinstance(out, (str, bytes)):
        out = out.tolist()  # numpy array, torch tensor
    if not isinstance(out, (list, tuple)):
        raise StageError("reward_bad_value", f"reward function {path} returned {_show(out)} (a {type(out).__name__}), not a list of "
                         f"{n} rewards, one per completion")
    if len(out) != n:
        raise StageError("reward_bad_value", f"reward function {path} returned {len(out)} rewards for {n} completions; it must "
                         "return one per completion (None where it does not apply)")
    clean: list = []
    nonfinite: list[tuple[int, float]] = []
    for i, v in enumerate(out):
        if v is not None and hasattr(v, "item") and not isinstance(v, (str, bytes)):
            v = v.item()  # numpy / torch scalar
        if v is None:
            clean.append(None)
            continue
        if not isinstance(v, (int, float)):
            raise StageError("reward_bad_value", f"reward function {path} returned {_show(v)} (a {type(v).__name__}) for completion "
                             f"{i} of {n}: a reward is a number, or None when the function does not apply to that completion")
        v = float(v)
        if math.isfinite(v):
            clean.append(v)
        else:
            nonfinite.append((i, v))
            clean.append(None)
    return clean, nonfinite


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _failed(path: str, e: BaseException) -> StageError:
    return StageError("reward_failed", f"reward function {path} raised {type(e).__name__}: {e} (traceback in sidecar.log)")


def _timeout(path: str, timeout_s: float | None) -> StageError:
    return StageError("reward_timeout", f"reward function {path} did not return within {timeout_s:g} s; fix it, or raise "
                      "stages.grpo.reward_timeout_s (null: no limit)")
