"""What a reranking stage would cost per query on this machine (issue 19; docs/PERFORMANCE.md).

No cross-encoder reranker ships its weights on the registries, so a reranking stage could only
re-score the hybrid top candidates with one of the models we have:

- ``gemma``: EmbeddingGemma embeds each candidate again at query time (the re-score a MiniLM store
  would need; a store built with EmbeddingGemma already holds these vectors, and ordering its
  candidates by their stored cosine gives exactly dense search's top k);
- ``llm yes/no``: the built-in model reads the question and one candidate and is asked for one
  token, yes or no (its probability is the score), once per candidate.

For N questions of a QA set it takes the hybrid top C passages (`retrieval.candidates` ignored: C,
default 20) and times each way. Prints seconds per query, p50 and p95, then one JSON line.

    .venv/bin/python bench/rerank_cost.py ../shared/data/qa/clapnq --store DIR -n 8 -c 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx

from ragchat.eval import answers as answer_eval

from ragchat.answer.engine import ChatOptions
from ragchat.core.settings import MULTILINGUAL_EMBEDDER, Settings, user_cache_dir
from ragchat.embed.embedder import build_embedder
from ragchat.engine import Engine
from ragchat.eval.retrieval import EVAL_COLLECTION, iter_corpus
from ragchat.eval.stats import percentile
from ragchat.retrieve.search import Filters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("qa_dir", type=Path)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("-n", type=int, default=8, help="questions")
    ap.add_argument("-c", type=int, default=20, help="candidates re-scored per question")
    args = ap.parse_args()
    settings = Settings()
    settings = settings.model_copy(update={"store": args.store, "catalog_url": "",
                                           "llm": settings.llm.model_copy(update={"provider": "llamacpp"})})
    questions = answer_eval.sample(answer_eval.load_questions(args.qa_dir), args.n)
    gemma = build_embedder(settings.embedding.model_copy(update={"model": MULTILINGUAL_EMBEDDER}), settings.llm.ollama_url,
                           settings.llm.timeout_s, user_cache_dir())
    gemma.load()
    times: dict[str, list[float]] = {"gemma": [], "llm yes/no": []}
    with Engine(settings) as eng:
        eng.ingestor.ingest_texts(iter_corpus(args.qa_dir / "corpus.jsonl"), EVAL_COLLECTION)
        server = eng.chat.llm_for(ChatOptions()).model.server()
        for q in questions:
            passages = [h.text for h in eng.retriever.search(q.text, Filters(collections=[EVAL_COLLECTION]), k=args.c)]
            t = time.perf_counter()
            gemma.embed_query(q.text)
            gemma.embed_documents(passages)
            times["gemma"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for p in passages:
                ask = f"Passage: {p}\n\nQuestion: {q.text}\nDoes the passage answer the question? Reply only yes or no."
                body = {"messages": [{"role": "user", "content": ask}], "max_tokens": 1, "logprobs": True,
                        "top_logprobs": 5, "temperature": 0, "cache_prompt": False}
                httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=server.headers, timeout=300)
            times["llm yes/no"].append(time.perf_counter() - t)
            print(f"{q.id}: {len(passages)} passages, gemma {times['gemma'][-1]:.2f} s, llm {times['llm yes/no'][-1]:.2f} s",
                  flush=True)
    result = {"candidates": args.c, "questions": len(questions)}
    for name, xs in times.items():
        xs.sort()
        result[name] = {"p50_s": round(percentile(xs, 50), 2), "p95_s": round(percentile(xs, 95), 2)}
        print(f"{name}: p50 {result[name]['p50_s']:.2f} s, p95 {result[name]['p95_s']:.2f} s per query")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
