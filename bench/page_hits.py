"""Page-level hits for the PDF questions (bench/data/pdf_qa) at several BM25 weights (docs/RETRIEVAL.md).

    .venv/bin/python bench/page_hits.py STORE     # a store that holds the shared PDFs (bench/answerability.py --files)

For each answerable question with a gold page: is a chunk of that file's page the first hit, and is
one in the top 4 (the sources the model reads)? Run with RAGCHAT_EMBEDDING__MODEL set to the store's model.
"""

import json
import sys
from pathlib import Path

from ragchat.core.settings import load_settings
from ragchat.engine import Engine

QUESTIONS = Path(__file__).parent / "data" / "pdf_qa" / "queries.jsonl"


def main() -> None:
    qs = [json.loads(line) for line in QUESTIONS.open(encoding="utf-8")]
    qs = [q for q in qs if q["metadata"].get("page") and q["metadata"].get("answers")]
    base = load_settings(store=Path(sys.argv[1]))
    with Engine(base) as eng:
        for weight in (1.0, 0.5, 0.3, 0.0):
            eng.retriever.settings = base.retrieval.model_copy(update={"lexical_weight": weight})
            at1 = at4 = 0
            for q in qs:
                gold = [h.source.endswith(q["metadata"]["file"]) and h.page == q["metadata"]["page"]
                        for h in eng.retriever.search(q["text"], k=4)]
                at1 += bool(gold and gold[0])
                at4 += any(gold)
            print(f"lexical weight {weight}: gold page first {at1}/{len(qs)}, in the top 4 {at4}/{len(qs)}")


if __name__ == "__main__":
    main()
