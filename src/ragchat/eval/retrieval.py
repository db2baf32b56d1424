"""`ragchat eval`: retrieval quality on a BEIR-format data set, through the very retrieval code chat uses.

corpus.jsonl lines become one document each (title and text together, `_id` as the source), in a
temporary store unless --store names one (then a corpus already ingested there is not embedded
again). Every query with judgements in qrels/<split>.tsv is run; nDCG@10, Recall@100 and MRR@10
are computed here from the qrels, with graded relevance as BEIR does.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Iterator

from ragchat.core.errors import RagchatError
from ragchat.core.settings import Settings
from ragchat.engine import Engine
from ragchat.eval.stats import percentile

EVAL_COLLECTION = "beir"


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (i == 0 and not parts[2].lstrip("-").isdigit()):
                continue  # header
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def load_queries(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return {q["_id"]: q["text"] for q in map(json.loads, filter(str.strip, f))}


def iter_corpus(path: Path) -> Iterator[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                title = (d.get("title") or "").strip()
                text = (d.get("text") or "").strip()
                yield str(d["_id"]), f"{title}\n{text}" if title else text


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** rels.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def doc_ranking(hits) -> list[str]:
    """Chunk hits -> document ids in order of their best chunk."""
    seen: dict[str, None] = {}
    for h in hits:
        seen.setdefault(h.source, None)
    return list(seen)


def run_eval(settings: Settings, beir_dir: Path, split: str = "test", mode: str | None = None, as_json: bool = False,
             store: Path | None = None, limit: int | None = None) -> int:
    qrels_path = beir_dir / "qrels" / f"{split}.tsv"
    for p in (beir_dir / "corpus.jsonl", beir_dir / "queries.jsonl", qrels_path):
        if not p.is_file():
            raise RagchatError(f"{p} is missing: BEIR_DIR must hold corpus.jsonl, queries.jsonl and qrels/{split}.tsv")
    qrels = load_qrels(qrels_path)
    queries = load_queries(beir_dir / "queries.jsonl")
    qids = [q for q in qrels if q in queries][: limit or None]
    mode = mode or settings.retrieval.mode

    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ragchat-eval-")
        settings = settings.model_copy(update={"store": Path(tmp.name), "catalog_url": ""})
    try:
        with Engine(settings) as eng:
            t0 = time.perf_counter()
            eng.ingestor.ingest_texts(iter_corpus(beir_dir / "corpus.jsonl"), EVAL_COLLECTION)
            ingest_s = time.perf_counter() - t0
            docs = len(eng.catalog.documents(collections=[EVAL_COLLECTION], status="done"))
            chunks = eng.catalog.count_chunks()
            ndcg, recall, mrr, lat = [], [], [], []
            for qid in qids:
                t = time.perf_counter()
                hits = eng.retriever.search(queries[qid], k=100, mode=mode, candidates=100)
                lat.append((time.perf_counter() - t) * 1000)
                ranked = doc_ranking(hits)
                ndcg.append(ndcg_at(ranked, qrels[qid]))
                recall.append(recall_at(ranked, qrels[qid]))
                mrr.append(mrr_at(ranked, qrels[qid]))
    finally:
        if tmp is not None:
            tmp.cleanup()

    n = max(len(qids), 1)
    result = {
        "ndcg@10": round(sum(ndcg) / n, 4), "recall@100": round(sum(recall) / n, 4), "mrr@10": round(sum(mrr) / n, 4),
        "queries": len(qids), "docs": docs, "chunks": chunks, "mode": mode, "ingest_s": round(ingest_s, 2),
        "query_ms_p50": round(percentile(lat, 50), 2) if lat else 0.0,
        "query_ms_p95": round(percentile(lat, 95), 2) if lat else 0.0,
    }
    print(f"{beir_dir.name} ({split}), mode {mode}: {result['queries']} queries over {docs} documents")
    print(f"  nDCG@10     {result['ndcg@10']:.4f}")
    print(f"  Recall@100  {result['recall@100']:.4f}")
    print(f"  MRR@10      {result['mrr@10']:.4f}")
    print(f"  ingest      {ingest_s:.1f} s;  query p50 {result['query_ms_p50']:.1f} ms, p95 {result['query_ms_p95']:.1f} ms")
    if as_json:
        print(json.dumps(result))
    return 0
