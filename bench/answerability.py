"""Which signal tells a question the documents answer from one they do not? (docs/ANSWERS.md)

On a QA set with unanswerable questions (ClapNQ), for every question: retrieve as the chat does,
then measure signals of answerability and how well each one separates the answerable questions
from the rest (AUC: the chance that a random answerable question scores higher than a random
unanswerable one; 0.5 is a coin).

- ``closeness``: the cosine between the question and its closest retrieved passage (the bundled
  embedder), which ``chat.unanswered_below`` and ``chat.passage_over_refusal`` use;
- ``coverage``: the share of question terms in the best chunk; ``bm25``: its BM25 score;
- with ``--llm N``, on N questions drawn as ``ragchat eval --limit N`` draws them, two signals from the
  built-in model itself, from the probabilities of its first token: ``model refusal`` (1 - P(the
  reply starts the refusal sentence), with the chat's own prompt) and ``model yes/no`` (P(yes) when
  asked whether the sources contain the answer, with the same sources).

Then the share of unanswerable questions refused and of answerable ones refused by mistake, for a
range of closeness thresholds. Run it with the store `ragchat eval --store` left behind, or let it
ingest the set into a temporary store:

    .venv/bin/python bench/answerability.py ../shared/data/qa/clapnq [--store DIR] [--llm 40]
    .venv/bin/python bench/answerability.py bench/data/pdf_qa --files ../shared/data/pdfs [--store DIR]

The last table applies the chat's own gates before the model: no relevant hit (``Hit.relevant``),
or a closest passage under the threshold in a language the embedder reads, unless a passage holds
every question term. For a set of questions about documents (``--files``: papers, reports, a
datasheet) it shows how many answerable questions these gates keep from the model.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import httpx

from ragchat.eval import answers as answer_eval

from ragchat.answer.engine import ChatOptions
from ragchat.answer.events import source_of
from ragchat.answer.prompt import SOURCES_END
from ragchat.answer.replies import REFUSAL_EN, REFUSAL_ZH
from ragchat.core.text import cjk_share
from ragchat.core.settings import Settings
from ragchat.engine import Engine
from ragchat.eval.retrieval import EVAL_COLLECTION, iter_corpus
from ragchat.ingest.pipeline import collect
from ragchat.retrieve.search import Filters


def auc(pos: list[float], neg: list[float]) -> float | None:
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / len(pos) / len(neg)


def first_token(server, messages, wanted: tuple[str, ...]) -> float:
    """P(the first token of the reply is one of wanted, compared case-insensitively), from the top 20."""
    body = {"messages": messages, "max_tokens": 1, "logprobs": True, "top_logprobs": 20, "temperature": 0}
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=server.headers, timeout=300).json()
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    return sum(math.exp(t["logprob"]) for t in top if t["token"].strip().casefold() in wanted)


def model_signals(eng: Engine, q, hits) -> tuple[float, float]:
    llm = eng.chat.llm_for(ChatOptions())
    server = llm.model.server()
    sources = [source_of(i + 1, h) for i, h in enumerate(hits)]
    passages = eng.chat.passages(q.text, sources, llm)
    msgs = eng.chat.prompt(q.text, [], sources, eng.chat.settings.system_prompt, passages)
    as_json = [{"role": {"system": "system", "human": "user", "ai": "assistant"}[m.type], "content": m.content} for m in msgs]
    zh = cjk_share(q.text) >= 0.3
    refusal = REFUSAL_ZH if zh else REFUSAL_EN
    starts = (refusal[:2].casefold(), refusal.split()[0].casefold())
    answers = 1 - first_token(server, as_json, starts)
    ask = (f"问题：{q.text}\n上面的资料是否包含这个问题的答案？只回答“是”或“否”。" if zh else
           f"Question: {q.text}\nDo the sources above contain the answer to this question? Reply only yes or no.")
    content = as_json[-1]["content"]
    as_json[-1] = {"role": "user", "content": content[: content.index(SOURCES_END) + len(SOURCES_END)] + "\n\n" + ask}
    yes = first_token(server, as_json, ("yes", "是"))
    no = first_token(server, as_json, ("no", "否"))
    return answers, yes / (yes + no) if yes + no else 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("qa_dir", type=Path)
    ap.add_argument("--store", type=Path, help="a store that `ragchat eval --store` filled with this set")
    ap.add_argument("--llm", type=int, default=0, help="also measure the built-in model's own signals on N questions")
    ap.add_argument("--files", type=Path, help="the set's corpus is these files (as ragchat eval --files)")
    args = ap.parse_args()
    questions = answer_eval.load_questions(args.qa_dir, files=args.files is not None)
    tmp = None
    store = args.store
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ragchat-answerability-")
        store = Path(tmp.name)
    settings = Settings()
    settings = settings.model_copy(update={"store": store, "catalog_url": "",
                                           "llm": settings.llm.model_copy(update={"provider": "llamacpp"})})
    filters = Filters(collections=[EVAL_COLLECTION])
    asked = {q.id for q in answer_eval.sample(questions, args.llm)} if args.llm else set()
    rows = []
    with Engine(settings) as eng:
        if args.files is not None:
            eng.ingestor.ingest(collect([args.files / n for n in sorted({q.file for q in questions if q.file})]),
                                EVAL_COLLECTION)
        else:
            eng.ingestor.ingest_texts(iter_corpus(args.qa_dir / "corpus.jsonl"), EVAL_COLLECTION)
        k = eng.chat.source_count(eng.chat.llm_for(ChatOptions()), ChatOptions()) if asked else None
        for q in questions:
            hits = [h for h in eng.retriever.search(q.text, filters, k=k) if h.relevant]
            top = hits[0] if hits else None
            close = eng.retriever.closeness(q.text, hits)
            row = {"answerable": q.answerable, "closeness": close or 0.0, "gated": close,
                   "no relevant hit": not hits, "full coverage": any(h.coverage >= 1.0 for h in hits),
                   "coverage": top.coverage if top else 0.0, "bm25": (top.lexical or 0.0) if top else 0.0}
            if q.id in asked and hits:
                row["model refusal"], row["model yes/no"] = model_signals(eng, q, hits)
            rows.append(row)
    if tmp is not None:
        tmp.cleanup()

    pos = [r for r in rows if r["answerable"]]
    neg = [r for r in rows if not r["answerable"]]
    print(f"{args.qa_dir.name}: {len(pos)} answerable, {len(neg)} unanswerable questions")
    print("| signal | questions | AUC |\n|---|---|---|")
    for name in ("closeness", "coverage", "bm25", "model refusal", "model yes/no"):
        p = [r[name] for r in pos if name in r]
        n = [r[name] for r in neg if name in r]
        if p and n:
            print(f"| {name} | {len(p) + len(n)} | {auc(p, n):.3f} |")
    print("\n| closeness below | unanswerable refused | answerable refused |\n|---|---|---|")
    measured = [r for r in rows if r["gated"] is not None]  # a closeness in a language the embedder reads
    if len(measured) < len(rows):
        print(f"({len(rows) - len(measured)} questions have no closeness: the embedder does not read them or their passages)")
    for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65):  # MiniLM's cosines run higher than EmbeddingGemma's
        print(f"| {t} | {share([r for r in neg if r in measured], lambda r: r['closeness'] < t)} | "
              f"{share([r for r in pos if r in measured], lambda r: r['closeness'] < t)} |")

    def gated(r: dict, t: float) -> bool:
        return r["no relevant hit"] or (r["gated"] is not None and r["gated"] < t and not r["full coverage"])

    print("\n| gates before the model, cosine below | unanswerable kept from the model | answerable kept from the model |"
          "\n|---|---|---|")
    print(f"| (no relevant hit only) | {share(neg, lambda r: r['no relevant hit'])} | {share(pos, lambda r: r['no relevant hit'])} |")
    for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5):
        print(f"| {t} | {share(neg, lambda r: gated(r, t))} | {share(pos, lambda r: gated(r, t))} |")


def share(rows: list[dict], test) -> str:
    return f"{sum(map(test, rows))}/{len(rows)} = {sum(map(test, rows)) / len(rows):.3f}" if rows else "n/a"


if __name__ == "__main__":
    main()
