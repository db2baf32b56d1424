"""Questions whose answer sits in a table cell: retrieval with PDF tables as text and as Markdown, in one run.

    .venv/bin/python bench/tables.py ../shared/data/pdfs
    .venv/bin/python bench/tables.py ../shared/data/pdfs --parse-all   # also: parse time of every PDF there
    .venv/bin/python bench/tables.py ../shared/data/pdfs --parse-only  # only that
    .venv/bin/python bench/tables.py ../shared/data/pdfs --ingest FILE_OR_DIR...  # ingest time, off and on

The questions are bench/data/tables (BEIR layout: queries.jsonl, qrels/test.tsv). Each qrel points
at a document and page ("FILE#pN"); the query's metadata holds the answer cell's value. The corpus
is not in the folder: it is what ragchat makes of the PDFs named in the qrels, which are read from
the folder given.

The PDFs are ingested twice by the app's own code (``Engine(settings).ingestor.ingest``, the
configured embedder and chunking), each time into an empty temporary store: once with
``ingest.pdf_tables = false`` (pypdf's text, as before) and once with ``true`` (ruled tables as
Markdown rows, ``ragchat.ingest.formats.pdf_tables``). Then every question goes through
``Retriever.search`` (the default hybrid retrieval, 10 hits) in both stores.

A hit is a retrieved chunk of the right document, on the right page, whose text holds the answer
cell's value (whitespace ignored). Printed per question (rank of the first hit, 0 for none in the
top 10) and in all, English and Chinese apart: hit@1, hit@5 and MRR@10. The ingest wall time of
each store is printed too (loading the embedder included), and with --parse-all the parse time of
every PDF in the folder with and without tables (the loader in this process, OCR off, the faster
of two interleaved rounds). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "tables"
K = 10


def norm(text: str) -> str:
    return re.sub(r"\s+", "", text)


def read_set(folder: Path) -> list[dict]:
    queries = {q["_id"]: q for q in map(json.loads, filter(str.strip, (folder / "queries.jsonl").open(encoding="utf-8")))}
    out = []
    for line in (folder / "qrels" / "test.tsv").open(encoding="utf-8"):
        qid, target, score = line.rstrip("\n").split("\t")
        if qid == "query-id" or int(score) <= 0:
            continue
        file, page = target.rsplit("#p", 1)
        q = queries[qid]
        out.append({"id": qid, "text": q["text"], "file": file, "page": int(page), "answer": q["metadata"]["answer"],
                    "lang": q["metadata"]["lang"]})
    return out


def check_answers(questions: list[dict], pdfs: Path) -> None:
    """Every answer must be on its page in both modes, or the question measures nothing."""
    from ragchat.ingest.loaders import load

    for tables in (False, True):
        pages = {}
        for f in sorted({q["file"] for q in questions}):
            pages[f] = {p.number: norm(p.text) for p in load(pdfs / f, ocr="off", pdf_tables=tables).pages}
        for q in questions:
            if norm(q["answer"]) not in pages[q["file"]].get(q["page"], ""):
                sys.exit(f"{q['id']}: {q['answer']!r} is not on page {q['page']} of {q['file']} (pdf_tables={tables})")


def run_store(questions: list[dict], pdfs: Path, tables: bool) -> dict:
    from ragchat.core.settings import load_settings
    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect

    files = [pdfs / f for f in sorted({q["file"] for q in questions})]
    with tempfile.TemporaryDirectory(prefix="ragchat-tables-") as store:
        config = ROOT / "config.toml"
        settings = load_settings(config if config.exists() else None, store=Path(store), catalog_url="")
        settings.ingest = settings.ingest.model_copy(update={"pdf_tables": tables})
        start = time.perf_counter()
        with Engine(settings) as engine:
            results = engine.ingestor.ingest(collect(files), "tables")
            ingest_s = time.perf_counter() - start
            failed = [r for r in results if r.outcome == "failed"]
            chunks = sum(r.chunks for r in results)
            ranks = {}
            for q in questions:
                hits = engine.retriever.search(q["text"], k=K)
                ranks[q["id"]] = next(
                    (i for i, h in enumerate(hits, 1)
                     if h.source == q["file"] and h.page == q["page"] and norm(q["answer"]) in norm(h.text)),
                    0,
                )
    return {"ingest_s": ingest_s, "ranks": ranks, "chunks": chunks, "failed": len(failed)}


def ingest_time(paths: list[Path], tables: bool) -> tuple[float, int]:
    """Wall time (embedder load included) and chunks of ingesting paths into an empty store."""
    from ragchat.core.settings import load_settings
    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect

    with tempfile.TemporaryDirectory(prefix="ragchat-tables-") as store:
        config = ROOT / "config.toml"
        settings = load_settings(config if config.exists() else None, store=Path(store), catalog_url="")
        settings.ingest = settings.ingest.model_copy(update={"pdf_tables": tables})
        start = time.perf_counter()
        with Engine(settings) as engine:
            results = engine.ingestor.ingest(collect(paths), "speed")
        return time.perf_counter() - start, sum(r.chunks for r in results)


def scores(ranks: list[int]) -> dict:
    n = max(1, len(ranks))
    return {
        "hit@1": round(sum(r == 1 for r in ranks) / n, 3),
        "hit@5": round(sum(1 <= r <= 5 for r in ranks) / n, 3),
        "mrr@10": round(sum(1 / r for r in ranks if r) / n, 3),
        "n": len(ranks),
    }


def parse_times(pdfs: Path) -> list[tuple[str, int, float, float, int]]:
    """(file, pages, best s without tables, best s with tables, pages whose text changed) per PDF."""
    from ragchat.core.errors import LoadError
    from ragchat.ingest.loaders import load

    best: dict[tuple[str, bool], float] = {}
    texts: dict[tuple[str, bool], list[str]] = {}
    files = sorted(pdfs.glob("*.pdf"))
    for _ in range(2):
        for f in files:
            for tables in (False, True):
                start = time.perf_counter()
                try:
                    doc = load(f, ocr="off", pdf_tables=tables)
                    texts[f.name, tables] = [p.text for p in doc.pages]
                except LoadError:
                    texts[f.name, tables] = []
                took = time.perf_counter() - start
                best[f.name, tables] = min(best.get((f.name, tables), took), took)
    return [(f.name, len(texts[f.name, True]), best[f.name, False], best[f.name, True],
             sum(a != b for a, b in zip(texts[f.name, False], texts[f.name, True]))) for f in files]


def print_parse_times(pdfs: Path, result: dict) -> None:
    rows = parse_times(pdfs)
    print(f"\nparse of every PDF in {pdfs} (OCR off, in this process, best of 2 interleaved rounds):")
    print(f"{'file':52} {'pages':>5} {'without s':>9} {'with s':>7} {'changed pages':>13}")
    for name, pages, off, on, changed in rows:
        print(f"{name:52} {pages:>5} {off:>9.2f} {on:>7.2f} {changed:>13}")
    off, on, pages = sum(r[2] for r in rows), sum(r[3] for r in rows), sum(r[1] for r in rows)
    print(f"{'all':52} {pages:>5} {off:>9.2f} {on:>7.2f}   ({on / off:.2f}x)")
    result["parse_s"] = {"before": round(off, 2), "after": round(on, 2), "pages": pages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pdfs", type=Path, help="folder holding the PDFs the qrels name (../shared/data/pdfs)")
    parser.add_argument("--data", type=Path, default=DATA, help="the labelled set (default bench/data/tables)")
    parser.add_argument("--parse-all", action="store_true", help="also time parsing every PDF in the folder both ways")
    parser.add_argument("--parse-only", action="store_true", help="only time parsing every PDF in the folder both ways")
    parser.add_argument("--ingest", type=Path, nargs="+", metavar="PATH",
                        help="only time ingesting these files or folders, without and with tables, in rounds (see --rounds)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds for --ingest (default 2; the faster run is kept)")
    args = parser.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    if args.ingest:
        runs = {False: [], True: []}
        for _ in range(args.rounds):
            for tables in (False, True):
                runs[tables].append(ingest_time(args.ingest, tables))
        for tables in (False, True):
            print(f"ingest with pdf_tables={str(tables).lower():5}: best {min(r[0] for r in runs[tables]):.2f} s "
                  f"(all runs: {', '.join(f'{r[0]:.2f}' for r in runs[tables])}), {runs[tables][0][1]} chunks")
        print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
        return 0
    if args.parse_only:
        print_parse_times(args.pdfs, {})
        print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
        return 0
    questions = read_set(args.data)
    check_answers(questions, args.pdfs)
    runs = {}
    for tables in (False, True):
        runs[tables] = run_store(questions, args.pdfs, tables)

    print(f"{len(questions)} questions ({sum(q['lang'] == 'en' for q in questions)} English, "
          f"{sum(q['lang'] == 'zh' for q in questions)} Chinese) over {len({q['file'] for q in questions})} PDFs; "
          f"rank of the first chunk on the right page holding the answer (0: not in the top {K})\n")
    print(f"{'id':4} {'lang':4} {'page':>4} {'before':>6} {'after':>6}  question")
    for q in questions:
        print(f"{q['id']:4} {q['lang']:4} {q['page']:>4} {runs[False]['ranks'][q['id']]:>6} {runs[True]['ranks'][q['id']]:>6}  "
              f"{q['text'][:70]}")
    summary = {}
    print(f"\n{'set':8} {'n':>3} | {'before: hit@1':>13} {'hit@5':>6} {'MRR@10':>7} | {'after: hit@1':>12} {'hit@5':>6} {'MRR@10':>7}")
    for name, keep in (("all", lambda q: True), ("English", lambda q: q["lang"] == "en"), ("Chinese", lambda q: q["lang"] == "zh")):
        chosen = [q for q in questions if keep(q)]
        before = scores([runs[False]["ranks"][q["id"]] for q in chosen])
        after = scores([runs[True]["ranks"][q["id"]] for q in chosen])
        summary[name] = {"before": before, "after": after}
        print(f"{name:8} {len(chosen):>3} | {before['hit@1']:>13.3f} {before['hit@5']:>6.3f} {before['mrr@10']:>7.3f} | "
              f"{after['hit@1']:>12.3f} {after['hit@5']:>6.3f} {after['mrr@10']:>7.3f}")
    print(f"\ningest of the {len({q['file'] for q in questions})} PDFs (wall, embedder load included): "
          f"before {runs[False]['ingest_s']:.1f} s ({runs[False]['chunks']} chunks), "
          f"after {runs[True]['ingest_s']:.1f} s ({runs[True]['chunks']} chunks)")
    result = {"questions": len(questions), **{k: v for k, v in summary.items()},
              "ingest_s": {"before": round(runs[False]["ingest_s"], 2), "after": round(runs[True]["ingest_s"], 2)},
              "chunks": {"before": runs[False]["chunks"], "after": runs[True]["chunks"]}}
    if args.parse_all:
        print_parse_times(args.pdfs, result)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
