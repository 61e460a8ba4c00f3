"""Generation-metrics parity fixture: 200 seeded prediction/reference pairs scored by the
reference implementations `tunelab eval score` follows.

    python3 tests/reference/make_metrics_fixture.py

Re-runs itself inside a venv at ~/.cache/tunelab-ci/venv-metrics (made on first use with
rouge-score==0.1.2, sacrebleu==2.6.0 and their dependencies). Writes
tests/fixtures/eval/metrics/pairs.jsonl and expected.json:

- per pair: rouge1/rouge2/rougeL F-measures from rouge_score.RougeScorer(use_stemmer=False)
  and exact_match/f1 from the official SQuAD v1.1 functions (copied below with their
  semantics unchanged);
- corpus: sacrebleu.corpus_bleu and sacrebleu.corpus_chrf with their defaults (the raw
  `.score`, 0..100), the means of the per-pair metrics, and the mean prediction length in
  whitespace-separated words.

tests/it/eval/metrics.rs compares `tunelab eval score --json` and the library's per-pair
functions with these numbers within 1e-6.
"""

import collections
import json
import os
import pathlib
import random
import re
import string
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "tests" / "fixtures" / "eval" / "metrics"
VENV = pathlib.Path.home() / ".cache" / "tunelab-ci" / "venv-metrics"
PACKAGES = ["rouge-score==0.1.2", "sacrebleu==2.6.0", "nltk", "absl-py", "numpy", "six"]
SEED = 28
N = 200


def ensure_venv():
    """Re-executes this script with the venv's Python, creating the venv if needed."""
    py = VENV / "bin" / "python"
    if pathlib.Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


# --- The official SQuAD v1.1 evaluation functions (evaluate-v1.1.py), unchanged. ---


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


# --- The pairs. ---

WORDS = (
    "the a an cat dog sat on mat Paris is capital of France answer model tune loss "
    "river bank 42 3.14 1,000 state-of-the-art don't it's e.g. U.S.A. x-ray 1990-2000 "
    "quick brown fox jumps over lazy"
).split()
UNICODE = [
    "café", "naïve", "Ünïcödé", "résumé", "ÉCOLE", "straße", "İstanbul", "Ωmega", "ΣΟΦΙΑ",
    "東京", "日本語", "中文字符", "한국어", "😀", "🚀🚀", "👩‍💻", "e\u0301t\u0301e\u0301",
    "the\u0301", "\u212aelvin", "ﬁne", "½", "²", "x\u00a0y", "a\u3000b", "tab\tbed", "unit\x1fsep",
]
PUNCT = ["!", "?", "...", "—", "«", "»", "&amp;", "&lt;b&gt;", "&quot;", "(", ")", "-", "--",
         ",", ".", ";", ":", "'", '"', "[", "]", "{", "}", "<skipped>", "@", "#", "$3.50"]
TEMPLATES = [
    ("Paris", "Paris"),
    ("paris.", "The Paris"),
    ("An answer", "answer"),
    ("", ""),
    ("", "The reference is here."),
    ("Something was predicted.", ""),
    ("!!!", "?!"),
    ("...", "..."),
    ("the the the", "a an the"),
    ("THE CAT SAT ON THE MAT", "the cat sat on the mat"),
    ("Arr, matey! Arr!", "Ahoy there, sailor."),
    ("café au lait", "cafe au lait"),
    ("東京は日本の首都です", "東京は日本の首都です。"),
    ("😀 😀 😀", "😀"),
    ("dog dog dog dog", "dog"),
    ("line one\nline two-\nthree", "line one line twothree"),
    ("1990-2000 was 3.14 or 1,000.", "1990 - 2000 was 3.14, or 1,000 ."),
]


def sentence(rng, lo, hi):
    parts = []
    for _ in range(rng.randint(lo, hi)):
        r = rng.random()
        if r < 0.65:
            w = rng.choice(WORDS)
        elif r < 0.8:
            w = rng.choice(UNICODE)
        else:
            w = rng.choice(PUNCT)
        case = rng.random()
        if case < 0.15:
            w = w.upper()
        elif case < 0.3:
            w = w.capitalize()
        parts.append(w)
    glue = rng.choice([" ", " ", " ", "  ", "", " \t"])
    s = glue.join(parts)
    if rng.random() < 0.5:
        s += rng.choice([".", "!", "?", " .", ""])
    if rng.random() < 0.1:
        s = rng.choice(["  ", "\n", "\u3000"]) + s + rng.choice(["  ", "\n", " \u00a0"])
    return s


def mutate(rng, ref):
    """A prediction near the reference: words dropped, swapped, repeated or recased."""
    words = ref.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.1:
            continue
        if r < 0.2:
            out.append(rng.choice(WORDS + UNICODE))
        elif r < 0.27:
            out += [w, w]
        elif r < 0.35:
            out.append(w.lower())
        else:
            out.append(w)
    if rng.random() < 0.2 and len(out) > 2:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


def make_pairs():
    rng = random.Random(SEED)
    pairs = [{"prediction": p, "reference": r} for p, r in TEMPLATES]
    while len(pairs) < N:
        k = len(pairs)
        if k % 25 == 0:  # long lines
            ref = sentence(rng, 150, 300)
        else:
            ref = sentence(rng, 1, 25)
        r = rng.random()
        if r < 0.55:
            pred = mutate(rng, ref)
        elif r < 0.65:
            pred = ref
        elif r < 0.72:
            pred = ""
        elif r < 0.76:
            pred, ref = ref, ""
        elif r < 0.8:
            pred = rng.choice(PUNCT) * rng.randint(1, 4)
        else:
            pred = sentence(rng, 1, 25)
        pairs.append({"prediction": pred, "reference": ref})
    return pairs


def main():
    ensure_venv()
    import sacrebleu
    from rouge_score import rouge_scorer

    pairs = make_pairs()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    per_pair = []
    for p in pairs:
        rs = scorer.score(p["reference"], p["prediction"])
        per_pair.append({
            "exact_match": float(exact_match_score(p["prediction"], p["reference"])),
            "f1": float(f1_score(p["prediction"], p["reference"])),
            "rouge1": rs["rouge1"].fmeasure,
            "rouge2": rs["rouge2"].fmeasure,
            "rougeL": rs["rougeL"].fmeasure,
        })
    preds = [p["prediction"] for p in pairs]
    refs = [p["reference"] for p in pairs]
    n = len(pairs)
    corpus = {"n": n}
    for key in ["exact_match", "f1", "rouge1", "rouge2", "rougeL"]:
        corpus[key] = sum(s[key] for s in per_pair) / n
    corpus["bleu"] = sacrebleu.corpus_bleu(preds, [refs]).score
    corpus["chrf"] = sacrebleu.corpus_chrf(preds, [refs]).score
    corpus["mean_length"] = sum(len(p.split()) for p in preds) / n
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "pairs.jsonl", "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    expected = {
        "generator": {"seed": SEED, "rouge_score": "0.1.2", "sacrebleu": sacrebleu.__version__},
        "corpus": corpus,
        "pairs": per_pair,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(corpus))


if __name__ == "__main__":
    main()
