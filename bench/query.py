"""Retrieval latency at scale: Retriever.search over a store of N generated chunks.

    .venv/bin/python bench/query.py --chunks 100000
    .venv/bin/python bench/query.py --chunks 300000 --queries 300 --backend onnx-int8 --profile /tmp/query.html

The path timed is the one chat uses, without the LLM: query embedding, dense search (Chroma HNSW),
lexical search (Tantivy BM25), fusion (convex by default), the "done documents only" filter and the
catalog lookup of the top hits. A quarter of the queries also carry a collection filter.

How the store is built (``--store``, default /tmp/ragchat-bench/query-<N>; an existing one is reused,
a smaller one built by this script is extended):
- text: each chunk takes 3-8 consecutive sentences of one "topic" passage (a SciFact abstract, or a
  paragraph of the Chinese newsletters in samples/seeds, about 1 in 12) plus 1-2 sentences drawn from
  anywhere, so BM25 sees natural term statistics and every topic recurs in many chunks;
- vectors: the real embedding of the topic passage (computed once with the configured embedder and
  cached in the store as bench_pool.npz) plus Gaussian noise, normalised (cosine to the passage about 0.9);
- 25 chunks per document, documents spread over 3 collections, all "done";
- written straight through the app's index classes in blocks of 10,000: VectorIndex.add (Chroma:
  ids, vectors and metadata, as the ingest pipeline does), LexicalIndex.add (Tantivy), and the
  catalog's documents and chunks tables (bulk INSERT).

Queries: the first Q distinct SciFact queries (real questions), with every tenth replaced by a
Chinese phrase from the seeds. Five warm-up queries are not counted (the first one loads the HNSW
index and the model; its time is printed apart). Prints a table, a per-stage breakdown measured in a
second pass, then one JSON line {"chunks","p50_ms","p95_ms","p99_ms","rss_mb","disk_mb"}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ragchat.core.text import CJK_RANGE
from ragchat.eval.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SCIFACT = SHARED / "data" / "beir" / "scifact"
SEEDS = SHARED / "samples" / "seeds"
BLOCK = 10_000
CHUNKS_PER_DOC = 25
COLLECTIONS = ("default", "research", "team")
POOL_SCIFACT = 1000  # topic passages embedded once for the vectors
NOISE = 0.025  # per dimension; with 384 dimensions the cosine to the topic vector is about 0.9

_EN_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
_ZH_SENT = re.compile(r"(?<=[。！？；])|\n+")


def load_passages() -> tuple[list[list[str]], list[str]]:
    """Topic passages as lists of sentences (SciFact abstracts, then seed paragraphs), and Chinese phrases."""
    passages: list[list[str]] = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            sents = [s.strip() for s in _EN_SENT.split(d.get("text", "")) if len(s.strip()) > 20]
            if len(sents) >= 3:
                passages.append(sents)
    zh_phrases: list[str] = []
    for p in sorted(SEEDS.glob("*.txt")):
        sents = [s.strip(" -*#\t") for s in _ZH_SENT.split(p.read_text(encoding="utf-8"))]
        sents = [s for s in sents if len(s) >= 8 and not s.startswith("http")]
        for i in range(0, len(sents) - 3, 6):
            passages.append(sents[i : i + 6])
        zh_phrases += [re.sub(r"[，。！？；：、“”（）()\s]+", " ", s)[:14].strip() for s in sents if 10 <= len(s) <= 60]
    return passages, zh_phrases


def topic_pool(passages: list[list[str]]) -> list[int]:
    """Indexes of the passages used as topics: the first POOL_SCIFACT abstracts and every seed paragraph."""
    zh = [i for i, p in enumerate(passages) if re.search(f"[{CJK_RANGE}]", p[0])]
    en = [i for i in range(len(passages)) if i not in set(zh)][:POOL_SCIFACT]
    return en + zh


def pool_vectors(store: Path, embedder, passages: list[list[str]], pool: list[int]) -> np.ndarray:
    cache = store / "bench_pool.npz"
    if cache.exists():
        data = np.load(cache)
        if list(data["pool"]) == pool:
            return data["vectors"]
    print(f"embedding {len(pool)} topic passages once (cached in {cache}) ...", flush=True)
    t = time.perf_counter()
    vecs = np.asarray(embedder.embed_documents([" ".join(passages[i])[:1200] for i in pool]), dtype=np.float32)
    print(f"  {time.perf_counter() - t:.1f} s", flush=True)
    np.savez(cache, pool=np.asarray(pool), vectors=vecs)
    return vecs


def gen_block(block: int, passages, pool, pool_vecs, all_sents):
    """Chunks [block*BLOCK, (block+1)*BLOCK): deterministic, so a store can be extended later."""
    rng = np.random.default_rng(1_000_003 + block)
    zh_topics = [j for j, i in enumerate(pool) if re.search(f"[{CJK_RANGE}]", passages[i][0])]
    en_topics = [j for j in range(len(pool)) if j not in set(zh_topics)]
    ids, texts, metas, topics, docs, chunks = [], [], [], [], [], []
    for n in range(BLOCK):
        i = block * BLOCK + n
        d, seq = divmod(i, CHUNKS_PER_DOC)
        doc_id = f"bench{d:011d}"
        collection = COLLECTIONS[d % len(COLLECTIONS)]
        if seq == 0:
            docs.append({"id": doc_id, "source": f"bench/doc{d:07d}.txt", "collection": collection, "owner": None,
                         "sha256": "", "size": 0, "kind": "txt", "pages": 1, "chunks": CHUNKS_PER_DOC, "status": "done",
                         "error": None, "embed_model": "", "original": None})
        t = int(rng.choice(zh_topics)) if rng.random() < 1 / 12 else int(rng.choice(en_topics))
        sents = passages[pool[t]]
        k = int(rng.integers(3, 9))
        start = int(rng.integers(0, max(1, len(sents) - k + 1)))
        body = sents[start : start + k] + [all_sents[int(x)] for x in rng.integers(0, len(all_sents), int(rng.integers(1, 3)))]
        text = " ".join(body)[:1100]
        cid = f"{i:032x}"
        ids.append(cid)
        texts.append(text)
        metas.append({"doc_id": doc_id, "source": f"bench/doc{d:07d}.txt", "collection": collection, "page": -1})
        topics.append(t)
        chunks.append({"id": cid, "doc_id": doc_id, "seq": seq, "page": None, "start": 0, "end": len(text), "text": text})
    noise = rng.standard_normal((BLOCK, pool_vecs.shape[1]), dtype=np.float32) * NOISE
    vecs = pool_vecs[np.asarray(topics)] + noise
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return ids, texts, metas, vecs, docs, chunks


def build(engine, target: int) -> None:
    from sqlalchemy import insert

    from ragchat.store.tables import ChunkRow, Document

    have = engine.catalog.count_chunks()
    if have >= target:
        return
    if have % BLOCK:
        sys.exit(f"{engine.store} holds {have} chunks, not a multiple of {BLOCK}: it was not built by this script")
    passages, _ = load_passages()
    pool = topic_pool(passages)
    pool_vecs = pool_vectors(engine.store, engine.embedder, passages, pool)
    all_sents = [s for p in passages for s in p]
    model_id = engine.embedder.model_id
    engine.catalog.set_meta("embed_model", model_id)
    t_all = time.perf_counter()
    for block in range(have // BLOCK, (target + BLOCK - 1) // BLOCK):
        t0 = time.perf_counter()
        ids, texts, metas, vecs, docs, chunks = gen_block(block, passages, pool, pool_vecs, all_sents)
        t1 = time.perf_counter()
        engine.vectors.add(ids, vecs.tolist(), metas)
        t2 = time.perf_counter()
        engine.lexical.add((c, m["doc_id"], m["collection"], t) for c, m, t in zip(ids, metas, texts))
        t3 = time.perf_counter()
        for d in docs:
            d["embed_model"] = model_id
        with engine.catalog.session() as s, s.begin():  # written last: its count marks a finished block
            s.execute(insert(Document), docs)
            s.execute(insert(ChunkRow), chunks)
        t4 = time.perf_counter()
        done = (block + 1) * BLOCK
        print(f"  {done:>9,} chunks  gen {t1 - t0:5.1f}s  chroma {t2 - t1:6.1f}s  bm25 {t3 - t2:5.1f}s  catalog {t4 - t3:4.1f}s"
              f"  ({(done - have) / (t4 - t_all):.0f} chunks/s overall)", flush=True)


def queries(q: int) -> list[str]:
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        en = list(dict.fromkeys(json.loads(line)["text"] for line in f if line.strip()))
    _, zh = load_passages()
    zh = list(dict.fromkeys(p for p in zh if len(p) >= 6))
    out = []
    for i in range(q):
        out.append(zh[(i // 10) % len(zh)] if i % 10 == 9 else en[i % len(en)])
    if len(set(out)) < q:
        sys.exit(f"only {len(set(out))} distinct queries available")
    return out


def disk_mb(store: Path) -> float:
    total = 0
    for root, dirs, files in os.walk(store):
        if Path(root) == store:
            dirs[:] = [d for d in dirs if d != "cache"]  # the exported ONNX model is not part of the index
        total += sum(os.path.getsize(Path(root) / f) for f in files if f != "bench_pool.npz")
    return total / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, required=True, help="chunks in the store (rounded up to a multiple of 10,000)")
    ap.add_argument("--queries", type=int, default=300, help="distinct queries to time (at least 200 for the issue)")
    ap.add_argument("--store", type=Path, help="store folder (default /tmp/ragchat-bench/query-<N>)")
    ap.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], help="override embedding.backend")
    ap.add_argument("--build-only", action="store_true", help="build or extend the store, measure nothing")
    ap.add_argument("--profile", help="write a pyinstrument profile of the timed loop here (.html, plus .txt)")
    args = ap.parse_args()
    target = (args.chunks + BLOCK - 1) // BLOCK * BLOCK
    store = args.store or Path(f"/tmp/ragchat-bench/query-{target}")
    store.mkdir(parents=True, exist_ok=True)

    import psutil

    from ragchat.core.settings import load_settings
    from ragchat.engine import Engine
    from ragchat.retrieve.search import Filters

    config = ROOT / "config.toml"
    settings = load_settings(config if config.exists() else None, store=store)
    if args.backend:
        settings.embedding.backend = args.backend
    proc = psutil.Process()

    with Engine(settings) as engine:
        t = time.perf_counter()
        build(engine, target)
        print(f"store {store}: {engine.catalog.count_chunks():,} chunks (build/extend {time.perf_counter() - t:.0f} s)", flush=True)
    if args.build_only:
        return

    # Measure in a fresh Engine, as a restarted app would see the store.
    qs = queries(args.queries)
    with Engine(settings) as engine:
        retriever = engine.retriever
        n_chunks = engine.catalog.count_chunks()
        rss_open = proc.memory_info().rss / 1e6
        t = time.perf_counter()
        retriever.search("warm-up query about cell biology")
        first_ms = (time.perf_counter() - t) * 1000
        for w in ("protein folding", "机器学习 模型", "vaccine efficacy trial", "gene expression in mice"):
            retriever.search(w)
        filt = Filters(collections=["default", "research"])
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        lat, lat_f = [], []
        for i, q in enumerate(qs):
            f = filt if i % 4 == 3 else Filters()
            t = time.perf_counter()
            retriever.search(q, f)
            (lat_f if f is filt else lat).append((time.perf_counter() - t) * 1000)
        if profiler:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_html())
            Path(args.profile).with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False))
        rss = proc.memory_info().rss / 1e6

        # Second pass: the stages one by one (same queries, no filters), to see what dominates.
        stages = {"embed": [], "dense": [], "lexical": [], "catalog": []}
        n = retriever.settings.candidates
        for q in qs:
            t0 = time.perf_counter()
            vec = engine.embedder.embed_query(q)
            t1 = time.perf_counter()
            dense = engine.vectors.search(vec, n)
            t2 = time.perf_counter()
            lexical = engine.lexical.search(q, n)
            t3 = time.perf_counter()
            retriever._rows([h.chunk_id for h in (dense + lexical)[:4]])
            t4 = time.perf_counter()
            for k, a, b in (("embed", t0, t1), ("dense", t1, t2), ("lexical", t2, t3), ("catalog", t3, t4)):
                stages[k].append((b - a) * 1000)

    every = lat + lat_f
    disk = disk_mb(store)
    print(f"\nload average (1 min): {os.getloadavg()[0]:.2f}; backend {settings.embedding.backend}; {n_chunks:,} chunks; "
          f"{len(every)} distinct queries; first (cold) query {first_ms:.0f} ms")
    print(f"{'queries':<28}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, xs in (("all", every), ("no filter", lat), ("collection filter", lat_f)):
        if xs:
            print(f"{name:<28}{len(xs):>5}{percentile(xs, 50):>9.1f}{percentile(xs, 95):>9.1f}{percentile(xs, 99):>9.1f}{statistics.mean(xs):>9.1f}")
    print("stages (second pass, no filter):")
    for k, xs in stages.items():
        print(f"  {k:<26}{len(xs):>5}{percentile(xs, 50):>9.1f}{percentile(xs, 95):>9.1f}{percentile(xs, 99):>9.1f}{statistics.mean(xs):>9.1f}")
    print(f"RSS after opening {rss_open:.0f} MB, after the queries {rss:.0f} MB; store on disk {disk:.0f} MB")
    print(json.dumps({"chunks": n_chunks, "p50_ms": round(percentile(every, 50), 2), "p95_ms": round(percentile(every, 95), 2),
                      "p99_ms": round(percentile(every, 99), 2), "rss_mb": round(rss, 1), "disk_mb": round(disk, 1)}))


if __name__ == "__main__":
    main()
