"""Where the built-in model's first token goes (docs/PERFORMANCE.md, "First token, part by part").

For N questions of a QA set, each is taken through the chat's own steps, timed one by one: search
(``Retriever.search_all``), the excerpts (``ChatEngine.passages``, which counts tokens with the
model's tokenizer), then the prompt (``ChatEngine.prompt``) sent to the built-in llama.cpp server for
one token, whose own ``timings`` say how many prompt tokens it read anew (``prompt_n``), how many it
took from its cache (``cache_n``) and how fast it read them. The prompt's parts are counted in the
model's tokens: system prompt, worked examples, instruction, sources, question.

    .venv/bin/python bench/first_token.py ../shared/data/qa/rgb_zh --store /tmp/ragchat-answers/store-rgb_zh -n 12
    .venv/bin/python bench/first_token.py bench/data/pdf_qa --files ../shared/data/pdfs --store DIR -n 12

The store is one `ragchat eval --answers --store DIR` left behind (or is made here). Settings come
from the usual configuration (RAGCHAT_* variables), so two runs side by side compare two settings.
Prints one line per question, then medians, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx

from ragchat.eval import answers as answer_eval

from ragchat.answer.engine import ChatOptions
from ragchat.answer.events import source_of
from ragchat.answer.prompt import instruction, user_message, worked_examples
from ragchat.core.settings import Settings
from ragchat.engine import Engine
from ragchat.eval.retrieval import EVAL_COLLECTION, iter_corpus
from ragchat.ingest.pipeline import collect
from ragchat.retrieve.search import Filters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("qa_dir", type=Path)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--files", type=Path, help="the set's corpus is these files (as ragchat eval --files)")
    ap.add_argument("-n", type=int, default=12, help="questions (drawn as ragchat eval --limit draws them; the first warms up)")
    args = ap.parse_args()

    questions = answer_eval.sample(answer_eval.load_questions(args.qa_dir, files=args.files is not None), args.n)
    settings = Settings(store=args.store, llm={"provider": "llamacpp"})
    filters = Filters(collections=[EVAL_COLLECTION])
    rows = []
    with Engine(settings) as eng:
        if args.files is not None:
            eng.ingestor.ingest(collect([args.files / q.file for q in questions if q.file]), EVAL_COLLECTION)
        elif not eng.catalog.documents(collections=[EVAL_COLLECTION], status="done"):
            eng.ingestor.ingest_texts(iter_corpus(args.qa_dir / "corpus.jsonl"), EVAL_COLLECTION)
        engine = eng.chat
        llm = engine.llm_for(ChatOptions())
        server = llm.model.server()
        count = llm.count_tokens
        system = engine.settings.system_prompt

        def examples(question: str) -> int:
            if engine.settings.examples == "off":
                return 0
            shown = worked_examples(question, engine.settings.examples == "with-refusal")
            return sum(count(user_message(q, s)) + count(a) for q, s, a in shown)

        def one(q) -> dict:
            t0 = time.perf_counter()
            hits = [h for h in eng.retriever.search_all([q.text], filters, k=engine.source_count(llm, ChatOptions()))
                    if h.relevant]
            t1 = time.perf_counter()
            sources = [source_of(i + 1, h) for i, h in enumerate(hits)]
            passages = engine.passages(q.text, sources, llm)
            t2 = time.perf_counter()
            msgs = engine.prompt(q.text, [], sources, system, passages)
            body = {"messages": [{"role": {"system": "system", "human": "user", "ai": "assistant"}[m.type],
                                  "content": m.content} for m in msgs],
                    "max_tokens": 1, "temperature": 0}
            reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=server.headers, timeout=300).json()
            t3 = time.perf_counter()
            timings = reply.get("timings", {})
            blocks = "\n\n".join(f"[{s.id}] {p}" for s, p in zip(sources, passages))
            return {"id": q.id, "search_s": t1 - t0, "excerpts_s": t2 - t1, "prompt_eval_s": t3 - t2,
                    "first_token_s": t3 - t0, "system_tokens": count(system), "example_tokens": examples(q.text),
                    "instruction_tokens": count(instruction(q.text)), "source_tokens": count(blocks) if blocks else 0,
                    "question_tokens": count(q.text), "read_tokens": timings.get("prompt_n"),
                    "cached_tokens": timings.get("cache_n"), "prompt_tok_s": timings.get("prompt_per_second")}

        one(questions[0])  # loads the model and fills the cache with the fixed prefix, as in a running app
        for q in questions[1:]:  # not the warm-up question again: its whole prompt is cached
            row = one(q)
            rows.append(row)
            print(f"{row['id']}: first token {row['first_token_s']:.2f} s (search {row['search_s']:.2f}, excerpts "
                  f"{row['excerpts_s']:.2f}, prompt {row['prompt_eval_s']:.2f}); read {row['read_tokens']} tokens, "
                  f"cached {row['cached_tokens']}, {row['prompt_tok_s'] or 0:.0f} tok/s", flush=True)
    med = {k: round(statistics.median(r[k] for r in rows if r[k] is not None), 3)
           for k in rows[0] if k != "id" and any(r[k] is not None for r in rows)}
    print("medians: " + ", ".join(f"{k} {v}" for k, v in med.items()))
    print(json.dumps({"set": args.qa_dir.name, "questions": len(rows), "model": llm.model_name,
                      "threads": server_threads(settings), **med}))


def server_threads(settings: Settings) -> int:
    import os

    return settings.llm.threads or len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
