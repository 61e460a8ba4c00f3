"""Writes the GRPO demo datasets (deterministic; run from the repository root):

  demo/sums.jsonl           every a + b with a, b >= 0 and a + b <= 9 (55 prompts), with the
                            sum in an `answer` column: the tiny demo model learns to answer
                            with one digit (preset tiny-demo-grpo).
  demo/word_problems.jsonl  240 GSM8K-style one- and two-step word problems with the numeric
                            answer in `answer` and a system prompt asking for
                            <think>…</think><answer>…</answer> ("#### N" style solutions are not needed: the
                            answer reward reads the column), for smollm2-135m-grpo.

    python3 scripts/make_grpo_demo_data.py
"""
import json
import random

def sums():
    out = []
    for a in range(10):
        for b in range(10 - a):
            out.append({"messages": [{"role": "user", "content": f"{a} + {b} ="}], "answer": str(a + b)})
    return out

SYSTEM = ("Think step by step inside <think> and </think>, then give only the final number "
          "inside <answer> and </answer>.")
NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena"]
THINGS = ["apples", "books", "marbles", "stickers", "pencils", "shells", "coins", "cards"]

def word_problems(n=240, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who, other = rng.sample(NAMES, 2)
        thing = rng.choice(THINGS)
        kind = i % 4
        a, b, c = rng.randint(2, 20), rng.randint(2, 20), rng.randint(2, 6)
        if kind == 0:
            q = f"{who} has {a} {thing}. {other} gives {who} {b} more. How many {thing} does {who} have now?"
            ans = a + b
        elif kind == 1:
            a = a + b
            q = f"{who} had {a} {thing} and gave {b} of them to {other}. How many {thing} does {who} have left?"
            ans = a - b
        elif kind == 2:
            q = f"{who} buys {c} bags with {a} {thing} in each bag. How many {thing} does {who} buy in all?"
            ans = a * c
        else:
            q = (f"{who} has {a} {thing}, and {other} has {b} more than {who}. "
                 f"How many {thing} do they have together?")
            ans = a + (a + b)
        out.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
                    "answer": str(ans)})
    return out

def write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

if __name__ == "__main__":
    write("demo/sums.jsonl", sums())
    write("demo/word_problems.jsonl", word_problems())
