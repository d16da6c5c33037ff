"""Reward functions: GSM8K-style answer extraction, format/length scoring, user functions by path."""
from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from posttrain_sidecar.connection import StageError
from posttrain_sidecar.rewards import (
    check_columns,
    exact_answer,
    extract_answer,
    format_reward,
    length_reward,
    required_columns,
    resolve_reward_funcs,
)

GSM8K_ANSWER = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


@pytest.mark.parametrize(
    "text, want",
    [
        ("#### 72", "72"),
        ("72", "72"),
        (GSM8K_ANSWER, "72"),
        ("The answer is 7.\n#### 7", "7"),
        ("The answer is 7.", "7"),  # no marker: the last number; the sentence's "." is not a decimal point
        ("#### 1,080", "1080"),
        ("so 1,080 in total", "1080"),
        ("#### -5", "-5"),
        ("It dropped to -12 degrees", "-12"),
        ("#### 3.0", "3"),
        ("#### 0.5", "0.5"),
        ("costs $1,234.50 in all", "1234.5"),
        ("from 3-5 items, say 4", "4"),
        ("#### 12\nthen later 99", "12"),  # the number after the marker wins over the last number
        ("####", None),  # a marker without a number gives no answer (no fallback)
        ("no digits here", None),
        ("", None),
        (72, "72"),  # answer columns may hold JSON numbers
        (3.0, "3"),
        (None, None),
    ],
)
def test_extract_answer(text, want):
    got = extract_answer(text)
    if want is None:
        assert got is None
    else:
        assert got == Decimal(want)


def test_exact_answer_gsm8k_strings():
    completions = [
        "The answer is 72.\n#### 72",
        "72",
        "#### 72.0",
        "The answer is 71.\n#### 71",
        "I think 72 but #### 70",  # the marked answer counts, not the earlier number
        "",
    ]
    answers = [GSM8K_ANSWER] * len(completions)
    assert exact_answer(["q"] * len(completions), completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_exact_answer_commas_negatives_and_bare_columns():
    completions = ["#### 1,080", "1080", "#### -5", "#### 5", "The answer is -3.\n#### -3", "#### 2"]
    answers = ["Total: 1,080 apples.\n#### 1,080", "#### 1,080", "-5", "-5", -3, "no number"]
    assert exact_answer([""] * 6, completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def test_exact_answer_reads_the_configured_column_and_chat_completions():
    completions = [[{"role": "assistant", "content": "#### 4"}], [{"role": "assistant", "content": "#### 5"}]]
    assert exact_answer(["a", "b"], completions, field="solution", solution=["4", "4"], answer=["9", "9"]) == [1.0, 0.0]
    with pytest.raises(KeyError, match="solution"):
        exact_answer(["a"], ["#### 4"], field="solution", answer=["4"])


def test_format_reward():
    completions = ["The answer is 7.\n#### 7", "####7", "#### -1,200", "The answer is 7.", "####", "nothing", "#### x 7"]
    assert format_reward([""] * 7, completions) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    # partial credit for a number without the marker (and a marker that is not followed by one)
    assert format_reward([""] * 7, completions, partial=0.5) == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.5]


def test_length_reward_tokens_and_chars():
    ids = [[1] * 10, [1] * 5, [1] * 0, [1] * 20, [1] * 25, [1] * 12]
    got = length_reward([""] * 6, [""] * 6, target=10, completion_ids=ids)
    assert got == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0, 0.8])
    assert all(0.0 <= r <= 1.0 for r in got)
    assert length_reward([""] * 2, ["abcd", "abcdefgh"], target=4, unit="chars") == pytest.approx([1.0, 0.0])
    assert length_reward([""], [""], target=10, tolerance=2, completion_ids=[[1] * 12]) == [1.0]
    with pytest.raises(ValueError, match="completion_ids"):
        length_reward([""], ["abc"], target=3)


def test_resolve_builtins_weights_and_names():
    funcs, weights = resolve_reward_funcs([
        {"name": "format", "weight": 0.5, "args": {}},
        {"name": "exact_answer", "weight": 2, "args": {"field": "solution"}},
        {"name": "length", "args": {"target": 8, "unit": "chars"}},
        {"name": "length", "weight": 1, "args": {"target": 4, "unit": "chars"}},
    ])
    assert weights == [0.5, 2.0, 1.0, 1.0]
    assert [f.__name__ for f in funcs] == ["format", "exact_answer", "length", "length_2"]  # rewards/<name>/mean
    # args are bound; TRL's extra keywords pass through untouched
    assert funcs[1](["p"], ["#### 3"], solution=["3"], trainer_state=None, completion_ids=[[1]]) == [1.0]
    assert funcs[2](["p"], ["abcd"], completion_ids=[[1]]) == [0.5]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "length", "args": {}}, "target"),
        ({"name": "length", "args": {"target": 5, "unit": "words"}}, "unit"),
        ({"name": "format", "args": {"partial": 2}}, "partial"),
        ({"name": "exact_answer", "args": {"feild": "x"}}, "unknown args"),
    ],
)
def test_bad_builtin_args(spec, match):
    with pytest.raises(StageError) as exc:
        resolve_reward_funcs([spec])
    assert exc.value.code == "bad_reward_args" and match in exc.value.message


def test_user_function_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(prompts, completions, max_chars=10, **kw):\n"
        "    return [1.0 if len(c) <= max_chars else 0.0 for c in completions]\n"
        "async def judge(prompts, completions, **kw):\n"
        "    return [0.25 for _ in completions]\n"
        "class Scorer:\n"
        "    def __call__(self, prompts, completions, **kw):\n"
        "        return [float(len(completions))] * len(completions)\n"
        "scorer = Scorer()\n"
        "THRESHOLD = 3\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # the sidecar runs in the user's working directory
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)
    funcs, weights = resolve_reward_funcs([
        {"name": "my_rewards:brevity", "weight": 0.5, "args": {"max_chars": 3}},
        {"name": "my_rewards:scorer"},
    ])
    assert weights == [0.5, 1.0]
    assert [f.__name__ for f in funcs] == ["my_rewards.brevity", "my_rewards.scorer"]
    assert funcs[0](["p", "p"], ["abc", "abcd"], trainer_state=None) == [1.0, 0.0]
    assert funcs[1](["p", "p"], ["a", "b"]) == [2.0, 2.0]

    import asyncio
    import inspect

    (async_func,), _ = resolve_reward_funcs([{"name": "my_rewards:judge"}])
    assert inspect.iscoroutinefunction(async_func)  # TRL runs async reward functions concurrently
    assert asyncio.run(async_func(["p"], ["c"])) == [0.25]


@pytest.mark.parametrize(
    "name, match",
    [
        ("no_such_module_xyz:f", "No module named 'no_such_module_xyz'"),
        ("bad_rewards:missing", "has no attribute 'missing'"),
        ("bad_rewards:THRESHOLD", "not a callable"),
        ("broken_rewards:f", "ZeroDivisionError"),
        ("not-a-path", "import path"),
    ],
)
def test_bad_user_function_is_reward_import_failed(tmp_path, monkeypatch, name, match):
    (tmp_path / "bad_rewards.py").write_text("THRESHOLD = 3\n", encoding="utf-8")
    (tmp_path / "broken_rewards.py").write_text("x = 1 / 0\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for m in ("bad_rewards", "broken_rewards"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    with pytest.raises(StageError) as exc:
        resolve_reward_funcs([{"name": "format"}, {"name": name}])
    assert exc.value.code == "reward_import_failed"
    assert name in exc.value.message and match in exc.value.message


def test_required_columns_match_the_controller():
    specs = [{"name": "format"}, {"name": "exact_answer"}, {"name": "exact_answer", "args": {"field": "solution"}}]
    assert required_columns(specs) == ["answer", "solution"]
    check_columns(specs, ["prompt", "answer", "solution"])
    with pytest.raises(StageError) as exc:
        check_columns(specs, ["prompt", "answer"])
    assert exc.value.code == "data_missing_column" and "solution" in exc.value.message
