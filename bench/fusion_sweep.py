"""Compare fusion settings on one BEIR set, side by side, on a store `ragchat eval` already built.

    ragchat --store /tmp/scifact eval ../shared/data/beir/scifact --mode dense     # builds the store once
    python bench/fusion_sweep.py ../shared/data/beir/scifact --store /tmp/scifact

Every row runs the same queries through Retriever.search (the code chat uses) with other
retrieval settings; nothing is re-embedded. This is a benchmark, not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ragchat.core.settings import load_settings
from ragchat.engine import Engine
from ragchat.eval.retrieval import doc_ranking, load_qrels, load_queries, mrr_at, ndcg_at, recall_at

CONFIGS = [  # retrieval.adaptive_lexical is on unless a row says "fixed"; "auto" rows are the defaults
    ("dense", "dense", {}),
    ("lexical (BM25)", "lexical", {}),
    ("rrf k=60, 1:1", "hybrid", {"fusion": "rrf", "rrf_k": 60, "lexical_weight": 1.0}),
    ("rrf k=60, dense 0.5", "hybrid", {"fusion": "rrf", "rrf_k": 60, "dense_weight": 0.5, "lexical_weight": 1.0}),
    ("convex 1:1, fixed", "hybrid", {"fusion": "convex", "adaptive_lexical": False, "lexical_weight": 1.0}),
    ("convex 1:1", "hybrid", {"fusion": "convex", "lexical_weight": 1.0}),
    ("convex dense 0.5", "hybrid", {"fusion": "convex", "dense_weight": 0.5, "lexical_weight": 1.0}),
    ("convex lexical 0.5", "hybrid", {"fusion": "convex", "lexical_weight": 0.5}),
    ("convex lexical 0.3", "hybrid", {"fusion": "convex", "lexical_weight": 0.3}),
    ("convex lexical auto", "hybrid", {"fusion": "convex"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("beir_dir", type=Path)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    qrels = load_qrels(args.beir_dir / "qrels" / f"{args.split}.tsv")
    queries = load_queries(args.beir_dir / "queries.jsonl")
    qids = [q for q in qrels if q in queries]
    base = load_settings(store=args.store)
    rows = []
    with Engine(base) as eng:
        for name, mode, over in CONFIGS:
            eng.retriever.settings = base.retrieval.model_copy(update=over)
            nd, rc, mr, lat = [], [], [], []
            for qid in qids:
                t = time.perf_counter()
                ranked = doc_ranking(eng.retriever.search(queries[qid], k=100, mode=mode, candidates=100))
                lat.append((time.perf_counter() - t) * 1000)
                nd.append(ndcg_at(ranked, qrels[qid]))
                rc.append(recall_at(ranked, qrels[qid]))
                mr.append(mrr_at(ranked, qrels[qid]))
            n = len(qids)
            rows.append({"config": name, "ndcg@10": round(sum(nd) / n, 4), "recall@100": round(sum(rc) / n, 4),
                         "mrr@10": round(sum(mr) / n, 4), "query_ms_p50": round(statistics.median(lat), 1)})
            r = rows[-1]
            print(f"{name:<24} nDCG@10 {r['ndcg@10']:.4f}  R@100 {r['recall@100']:.4f}  MRR@10 {r['mrr@10']:.4f}  "
                  f"p50 {r['query_ms_p50']:.1f} ms", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
