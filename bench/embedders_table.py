"""The Markdown table of docs/RETRIEVAL.md from the output of bench/embedders.sh.

    .venv/bin/python bench/embedders_table.py FIRST_RUN.log [LATER_RUN.log ...]

Each line of a log is `set<TAB>model<TAB>mode<TAB>{json}`. Quality and query times come from the last
log that has the row; ingestion (chunks/s) from the run that built the store (the row whose ingest
took longest: a later run finds every document unchanged).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    rows: dict[tuple[str, str, str], dict] = {}
    ingest: dict[tuple[str, str], tuple[float, int]] = {}
    for path in sys.argv[1:]:
        for line in open(path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4 or not parts[3].startswith("{"):
                continue
            name, model, mode, data = parts[0], parts[1], parts[2], json.loads(parts[3])
            rows[(name, model, mode)] = data
            if data["ingest_s"] > ingest.get((name, model), (0.0, 0))[0]:
                ingest[(name, model)] = (data["ingest_s"], data["chunks"])
    print("| set | embedder | mode | nDCG@10 | Recall@100 | MRR@10 | query p50 / p95 ms | chunks | ingest chunks/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    sets = list(dict.fromkeys(key[0] for key in rows))
    modes = ["hybrid", "hybrid-fixed", "dense", "lexical"]
    for (name, model, mode), r in sorted(rows.items(), key=lambda kv: (sets.index(kv[0][0]), kv[0][1] != "all-MiniLM-L6-v2",
                                                                      modes.index(kv[0][2]) if kv[0][2] in modes else 9)):
        seconds, chunks = ingest.get((name, model), (0.0, r["chunks"]))
        rate = f"{chunks / seconds:.1f}" if seconds else ""
        print(f"| {name} | {model} | {mode} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['mrr@10']:.4f} | "
              f"{r['query_ms_p50']:.0f} / {r['query_ms_p95']:.0f} | {r['chunks']:,} | {rate} |")


if __name__ == "__main__":
    main()
