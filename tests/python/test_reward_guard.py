"""reward_guard: what a user's reward function may return, and how a call is limited and stopped.
The end-to-end cases (a real GRPO stage) are in tests/hostile/user-code.test.ts."""
from __future__ import annotations

import asyncio
import math
import signal
import threading
import time

import pytest

from posttrain_sidecar.connection import StageCancelled, StageError
from posttrain_sidecar.reward_guard import checked, guarded


def test_numbers_and_none_pass_non_finite_become_none_and_are_reported():
    clean, bad = checked([1, 0.5, None, True, float("nan"), -math.inf], 6, "m:f")
    assert clean == [1.0, 0.5, None, 1.0, None, None]
    assert [i for i, _ in bad] == [4, 5] and math.isnan(bad[0][1]) and bad[1][1] == -math.inf


@pytest.mark.parametrize("out, want", [
    ("1.0", r"returned '1.0' \(a str\), not a list of 2 rewards"),
    ([1.0], r"returned 1 rewards for 2 completions"),
    ([1.0, "x"], r"returned 'x' \(a str\) for completion 1 of 2: a reward is a number, or None"),
    ([1.0, [2]], r"returned \[2\] \(a list\) for completion 1 of 2"),
])
def test_bad_results_name_the_function_and_the_first_bad_value(out, want):
    with pytest.raises(StageError, match=want) as e:
        checked(out, 2, "m:f")
    assert e.value.code == "reward_bad_value" and "reward function m:f" in e.value.message


def test_an_exception_is_named_with_the_function_and_kept_as_the_cause():
    def boom(prompts, completions, **kw):
        raise KeyError("answer")

    f = guarded(boom, "m.boom", "m:boom", {})
    with pytest.raises(StageError, match=r"reward function m:boom raised KeyError: 'answer'") as e:
        f(["p"], ["c"])
    assert e.value.code == "reward_failed" and isinstance(e.value.__cause__, KeyError)


def test_the_time_limit_interrupts_a_busy_loop_even_one_that_catches_exception():
    def spins(prompts, completions, **kw):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # the interrupt is a BaseException: this does not swallow it
                pass

    f = guarded(spins, "m.spins", "m:spins", {}, timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(StageError, match=r"did not return within 0.3 s") as e:
        f(["p"], ["c"])
    assert e.value.code == "reward_timeout" and time.monotonic() - t0 < 3
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # the timer does not outlive the call


class FakeConn:
    def __init__(self):
        self.on_cancel = []
        self.seen = []
        self.busy_with = None

    def busy(self, what):
        self.seen.append(what)
        self.busy_with = what


def test_a_cancel_interrupts_the_call_and_busy_names_it_meanwhile():
    conn = FakeConn()

    def sleeps(prompts, completions, **kw):
        time.sleep(30)

    f = guarded(sleeps, "m.sleeps", "m:sleeps", {}, conn=conn)
    threading.Timer(0.3, lambda: [h() for h in conn.on_cancel]).start()
    t0 = time.monotonic()
    with pytest.raises(StageCancelled, match="inside reward function m:sleeps"):
        f(["p"], ["c"])
    assert time.monotonic() - t0 < 5
    assert conn.seen == ["reward function m:sleeps", None]


def test_non_finite_values_are_logged_as_a_share_and_named_once():
    logged, warned = [], []

    def half_nan(prompts, completions, **kw):
        return [float("nan"), 1.0]

    f = guarded(half_nan, "m.half", "m:half", {}, warn=warned.append)
    for _ in range(2):
        assert f(["p", "p"], ["a", "b"], log_metric=lambda k, v: logged.append((k, v))) == [None, 1.0]
    assert logged == [("rewards/m.half/nonfinite", 0.5)] * 2
    assert len(warned) == 1 and "reward function m:half returned nan for completion 0 of 2" in warned[0]


def test_async_functions_get_the_time_limit_too():
    async def slow(prompts, completions, **kw):
        await asyncio.sleep(10)

    f = guarded(slow, "m.slow", "m:slow", {}, timeout_s=0.2)
    with pytest.raises(StageError, match="did not return within 0.2 s"):
        asyncio.run(f(["p"], ["c"]))
