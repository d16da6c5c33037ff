"""The held-out split: rows that share a prompt never straddle it (duplicates, swapped pairs)."""
from __future__ import annotations

import random

from datasets import Dataset

from posttrain_sidecar.training import split
from reliability import record_reliability


def pairs_with_duplicates(n_unique=40, copies=3, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n_unique):
        a, b = f"answer {i} A", f"answer {i} B"
        for _ in range(copies):  # the same pair again, its label drawn at random each time
            chosen, rejected = (a, b) if rng.random() < 0.5 else (b, a)
            rows.append({"prompt": f"question {i}?", "chosen": chosen, "rejected": rejected})
    rng.shuffle(rows)
    return Dataset.from_list(rows)


def test_no_prompt_is_on_both_sides_and_the_size_is_about_the_fraction():
    ds = pairs_with_duplicates()
    leaks = []
    for seed in (1, 2, 42):
        train, held = split(ds, 0.25, seed)
        leaks.append(len({r["prompt"] for r in train} & {r["prompt"] for r in held}))
    record_reliability(fault="preference pairs each present 3 times with random labels, split 25% held out (3 seeds)",
                       stage="rlhf", injected=3, survived=sum(leaks) == 0,
                       outcome=f"prompts on both sides of the split: {leaks} (a random row split leaked most of them)",
                       test="tests/python/test_split.py")
    for seed in (1, 2, 42):
        train, held = split(ds, 0.25, seed)
        assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
        assert len(train) + len(held) == len(ds)
        assert abs(len(held) - 0.25 * len(ds)) <= 3  # whole groups of 3


def test_the_split_depends_on_seed_and_content_not_on_row_order():
    ds = pairs_with_duplicates()
    _, held = split(ds, 0.25, 7)
    shuffled = ds.shuffle(seed=3)
    _, held2 = split(shuffled, 0.25, 7)
    assert sorted(map(str, held)) == sorted(map(str, held2))
    _, other = split(ds, 0.25, 8)
    assert sorted(map(str, held)) != sorted(map(str, other))


def test_conversations_group_by_everything_before_the_last_turn_and_tiny_sets_are_not_split():
    convo = lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    ds = Dataset.from_list([convo(f"q{i % 5}", f"a{i}") for i in range(20)])
    train, held = split(ds, 0.2, 0)
    user = lambda r: r["messages"][0]["content"]
    assert not {user(r) for r in train} & {user(r) for r in held}
    assert split(Dataset.from_list([{"prompt": "p"}] * 3), 0.5, 0)[1] is None
    # one group only: nothing can be held out without emptying the training side
    assert split(Dataset.from_list([{"prompt": "same"}] * 10), 0.3, 0)[1] is None
