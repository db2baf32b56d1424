"""The BM25 index: a Tantivy index in its own folder beside Chroma, updated incrementally.

Text is turned into terms by `ragchat.core.text` (stemming, stop words, Chinese word segmentation)
and stored space-separated, so Tantivy only splits on whitespace; it ranks with BM25 (k1 = 1.2,
b = 0.75). A query is a disjunction of its terms, which Tantivy answers with block-max WAND: it
skips the postings that cannot reach the top k, so a query costs milliseconds at a million chunks
(SQLite FTS5, used before, scored every chunk holding any query term: 160 ms at 300,000 chunks,
see docs/PERFORMANCE.md).

Every change is committed before the method returns, so what the catalog calls "done" is durable
and visible to the next search. Tantivy allows one writer per index, held by this object until
`close()`; the store lock (engine.py) keeps other processes out. In shared mode each process has
an index of its own that follows the catalog (lexical_follow.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import tantivy

from ragchat.core.text import analyze

LEXICAL_FORMAT = "tantivy-1"  # bump to rebuild every BM25 index (and shared mode's caches) from the catalog
_WRITER_HEAP = 64_000_000  # bytes of indexing buffer; the writer flushes a segment when it is full
_MAX_TERM = 64  # longer "words" (base64 blobs, hashes) are not searchable and only bloat the index


def _terms(text: str) -> list[str]:
    return [t for t in analyze(text) if len(t) <= _MAX_TERM]


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("terms", tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    sb.add_text_field("doc_id", stored=True, tokenizer_name="raw")
    sb.add_text_field("collection", tokenizer_name="raw")
    return sb.build()


@dataclass(frozen=True)
class LexicalHit:
    chunk_id: str
    doc_id: str
    score: float  # BM25, higher is better


class LexicalIndex:
    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._index = tantivy.Index(_schema(), path=str(path), reuse=True)
        self._schema = self._index.schema
        self._writer: tantivy.IndexWriter | None = None
        self._lock = threading.Lock()

    def _writer_locked(self) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self._index.writer(_WRITER_HEAP, 1)
        return self._writer

    def _commit_locked(self) -> None:
        self._writer_locked().commit()
        self._index.reload()

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.wait_merging_threads()  # also releases the writer's lock file
                self._writer = None

    def add(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """rows: (chunk_id, doc_id, collection, text). Re-adding a chunk id replaces it."""
        docs = [tantivy.Document(terms=" ".join(_terms(text)), chunk_id=cid, doc_id=did, collection=col)
                for cid, did, col, text in rows]
        with self._lock:
            w = self._writer_locked()
            for d in docs:
                w.delete_documents_by_term("chunk_id", d["chunk_id"][0])
                w.add_document(d)
            self._commit_locked()

    def delete(self, chunk_ids: Sequence[str]) -> None:
        if not chunk_ids:
            return
        with self._lock:
            w = self._writer_locked()
            for cid in chunk_ids:
                w.delete_documents_by_term("chunk_id", cid)
            self._commit_locked()

    def delete_doc(self, doc_id: str) -> None:
        with self._lock:
            self._writer_locked().delete_documents_by_term("doc_id", doc_id)
            self._commit_locked()

    def replace_docs(self, doc_ids: Sequence[str], rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Drop every chunk of these documents, then add rows (chunk_id, doc_id, collection, text), in one commit."""
        docs = [tantivy.Document(terms=" ".join(_terms(text)), chunk_id=cid, doc_id=did, collection=col)
                for cid, did, col, text in rows]
        with self._lock:
            w = self._writer_locked()
            for did in doc_ids:
                w.delete_documents_by_term("doc_id", did)
            for d in docs:
                w.add_document(d)
            self._commit_locked()

    def clear(self) -> None:
        with self._lock:
            self._writer_locked().delete_all_documents()
            self._commit_locked()

    def search(
        self,
        query: str,
        k: int,
        collections: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[LexicalHit]:
        terms = list(dict.fromkeys(_terms(query)))
        if not terms:
            return []
        Q = tantivy.Query
        q = Q.boolean_query([(tantivy.Occur.Should, Q.term_query(self._schema, "terms", t)) for t in terms])
        filters = [(field, values) for field, values in (("collection", collections), ("doc_id", doc_ids))
                   if values is not None]
        if filters:  # the filters restrict but add nothing to the score
            q = Q.boolean_query([(tantivy.Occur.Must, q)] + [
                (tantivy.Occur.Must, Q.const_score_query(Q.term_set_query(self._schema, field, list(values)), 0.0))
                for field, values in filters
            ])
        searcher = self._index.searcher()
        hits = []
        for score, address in searcher.search(q, k, count=False).hits:
            doc = searcher.doc(address)
            hits.append(LexicalHit(doc["chunk_id"][0], doc["doc_id"][0], float(score)))
        return hits

    def chunk_ids(self) -> set[str]:
        """Every chunk id in the index (reads all stored ids: for consistency checks, not for queries)."""
        searcher = self._index.searcher()
        n = searcher.num_docs
        if not n:
            return set()
        return {searcher.doc(a)["chunk_id"][0] for _, a in searcher.search(tantivy.Query.all_query(), n, count=False).hits}

    def count(self) -> int:
        return self._index.searcher().num_docs
