"""One retrieval function used by chat, the CLI and `ragchat eval` alike.

Dense (Chroma) and lexical (BM25) rankings are fused with weighted reciprocal rank fusion (or a
weighted sum of min-max normalised scores, `retrieval.fusion = "convex"`). The
weight of the dense ranking adapts to the query's language: an English-only embedder understands
little Chinese, so for a Chinese query its ranking gets `cjk_dense_weight` instead of
`dense_weight` and BM25 leads. With a dense ranking that reads the query, BM25's weight shrinks when
its best hits hold few of the query's terms (a question in another language than the passages;
`retrieval.adaptive_lexical`). Filters (collections, documents) are applied to both rankings,
and only chunks of documents whose ingestion finished ("done") are ever returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import select

from ragchat.core.text import analyze, cjk_share, question_terms
from ragchat.core.settings import RetrievalSettings
from ragchat.retrieve.fusion import fuse
from ragchat.store.catalog import Catalog
from ragchat.store.tables import ChunkRow, Document
from ragchat.store.lexical import LexicalIndex
from ragchat.store.vectors import VectorIndex


_MAX_OVERFETCH = 8  # at most this many unfiltered hits per wanted one when a filter applies (Retriever._dense)


def latin_names(query: str, terms: set[str]) -> set[str]:
    """In a Chinese question, the Latin-script terms (TableFormer, DPR, FAISS): names, which an English
    document spells the same way. A passage holding all of them is relevant even though the rest of
    the question shares no word with it (the embedder reads no Chinese)."""
    if cjk_share(query) < 0.3:
        return set()
    return {t for t in terms if t.isascii() and t.isalpha() and len(t) >= 2}


@dataclass(frozen=True)
class Filters:
    collections: Sequence[str] | None = None  # None = all
    doc_ids: Sequence[str] | None = None  # None = all


@dataclass
class Hit:
    chunk_id: str
    doc_id: str
    source: str
    collection: str
    page: int | None
    start: int
    end: int
    text: str
    score: float  # fused score
    dense: float | None = None  # cosine similarity, when the dense index returned it
    lexical: float | None = None  # BM25 score, when the lexical index returned it
    coverage: float = 0.0  # share of query terms found in the chunk
    relevant: bool = field(default=True)


class Retriever:
    def __init__(self, settings: RetrievalSettings, embedder, vectors: VectorIndex, lexical: LexicalIndex,
                 catalog: Catalog, multilingual: bool):
        self.settings = settings
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = lexical
        self.catalog = catalog
        self.multilingual = multilingual
        self._collection_docs: dict[tuple[str, ...], tuple[frozenset[str], frozenset[str]]] = {}

    def reads(self, query: str) -> bool:
        """Whether the embedder understands the query's language (an English-only one does not read Chinese)."""
        return self.multilingual or cjk_share(query) < 0.3

    def dense_weight(self, query: str) -> float:
        return self.settings.dense_weight if self.reads(query) else self.settings.cjk_dense_weight

    def closeness(self, query: str, hits: list[Hit]) -> float | None:
        """The cosine between the query and the closest of these hits written in the query's language
        (Chinese or not), when the embedder reads that language; else None. Across languages cosines run
        lower: with EmbeddingGemma, 25-30 % of XQuAD's cross-language questions score under 0.4, and
        none of RGB's Chinese or 3 % of ClapNQ's English answerable ones (docs/ANSWERS.md), so one
        threshold cannot serve both; and when a passage in the other language is closer than every one
        in the question's, the question is about it, and its cosine is on another scale (None). An
        English-only embedder's cosine between an English question and a Chinese passage says nothing."""
        chinese = cjk_share(query) >= 0.3
        same, other = [], []
        for h in hits:
            if h.dense is not None:
                (same if (cjk_share(h.text) >= 0.3) == chinese else other).append(h.dense)
        if not same or not self.reads(query) or (self.multilingual and max(other, default=-1.0) >= max(same)):
            return None
        return max(same)

    def search(self, query: str, filters: Filters = Filters(), k: int | None = None, mode: str | None = None,
               candidates: int | None = None, weight: float | None = None) -> list[Hit]:
        """The k best chunks for query, best first, each marked relevant or not. weight: the dense
        ranking's share of the fusion, 0 (lexical only) to 1 (dense only), in place of the settings'
        weights and their adaptive rules (the retrieval test view's slider)."""
        k = k or self.settings.top_k
        mode = mode or self.settings.mode
        n = max(candidates or self.settings.candidates, k)
        if not query.strip() or (filters.collections is not None and not filters.collections) or (
            filters.doc_ids is not None and not filters.doc_ids
        ):
            return []
        dense, lexical = [], []
        if mode in ("hybrid", "dense"):
            vec = self.embedder.embed_query(query)
            dense = self._dense(vec, n, filters)
        if mode in ("hybrid", "lexical"):
            lexical = self._lexical(query, n, filters)

        searchable = self.catalog.searchable_doc_ids()
        dense = [h for h in dense if h.doc_id in searchable]
        lexical = [h for h in lexical if h.doc_id in searchable]

        qterms = question_terms(query)
        dense_trusted = mode != "lexical" and self.dense_weight(query) > 0
        weights = self._weights(query, qterms, lexical, mode, weight)
        fused = fuse(dense, lexical, self.settings.fusion, self.settings.rrf_k, weights)
        top = sorted(fused, key=fused.get, reverse=True)[:k]

        dmap = {h.chunk_id: h.score for h in dense}
        lmap = {h.chunk_id: h for h in lexical}
        rows = self._rows(top)
        names = latin_names(query, qterms)
        hits = []
        for cid in top:
            if cid not in rows:
                continue  # removed between the index query and now
            c, d = rows[cid]
            lh = lmap.get(cid)
            terms = set(analyze(c.text))
            coverage = len(qterms & terms) / len(qterms) if qterms else 0.0
            hit = Hit(cid, c.doc_id, d.source, d.collection, c.page, c.start, c.end, c.text, fused[cid],
                      dmap.get(cid), lh.score if lh else None, coverage)
            hit.relevant = self._relevant(hit, dense_trusted) or bool(names and names <= terms)
            hits.append(hit)
        return hits

    def search_all(self, queries: Sequence[str], filters: Filters = Filters(), k: int | None = None,
                   mode: str | None = None, weight: float | None = None) -> list[Hit]:
        """The k best chunks for several phrasings of one question (a follow-up alone and joined to the
        question before it), fused by rank: each chunk scores the sum of 1 / (rank + 1) over the
        phrasings that found it, and is relevant if it was for any of them. mode, weight: as for search."""
        if len(queries) == 1:
            return self.search(queries[0], filters, k, mode=mode, weight=weight)
        k = k or self.settings.top_k
        best: dict[str, Hit] = {}
        score: dict[str, float] = {}
        for query in queries:  # the fullest phrasing first: it wins ties
            for rank, hit in enumerate(self.search(query, filters, k, mode=mode, weight=weight)):
                score[hit.chunk_id] = score.get(hit.chunk_id, 0.0) + 1.0 / (rank + 1)
                kept = best.setdefault(hit.chunk_id, hit)
                kept.relevant = kept.relevant or hit.relevant
                kept.coverage = max(kept.coverage, hit.coverage)
                if hit.dense is not None and (kept.dense is None or hit.dense > kept.dense):
                    kept.dense = hit.dense
        top = sorted(score, key=lambda cid: -score[cid])[:k]  # stable: ties keep the first phrasing's order
        return [best[cid] for cid in top]

    def _weights(self, query: str, qterms: set[str], lexical: list, mode: str, weight: float | None) -> dict[str, float]:
        """Each ranking's weight in the fusion: the mode's, then weight's when given, else the settings'."""
        if weight is not None:
            weights = {"dense": float(weight), "lexical": 1.0 - float(weight)}
        else:
            lexical_weight = self.settings.lexical_weight_for(getattr(self.embedder, "model_id", None))
            weights = {"dense": self.dense_weight(query), "lexical": lexical_weight}
        if mode == "dense":
            weights["lexical"] = 0.0
        elif mode == "lexical":
            weights["dense"] = 0.0
        elif weight is None and self.settings.adaptive_lexical and weights["dense"] > 0:
            weights["lexical"] *= self._lexical_confidence(qterms, lexical)
        return weights

    def _lexical_confidence(self, qterms: set[str], lexical: list) -> float:
        """How far BM25's ranking can be trusted for this query: the largest share of the query's terms
        that one of its three best hits holds, over ``min_term_coverage``, at most 1. A question in one
        language over passages in another shares only names and numbers with them; min-max
        normalisation would give that noise the weight of a real match."""
        if not qterms or not lexical:
            return 1.0
        rows = self._rows([h.chunk_id for h in lexical[:3]])
        best = max((len(qterms & set(analyze(c.text))) / len(qterms) for c, _ in rows.values()), default=0.0)
        return min(1.0, best / self.settings.min_term_coverage) if self.settings.min_term_coverage else 1.0

    def _dense(self, vec, n: int, filters: Filters):
        """Dense hits under the filters. A Chroma metadata filter scans the metadata on every query
        (with it, collection-filtered searches took 1.5 s instead of 0.3 s at 100k chunks in
        bench/query.py), so take more neighbours unfiltered and keep those of allowed documents:
        1.5× what the allowed share of documents predicts. Chroma filters only when that share is
        small or too few pass. Same result either way: the allowed documents' best neighbours."""
        if filters.collections is None and filters.doc_ids is None:
            return self.vectors.search(vec, n)
        allowed = self._allowed_docs(filters)
        if not allowed:
            return []
        factor = 1.5 * len(self.catalog.searchable_doc_ids()) / len(allowed)
        if factor <= _MAX_OVERFETCH:
            wide_n = math.ceil(n * factor)
            wide = self.vectors.search(vec, wide_n)
            kept = [h for h in wide if h.doc_id in allowed]
            if len(kept) >= n or len(wide) < wide_n:  # enough, or the whole index was seen
                return kept[:n]
        return self.vectors.search(vec, n, filters.collections, filters.doc_ids)

    def _lexical(self, query: str, n: int, filters: Filters):
        """BM25 hits under the filters: Tantivy intersects the filter terms with the query's postings."""
        return self.lexical.search(query, n, filters.collections, filters.doc_ids)

    def _allowed_docs(self, filters: Filters) -> frozenset[str]:
        searchable = self.catalog.searchable_doc_ids()  # a new object whenever documents change
        allowed = searchable if filters.doc_ids is None else searchable & frozenset(filters.doc_ids)
        if filters.collections is None:
            return allowed
        key = tuple(sorted(set(filters.collections)))
        cached = self._collection_docs.get(key)
        if cached is None or cached[0] is not searchable:
            with self.catalog.session() as s:
                ids = frozenset(s.scalars(select(Document.id).where(Document.collection.in_(key))))
            cached = self._collection_docs[key] = (searchable, ids)
        return allowed & cached[1]

    def _relevant(self, hit: Hit, dense_trusted: bool) -> bool:
        if hit.coverage >= self.settings.min_term_coverage:
            return True
        return dense_trusted and hit.dense is not None and hit.dense >= self.settings.min_dense_score

    def _rows(self, ids: list[str]) -> dict[str, tuple[ChunkRow, Document]]:
        if not ids:
            return {}
        with self.catalog.session() as s:
            q = select(ChunkRow, Document).join(Document, Document.id == ChunkRow.doc_id).where(ChunkRow.id.in_(ids))
            return {c.id: (c, d) for c, d in s.execute(q)}
