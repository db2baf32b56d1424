"""The only module that talks to Chroma: an embedded PersistentClient under the store, or in shared
mode a Chroma server through HttpClient, through langchain-chroma, with telemetry off and the
embedding function always given explicitly.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from typing import Sequence

from langchain_core.embeddings import Embeddings

from ragchat.core.errors import StoreError

COLLECTION = "chunks"


@dataclass(frozen=True)
class DenseHit:
    chunk_id: str
    doc_id: str
    score: float  # cosine similarity


class VectorIndex:
    """path: the embedded store's folder; or url (and database): a Chroma server shared by several processes."""

    def __init__(self, path: Path | None, embedder: Embeddings, url: str = "", database: str = "default_database"):
        self.path = path
        self.url = url.rstrip("/")
        self.database = database
        self.embedder = embedder
        self._store = None
        self._lock = threading.RLock()  # re-entrant: methods that hold it may open Chroma

    @property
    def where(self) -> str:
        return f"the Chroma server at {self.url}" if self.url else f"the vector index at {self.path}"

    def unreachable(self, exc: Exception) -> StoreError:
        if self.url:
            return StoreError(
                f"the Chroma server at {self.url} is not reachable ({type(exc).__name__}: {exc}); start it with "
                f"`chroma run --path DIR --port {urlsplit(self.url).port or 8000}`, or fix shared.chroma_url"
            )
        return StoreError(f"cannot open the vector index at {self.path}: {exc}")

    @contextmanager
    def _talking(self):
        """A Chroma server that went away is a clear StoreError for the request that needed it; the
        next request tries again, so the app recovers by itself when the server is back."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if self.url and _is_connection_error(exc):
                raise self.unreachable(exc) from exc
            raise

    def _client(self):
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if not self.url:
            return chromadb.PersistentClient(path=str(self.path), settings=settings)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"shared.chroma_url {self.url!r} is not an http(s) URL like http://127.0.0.1:8000")
        admin = chromadb.AdminClient(settings=ChromaSettings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host=parts.hostname,
            chroma_server_http_port=parts.port or (443 if parts.scheme == "https" else 80),
            chroma_server_ssl_enabled=parts.scheme == "https", anonymized_telemetry=False))
        from chromadb.errors import InvalidArgumentError, NotFoundError, UniqueConstraintError

        try:
            admin.get_database(self.database)
        except NotFoundError:
            try:
                admin.create_database(self.database)
            except UniqueConstraintError:  # another server created it at the same moment
                pass
        except InvalidArgumentError as exc:
            raise StoreError(f"shared.chroma_database {self.database!r} is not a valid Chroma database name: {exc}") from None
        return chromadb.HttpClient(host=parts.hostname, port=parts.port or (443 if parts.scheme == "https" else 80),
                                   ssl=parts.scheme == "https", database=self.database, settings=settings)

    def open(self) -> None:
        """Open Chroma now (every other method opens it when needed). Raises StoreError."""
        with self._lock:
            if self._store is not None:
                return
            from langchain_chroma import Chroma

            logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)
            try:
                self.client = self._client()
                self._store = Chroma(
                    client=self.client,
                    collection_name=COLLECTION,
                    embedding_function=self.embedder,
                    collection_metadata={"hnsw:space": "cosine"},
                )
            except StoreError:
                raise
            except Exception as exc:
                raise self.unreachable(exc) from exc

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
        with self._lock, self._talking():
            for i in range(0, len(ids), 4000):  # below Chroma's max batch size
                self._collection.upsert(
                    ids=list(ids[i : i + 4000]),
                    embeddings=[list(v) for v in vectors[i : i + 4000]],
                    metadatas=list(metadatas[i : i + 4000]),
                )

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock, self._talking():
            for i in range(0, len(ids), 4000):
                self.store.delete(ids=list(ids[i : i + 4000]))

    def vectors_of(self, ids: Sequence[str]) -> dict[str, tuple[list[float], dict]]:
        """The stored vector and metadata of each of these ids that exists (so that a renamed file's
        chunks can be written again under new ids without embedding them again)."""
        out: dict[str, tuple[list[float], dict]] = {}
        with self._lock:
            for i in range(0, len(ids), 4000):
                got = self._collection.get(ids=list(ids[i : i + 4000]), include=["embeddings", "metadatas"])
                for cid, vec, meta in zip(got["ids"], got["embeddings"], got["metadatas"]):
                    out[cid] = ([float(x) for x in vec], dict(meta or {}))
        return out

    def delete_doc(self, doc_id: str) -> None:
        with self._lock, self._talking():
            self._collection.delete(where={"doc_id": doc_id})

    def search(
        self,
        vector: Sequence[float],
        k: int,
        collections: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[DenseHit]:
        where = _where(collections, doc_ids)
        with self._talking():
            res = self._collection.query(
                query_embeddings=[list(vector)], n_results=k, where=where, include=["metadatas", "distances"]
            )
        ids, metas, dists = res["ids"][0], res["metadatas"][0], res["distances"][0]
        return [DenseHit(cid, (m or {}).get("doc_id", ""), 1.0 - float(d)) for cid, m, d in zip(ids, metas, dists)]

    def count(self) -> int:
        with self._talking():
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


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    while exc is not None:
        if isinstance(exc, (httpx.TransportError, ConnectionError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _where(collections: Sequence[str] | None, doc_ids: Sequence[str] | None) -> dict | None:
    clauses = []
    if collections is not None:
        clauses.append({"collection": {"$in": list(collections)}})
    if doc_ids is not None:
        clauses.append({"doc_id": {"$in": list(doc_ids)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
