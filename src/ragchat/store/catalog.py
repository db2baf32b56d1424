"""The catalog: documents, pages, chunks, store facts, conversations, users and API keys, in SQL.

SQLAlchemy 2 over SQLite inside the store by default; any SQLAlchemy URL (Postgres) works. The
catalog is the source of truth: the vector and lexical indexes can be rebuilt from its chunk rows,
and a document is searchable only once its status is "done".

Status of a document: "indexing" while its chunks are being written (a crash leaves it there and
recovery purges and re-queues it), "done", or "failed" with an error for people.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Sequence

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ragchat.ingest.chunking import Chunk


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection", "source", name="uq_collection_source"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(1024))
    collection: Mapped[str] = mapped_column(String(256), index=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16), default="")
    pages: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    embed_model: Mapped[str] = mapped_column(String(512), default="")
    original: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # stored copy, relative to the store
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class PageRow(Base):
    __tablename__ = "pages"

    doc_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str] = mapped_column(Text)


class ChunkRow(Base):
    __tablename__ = "chunks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    doc_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class Meta(Base):
    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    sources: Mapped[list | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ApiKey(Base):
    """A user's key for the HTTP API: only a SHA-256 of the secret is kept (ragchat.auth.keys)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # public, part of the key
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class DocInfo:
    id: str
    source: str
    collection: str
    owner: str | None
    sha256: str
    size: int
    kind: str
    pages: int
    chunks: int
    status: str
    error: str | None
    embed_model: str
    original: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        d["created_at"] = self.created_at.isoformat()
        d["updated_at"] = self.updated_at.isoformat()
        return d

    def summary(self) -> dict:
        """What people and API clients see of a document (no hashes, no store paths)."""
        return {"id": self.id, "name": self.source, "collection": self.collection, "pages": self.pages,
                "chunks": self.chunks, "size": self.size, "added": self.created_at.isoformat(), "status": self.status,
                "error": self.error}


def _info(d: Document) -> DocInfo:
    return DocInfo(
        d.id, d.source, d.collection, d.owner, d.sha256, d.size, d.kind, d.pages, d.chunks, d.status, d.error,
        d.embed_model, d.original, d.created_at, d.updated_at,
    )


class Catalog:
    def __init__(self, url: str):
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._searchable: frozenset[str] | None = None

    def session(self) -> Session:
        return self._session()

    def close(self) -> None:
        self.engine.dispose()

    # ---- store facts -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session() as s, s.begin():
            s.merge(Meta(key=key, value=value))

    # ---- documents ---------------------------------------------------------------------------

    def find(self, collection: str, source: str) -> DocInfo | None:
        with self.session() as s:
            d = s.scalar(select(Document).where(Document.collection == collection, Document.source == source))
            return _info(d) if d else None

    def get(self, doc_id: str) -> DocInfo | None:
        with self.session() as s:
            d = s.get(Document, doc_id)
            return _info(d) if d else None

    def documents(self, collections: Sequence[str] | None = None, status: str | None = None) -> list[DocInfo]:
        q = select(Document).order_by(Document.collection, Document.source)
        if collections is not None:
            q = q.where(Document.collection.in_(list(collections)))
        if status is not None:
            q = q.where(Document.status == status)
        with self.session() as s:
            return [_info(d) for d in s.scalars(q)]

    def collections(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Document.collection).distinct().order_by(Document.collection)))

    def begin_document(self, *, doc_id: str, source: str, collection: str, owner: str | None, sha256: str, size: int,
                       kind: str, pages: Sequence[tuple[int | None, str]], embed_model: str, original: str | None) -> list[str]:
        """Record that a document's chunks are about to be (re)written; returns the old chunk ids
        that the caller must remove from the indexes. Committed before any index is touched, so a
        crash leaves a row in status "indexing" that recovery can find."""
        with self.session() as s, s.begin():
            old_ids = list(s.scalars(select(ChunkRow.id).where(ChunkRow.doc_id == doc_id)))
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc_id))
            s.execute(delete(PageRow).where(PageRow.doc_id == doc_id))
            d = s.get(Document, doc_id)
            if d is None:
                d = Document(id=doc_id, source=source, collection=collection, created_at=_now())
                s.add(d)
            d.owner, d.sha256, d.size, d.kind, d.pages = owner, sha256, size, kind, len(pages)
            d.chunks, d.status, d.error, d.embed_model, d.original = 0, "indexing", None, embed_model, original
            d.updated_at = _now()
            s.flush()
            s.add_all(PageRow(doc_id=doc_id, idx=i, number=n, text=t) for i, (n, t) in enumerate(pages))
        self._invalidate()
        return old_ids

    def add_chunks(self, rows: Iterable[tuple[str, Chunk]]) -> None:
        """rows: (doc_id, chunk)."""
        with self.session() as s, s.begin():
            s.add_all(
                ChunkRow(id=c.id, doc_id=d, seq=c.seq, page=c.page, start=c.start, end=c.end, text=c.text) for d, c in rows
            )

    def finish_document(self, doc_id: str) -> int:
        with self.session() as s, s.begin():
            n = s.scalar(select(func.count()).select_from(ChunkRow).where(ChunkRow.doc_id == doc_id)) or 0
            s.execute(update(Document).where(Document.id == doc_id).values(status="done", chunks=n, error=None, updated_at=_now()))
        self._invalidate()
        return n

    def record_failure(self, *, doc_id: str, source: str, collection: str, owner: str | None, error: str,
                       sha256: str = "", size: int = 0) -> None:
        """A file that could not be read is listed with its reason. An earlier good version of the
        same source keeps its chunks and stays searchable."""
        with self.session() as s, s.begin():
            d = s.get(Document, doc_id)
            if d is None:
                s.add(Document(id=doc_id, source=source, collection=collection, owner=owner, status="failed",
                               error=error, sha256=sha256, size=size))
            elif d.status != "done":
                d.status, d.error, d.sha256, d.size = "failed", error, sha256, size

    def remove(self, doc_id: str) -> list[str]:
        """Delete a document; returns its chunk ids for the caller to drop from the indexes."""
        with self.session() as s, s.begin():
            ids = list(s.scalars(select(ChunkRow.id).where(ChunkRow.doc_id == doc_id)))
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc_id))
            s.execute(delete(PageRow).where(PageRow.doc_id == doc_id))
            s.execute(delete(Document).where(Document.id == doc_id))
        self._invalidate()
        return ids

    def mark_indexing(self, doc_id: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Document).where(Document.id == doc_id).values(status="indexing", updated_at=_now()))
        self._invalidate()

    def unfinished(self) -> list[DocInfo]:
        return self.documents(status="indexing")

    def chunk_ids(self, doc_id: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(ChunkRow.id).where(ChunkRow.doc_id == doc_id)))

    def chunks_of(self, doc_id: str) -> list[ChunkRow]:
        with self.session() as s:
            return list(s.scalars(select(ChunkRow).where(ChunkRow.doc_id == doc_id).order_by(ChunkRow.seq)))

    def pages_of(self, doc_id: str) -> list[tuple[int | None, str]]:
        with self.session() as s:
            return [(p.number, p.text) for p in s.scalars(select(PageRow).where(PageRow.doc_id == doc_id).order_by(PageRow.idx))]

    def page_text(self, doc_id: str, page: int | None) -> str | None:
        with self.session() as s:
            q = select(PageRow.text).where(PageRow.doc_id == doc_id)
            q = q.where(PageRow.number.is_(None)) if page is None else q.where(PageRow.number == page)
            return s.scalar(q.limit(1))

    def count_chunks(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(ChunkRow)) or 0

    def iter_done_chunks(self, batch: int = 5000) -> Iterator[list[tuple[str, str, str, str]]]:
        """(chunk id, doc id, collection, text) of every chunk of a finished document, in batches."""
        q = (select(ChunkRow.id, ChunkRow.doc_id, Document.collection, ChunkRow.text)
             .join(Document, Document.id == ChunkRow.doc_id).where(Document.status == "done"))
        with self.session() as s:
            for part in s.execute(q.execution_options(yield_per=batch)).partitions(batch):
                yield [tuple(r) for r in part]

    def all_chunk_ids(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(ChunkRow.id)))

    def searchable_doc_ids(self) -> frozenset[str]:
        """Ids of documents in status done: the only ones whose chunks may be returned."""
        cached = self._searchable
        if cached is not None:
            return cached
        with self.session() as s:
            ids = frozenset(s.scalars(select(Document.id).where(Document.status == "done")))
        self._searchable = ids
        return ids

    def _invalidate(self) -> None:
        self._searchable = None

    # ---- conversations -----------------------------------------------------------------------

    def create_conversation(self, title: str = "New chat", owner: str | None = None) -> str:
        cid = uuid.uuid4().hex
        with self.session() as s, s.begin():
            s.add(Conversation(id=cid, title=title[:256], owner=owner))
        return cid

    def conversations(self, owner: str | None = None) -> list[Conversation]:
        q = select(Conversation).order_by(Conversation.updated_at.desc())
        q = q.where(Conversation.owner.is_(None)) if owner is None else q.where(Conversation.owner == owner)
        with self.session() as s:
            return list(s.scalars(q))

    def conversation(self, cid: str, owner: str | None = None) -> Conversation | None:
        with self.session() as s:
            c = s.get(Conversation, cid)
            return c if c is not None and c.owner == owner else None

    def rename_conversation(self, cid: str, title: str, owner: str | None = None) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Conversation).where(Conversation.id == cid, _owned(owner)).values(title=title[:256]))

    def delete_conversation(self, cid: str, owner: str | None = None) -> None:
        with self.session() as s, s.begin():
            if s.scalar(select(Conversation.id).where(Conversation.id == cid, _owned(owner))):
                s.execute(delete(Message).where(Message.conversation_id == cid))
                s.execute(delete(Conversation).where(Conversation.id == cid))

    def add_message(self, cid: str, role: str, content: str, sources: list | None = None, meta: dict | None = None) -> None:
        with self.session() as s, s.begin():
            s.add(Message(conversation_id=cid, role=role, content=content, sources=sources, meta=meta))
            s.execute(update(Conversation).where(Conversation.id == cid).values(updated_at=_now()))

    def messages(self, cid: str) -> list[Message]:
        with self.session() as s:
            return list(s.scalars(select(Message).where(Message.conversation_id == cid).order_by(Message.id)))

    def delete_last_exchange(self, cid: str) -> str | None:
        """Drop the last assistant answer and its question (for "regenerate"); returns the question."""
        with self.session() as s, s.begin():
            rows = list(s.scalars(select(Message).where(Message.conversation_id == cid).order_by(Message.id.desc()).limit(2)))
            if len(rows) == 2 and rows[0].role == "assistant" and rows[1].role == "user":
                for r in rows:
                    s.delete(r)
                return rows[1].content
        return None


def _owned(owner: str | None):
    return Conversation.owner.is_(None) if owner is None else Conversation.owner == owner


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

