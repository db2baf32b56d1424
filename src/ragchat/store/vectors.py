"""The only module that talks to Chroma: an embedded PersistentClient under the store, through
langchain-chroma, with telemetry off and the embedding function always given explicitly.

Vectors are cosine-normalised. Writes take precomputed embeddings (the ingest pipeline embeds in
its own batches so it can overlap parsing and embedding); queries take a query vector so that one
embedding serves both search and relevance checks. Chroma keeps ids, vectors and metadata only: the
chunk texts live in the catalog, which is what retrieval and chat read, so storing them here too
would only double Chroma's write time.

Chroma is opened on first use (or by `open()`), not in the constructor: importing it takes about a
second, which the ingest pipeline spends while the first file is being parsed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from langchain_core.embeddings import Embeddings

from ragchat.errors import StoreError

COLLECTION = "chunks"


@dataclass(frozen=True)
class DenseHit:
    chunk_id: str
    doc_id: str
    score: float  # cosine similarity


class VectorIndex:
    def __init__(self, path: Path, embedder: Embeddings):
        self.path = path
        self.embedder = embedder
        self._store = None
        self._lock = threading.RLock()  # re-entrant: methods that hold it may open Chroma

    def open(self) -> None:
        """Open Chroma now (every other method opens it when needed). Raises StoreError."""
        with self._lock:
            if self._store is not None:
                return
            import chromadb
            from chromadb.config import Settings as ChromaSettings
            from langchain_chroma import Chroma

            logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)
            try:
                self.client = chromadb.PersistentClient(
                    path=str(self.path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
                )
                self._store = Chroma(
                    client=self.client,
                    collection_name=COLLECTION,
                    embedding_function=self.embedder,
                    collection_metadata={"hnsw:space": "cosine"},
                )
            except Exception as exc:
                raise StoreError(f"cannot open the vector index at {self.path}: {exc}") from exc

    @property
    def store(self):
        """The langchain-chroma store."""
        if self._store is None:
            self.open()
        return self._store

    @property
    def _collection(self):
        return self.store._collection  # langchain-chroma has no public add-with-vectors

    def add(self, ids: Sequence[str], vectors: Sequence[Sequence[float]], metadatas: Sequence[dict]) -> None:
        if not ids:
            return
        with self._lock:
            for i in range(0, len(ids), 4000):  # below Chroma's max batch size
                self._collection.upsert(
                    ids=list(ids[i : i + 4000]),
                    embeddings=[list(v) for v in vectors[i : i + 4000]],
                    metadatas=list(metadatas[i : i + 4000]),
                )

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock:
            for i in range(0, len(ids), 4000):
                self.store.delete(ids=list(ids[i : i + 4000]))

    def delete_doc(self, doc_id: str) -> None:
        with self._lock:
            self._collection.delete(where={"doc_id": doc_id})

    def search(
        self,
        vector: Sequence[float],
        k: int,
        collections: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[DenseHit]:
        where = _where(collections, doc_ids)
        res = self._collection.query(
            query_embeddings=[list(vector)], n_results=k, where=where, include=["metadatas", "distances"]
        )
        ids, metas, dists = res["ids"][0], res["metadatas"][0], res["distances"][0]
        return [DenseHit(cid, (m or {}).get("doc_id", ""), 1.0 - float(d)) for cid, m, d in zip(ids, metas, dists)]

    def count(self) -> int:
        return self._collection.count()

    def chunk_ids(self) -> set[str]:
        out: set[str] = set()
        offset = 0
        while True:
            got = self._collection.get(include=[], limit=10000, offset=offset)["ids"]
            out.update(got)
            if len(got) < 10000:
                return out
            offset += len(got)

    def reset(self) -> None:
        """Drop every vector (for reindex with another model, whose dimension may differ)."""
        with self._lock:
            self.store.delete_collection()
            self._store = type(self.store)(
                client=self.client,
                collection_name=COLLECTION,
                embedding_function=self.store.embeddings,
                collection_metadata={"hnsw:space": "cosine"},
            )


def _where(collections: Sequence[str] | None, doc_ids: Sequence[str] | None) -> dict | None:
    clauses = []
    if collections is not None:
        clauses.append({"collection": {"$in": list(collections)}})
    if doc_ids is not None:
        clauses.append({"doc_id": {"$in": list(doc_ids)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
