"""Writes data/smoke/*.jsonl: tiny, deterministic task data for the smoke preset.

The task is single-digit addition answered in GSM8K's format ("... #### 7"), so the same
built-in rewards (format, exact_answer) that users point at GSM8K also work on smoke data,
and a ~200k-parameter model shows a learning signal within a few dozen steps.
Run: python scripts/make_smoke_data.py
"""
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "smoke"
TEMPLATES = ["Add {a} and {b}.", "What is {a} plus {b}?", "Compute {a} + {b}."]
REFUSALS = ["I don't know.", "Maybe later.", "No idea, sorry."]


def problems(rng: random.Random, n: int):
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        yield rng.choice(TEMPLATES).format(a=a, b=b), a + b


def answer(total: int) -> str:
    return f"The answer is {total}.\n#### {total}"


def write(name: str, rows):
    with open(OUT / name, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    write("sft.jsonl", ({"prompt": p, "response": answer(t)} for p, t in problems(rng, 96)))
    write("dpo.jsonl", ({"prompt": p, "chosen": answer(t), "rejected": rng.choice(REFUSALS)} for p, t in problems(rng, 96)))
    write("grpo.jsonl", ({"prompt": p, "answer": str(t)} for p, t in problems(rng, 48)))
    # Reward-model pairs: a right answer beats a wrong one (harder than refusal vs answer).
    def wrong(t):
        return answer((t + rng.randint(1, 9)) % 19)
    write("preferences.jsonl", ({"prompt": p, "chosen": answer(t), "rejected": wrong(t)} for p, t in problems(rng, 128)))
    write("prompts.jsonl", ({"prompt": p, "answer": str(t)} for p, t in problems(rng, 48)))


if __name__ == "__main__":
    main()
