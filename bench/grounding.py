"""How well does the grounding check (src/ragchat/answer/grounding.py) tell supported sentences from
unsupported ones? A labelled sample is made from two QA sets' passages, then each check is scored.

    .venv/bin/python bench/grounding.py ../shared/data/qa [--seed 0] [--n 200]

The sample (pairs of a sentence and a source, labelled supported or not):
- ClapNQ (English): each answerable question's reference answer, split into sentences. Supported by
  its own passage; not supported by the other passage that shares the most words with it (a hard,
  on-topic negative).
- RGB (Chinese): the sentence of a positive passage that holds the answer. Supported by that
  passage; not supported by one of the question's negative passages (same topic, no answer), nor
  by its own passage once the answer's number is changed (the mistake small models make).

Checks compared: term overlap (grounding.support) at several thresholds, and the cosine of the
bundled embedder. Prints precision, recall and F1 of "not supported" (the sentences the app marks)
and of "supported", for each.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ragchat.core.text import analyze  # noqa: E402
from ragchat.answer.grounding import sentences, support  # noqa: E402


def load(folder: Path):
    corpus = {}
    for line in open(folder / "corpus.jsonl", encoding="utf-8"):
        d = json.loads(line)
        corpus[d["_id"]] = ((d.get("title") or "") + "\n" + d["text"]).strip()
    queries = [json.loads(line) for line in open(folder / "queries.jsonl", encoding="utf-8")]
    qrels: dict[str, list[str]] = {}
    for i, line in enumerate(open(folder / "qrels" / "test.tsv", encoding="utf-8")):
        q, d, score = line.rstrip("\n").split("\t")[:3]
        if i == 0 and not score.isdigit():
            continue
        if int(score) > 0:
            qrels.setdefault(q, []).append(d)
    return corpus, queries, qrels


def clapnq_pairs(folder: Path, rng: random.Random):
    corpus, queries, qrels = load(folder)
    terms = {d: set(analyze(t)) for d, t in corpus.items()}
    pairs = []
    for q in queries:
        ref, gold = q["metadata"].get("reference"), qrels.get(q["_id"], [])
        if not ref or not gold or not q["metadata"].get("answerable", True):
            continue
        for a, b in sentences(ref):
            s = ref[a:b].strip()
            if len(analyze(s)) < 3:
                continue
            st = set(analyze(s))
            other = max((d for d in corpus if d not in gold), key=lambda d: len(st & terms[d]))
            pairs += [(s, corpus[gold[0]], True, "en"), (s, corpus[other], False, "en")]
    return pairs


def rgb_pairs(folder: Path, rng: random.Random):
    corpus, queries, qrels = load(folder)
    pairs = []
    for q in queries:
        groups = q["metadata"].get("answers") or []
        gold = qrels.get(q["_id"], [])
        alts = [a for g in groups for a in (g if isinstance(g, list) else [g])]
        for d in gold:
            text = corpus[d]
            hit = next((text[a:b] for a, b in sentences(text) if any(x in text[a:b] for x in alts)), None)
            if not hit or len(analyze(hit)) < 3:
                continue
            negatives = [n for n in corpus if n.startswith(q["_id"] + "-") and n not in gold] or \
                        [n for n in corpus if n not in gold]
            pairs += [(hit, text, True, "zh"), (hit, corpus[rng.choice(negatives)], False, "zh")]
            numbers = re.findall(r"\d+", hit)
            if numbers:
                n = rng.choice(numbers)
                wrong = hit.replace(n, str(int(n) + rng.randint(1, 9)), 1)
                pairs.append((wrong, text, False, "zh"))
            break
    return pairs


def score(pairs, predict):
    out = {}
    for label in (False, True):  # False: "not supported", the class the app marks
        tp = sum(1 for p, y in zip(predict, pairs) if p == label and y[2] == label)
        fp = sum(1 for p, y in zip(predict, pairs) if p == label and y[2] != label)
        fn = sum(1 for p, y in zip(predict, pairs) if p != label and y[2] == label)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out["supported" if label else "unsupported"] = (prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("qa_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=200, help="pairs per language (sampled)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    sample = []
    for pairs in (clapnq_pairs(args.qa_dir / "clapnq", rng), rgb_pairs(args.qa_dir / "rgb_zh", rng)):
        rng.shuffle(pairs)
        sample += pairs[: args.n]
    langs = sorted({p[3] for p in sample})
    print(f"labelled pairs: {len(sample)} ({', '.join(f'{l}: {sum(p[3] == l for p in sample)}' for l in langs)}), "
          f"supported: {sum(p[2] for p in sample)}")

    overlap = [support(s, src) or 0.0 for s, src, _, _ in sample]  # None: across languages, nothing to compare
    from ragchat.core.settings import BUNDLED_EMBEDDER, EmbeddingSettings, user_cache_dir
    from ragchat.embed.embedder import build_embedder

    embedder = build_embedder(EmbeddingSettings(model=BUNDLED_EMBEDDER), "", 60, cache_dir=user_cache_dir())
    import numpy as np

    a = np.array(embedder.embed_documents([p[0] for p in sample]))
    b = np.array(embedder.embed_documents([p[1] for p in sample]))
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    print(f"\n{'check':<28}{'lang':<6}{'unsupported P':>14}{'R':>7}{'F1':>7}{'supported P':>13}{'R':>7}{'F1':>7}")
    rows = [(f"term overlap >= {t}", [o >= t for o in overlap]) for t in (0.4, 0.5, 0.6, 0.7, 0.8)]
    rows += [(f"embedder cosine >= {t}", [c >= t for c in cosine]) for t in (0.5, 0.6, 0.7, 0.8)]
    for name, predict in rows:
        for lang in langs + ["all"]:
            idx = [i for i, p in enumerate(sample) if lang in (p[3], "all")]
            r = score([sample[i] for i in idx], [predict[i] for i in idx])
            u, s = r["unsupported"], r["supported"]
            print(f"{name:<28}{lang:<6}{u[0]:>14.3f}{u[1]:>7.3f}{u[2]:>7.3f}{s[0]:>13.3f}{s[1]:>7.3f}{s[2]:>7.3f}")


if __name__ == "__main__":
    main()
