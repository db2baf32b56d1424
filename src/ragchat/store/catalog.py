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
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator, Sequence

from sqlalchemy import (
    JSON,
    Boolean,
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
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ragchat.core.errors import StoreError
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


class PageBoxesRow(Base):
    """Word boxes of an OCR'd page: [[start, end, x0, y0, x1, y1], ...], spans in the page's text and
    rectangles as fractions of the page (ragchat.ingest.boxes). Pages with a text layer have none:
    their boxes are found when the page is shown. A table of its own, so older stores just gain it."""

    __tablename__ = "page_boxes"

    doc_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[list] = mapped_column(JSON)


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


class Change(Base):
    """One row per change of a document's searchable state (it started or finished indexing, or
    was removed), in commit order: other servers follow it to keep their BM25 caches in step."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    doc_id: Mapped[str] = mapped_column(String(32), index=True)  # no foreign key: removals are logged too
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class JobRow(Base):
    """The ingestion queue of shared mode (ragchat.ingest.queue): any server or worker process may take a job."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # ingest | reindex | remove
    doc_id: Mapped[str] = mapped_column(String(32), index=True)
    collection: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(1024))
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    path: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # staged upload, relative to the store
    password: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # cleared when the job ends
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done | failed
    stage: Mapped[str] = mapped_column(String(16), default="queued")  # the FileEvent stage shown to people
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


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
    """shared: other processes write to this catalog too, so what is cached here (the searchable
    documents) is checked against the change log instead of trusted until this process changes it."""

    def __init__(self, url: str, shared: bool = False):
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:  # a server: replace connections it dropped (restart, failover) instead of failing on them
            kwargs["pool_pre_ping"] = True
            if url.startswith("postgresql"):
                kwargs["connect_args"] = {"connect_timeout": 5}
        self.url = url
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine, "handle_error", lambda ctx: _server_away(url, ctx))
        try:
            Base.metadata.create_all(self.engine)
        except (OperationalError, StoreError) as exc:
            self.engine.dispose()
            raise exc if isinstance(exc, StoreError) else _unreachable(url, exc) from None
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._shared = shared
        self._searchable: frozenset[str] | None = None
        self._searchable_seq: int | None = None

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

    def setdefault_meta(self, key: str, value: str) -> str:
        """The stored value of key, storing value first if there is none. Of several processes
        racing to store one, the first insert wins and all of them return it."""
        try:
            with self.session() as s, s.begin():
                s.add(Meta(key=key, value=value))
        except IntegrityError:
            pass
        return self.get_meta(key)

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
            _log_change(s, doc_id)
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
            _log_change(s, doc_id)
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
            s.execute(delete(PageBoxesRow).where(PageBoxesRow.doc_id == doc_id))
            s.execute(delete(Document).where(Document.id == doc_id))
            _log_change(s, doc_id)
        self._invalidate()
        return ids

    def mark_indexing(self, doc_id: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Document).where(Document.id == doc_id).values(status="indexing", updated_at=_now()))
            _log_change(s, doc_id)
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

    def set_page_boxes(self, doc_id: str, pages: Iterable[tuple[int, Sequence]]) -> None:
        """Replace the word boxes of a document's OCR'd pages with these (page number, boxes) pairs.
        Called after begin_document with the new pages; begin_document itself leaves boxes alone,
        because reindexing rewrites the same page texts, whose boxes still hold."""
        rows = [PageBoxesRow(doc_id=doc_id, page=n, data=[list(b) for b in boxes]) for n, boxes in pages if boxes]
        with self.session() as s, s.begin():
            s.execute(delete(PageBoxesRow).where(PageBoxesRow.doc_id == doc_id))
            s.add_all(rows)

    def page_boxes(self, doc_id: str, page: int | None) -> list[tuple] | None:
        """The stored word boxes of one page, or None when it has none (a text layer, a text file)."""
        if page is None:
            return None
        with self.session() as s:
            row = s.get(PageBoxesRow, (doc_id, page))
            return [tuple(b) for b in row.data] if row is not None else None

    def chunk(self, chunk_id: str) -> ChunkRow | None:
        with self.session() as s:
            return s.get(ChunkRow, chunk_id)

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
        if self._shared:  # another process may have changed documents: one cheap query says whether
            seq = self.last_change()
            if cached is not None and seq == self._searchable_seq:
                return cached
        elif cached is not None:
            return cached
        else:
            seq = None
        with self.session() as s:
            ids = frozenset(s.scalars(select(Document.id).where(Document.status == "done")))
        self._searchable, self._searchable_seq = ids, seq
        return ids

    # ---- the change log (shared mode's BM25 caches follow it) ------------------------------------

    def last_change(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.max(Change.seq))) or 0

    def changes_since(self, seq: int, limit: int = 10000) -> list[tuple[int, str]]:
        """(seq, doc id) of the changes after seq, oldest first."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Change.seq, Change.doc_id).where(Change.seq > seq).order_by(Change.seq).limit(limit))]

    def statuses(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """{doc id: status} of those documents that exist."""
        if not doc_ids:
            return {}
        with self.session() as s:
            return dict(s.execute(select(Document.id, Document.status).where(Document.id.in_(list(doc_ids)))).all())

    def done_chunks_of(self, doc_ids: Sequence[str]) -> list[tuple[str, str, str, str]]:
        """(chunk id, doc id, collection, text) of the given documents that are done."""
        if not doc_ids:
            return []
        q = (select(ChunkRow.id, ChunkRow.doc_id, Document.collection, ChunkRow.text)
             .join(Document, Document.id == ChunkRow.doc_id)
             .where(Document.status == "done", Document.id.in_(list(doc_ids))))
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]

    def _invalidate(self) -> None:
        self._searchable = None

    # ---- the ingestion queue of shared mode (ragchat.ingest.queue runs the jobs) ---------------------------

    def enqueue_job(self, *, kind: str, doc_id: str, collection: str, source: str, owner: str | None,
                    path: str | None = None, password: str | None = None, force: bool = False,
                    failed: str | None = None) -> str:
        """A new job; failed: a job that could not even be queued (its file was unreadable), with the reason."""
        jid = uuid.uuid4().hex
        status, stage, message = ("failed", "failed", f"failed: {failed}") if failed else ("queued", "queued", "")
        with self.session() as s, s.begin():
            s.add(JobRow(id=jid, kind=kind, doc_id=doc_id, collection=collection, source=source, owner=owner, path=path,
                         password=None if failed else password, force=force, status=status, stage=stage,
                         message=message, created_at=_now(), updated_at=_now()))
        return jid

    def claim_job(self, worker: str, stale_s: float) -> JobRow | None:
        """Take the oldest job that is queued, or running in a process that stopped reporting
        stale_s ago (it died), unless an earlier job on the same document is still pending: the
        jobs of one document run in order, one at a time. The conditional update is what makes a
        claim exclusive: of two processes racing for a job, the second one's update matches no row."""
        stale = _now() - timedelta(seconds=stale_s)
        claimable = or_(JobRow.status == "queued", (JobRow.status == "running") & (JobRow.heartbeat_at < stale))
        with self.session() as s:
            candidates = list(s.scalars(select(JobRow).where(claimable).order_by(JobRow.created_at).limit(50)))
        for job in candidates:
            with self.session() as s, s.begin():
                earlier = s.scalar(select(func.count()).select_from(JobRow).where(
                    JobRow.doc_id == job.doc_id, JobRow.id != job.id,
                    or_((JobRow.status == "running") & (JobRow.heartbeat_at >= stale),
                        (JobRow.status == "queued") & (JobRow.created_at < job.created_at))))
                if earlier:
                    continue
                won = s.execute(update(JobRow).where(JobRow.id == job.id, claimable).values(
                    status="running", worker=worker, attempts=JobRow.attempts + 1, heartbeat_at=_now(), updated_at=_now(),
                )).rowcount
            if won == 1:
                with self.session() as s:
                    return s.get(JobRow, job.id)
        return None

    def report_job(self, job_id: str, worker: str, *, stage: str | None = None, done: int | None = None,
                   total: int | None = None, message: str | None = None) -> bool:
        """Progress and heartbeat of a running job; False when another process has taken it over."""
        values: dict = {"heartbeat_at": _now(), "updated_at": _now()}
        for key, value in (("stage", stage), ("done", done), ("total", total), ("message", message)):
            if value is not None:
                values[key] = value
        with self.session() as s, s.begin():
            return s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker,
                                                  JobRow.status == "running").values(**values)).rowcount == 1

    def finish_job(self, job_id: str, worker: str, *, status: str, stage: str, message: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker).values(
                status=status, stage=stage, message=message, password=None, updated_at=_now()))

    def release_job(self, job_id: str, worker: str, message: str) -> None:
        """Put a job back in the queue (a service it needs is away), to be tried again."""
        with self.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker).values(
                status="queued", stage="queued", message=message, worker=None, updated_at=_now()))

    def jobs(self, ids: Sequence[str]) -> list[JobRow]:
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(JobRow.id.in_(list(ids)))))

    def jobs_for(self, doc_id: str) -> list[JobRow]:
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(JobRow.doc_id == doc_id).order_by(JobRow.created_at)))

    def pending_jobs(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status.in_(["queued", "running"]))) or 0

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


def _server_away(url: str, ctx) -> None:
    """A catalog server that went away (restart, network) is a clear StoreError for the request that
    needed it; the pool checks connections before use, so the next request recovers by itself."""
    if ctx.is_disconnect or isinstance(ctx.sqlalchemy_exception, OperationalError):
        raise _unreachable(url, ctx.sqlalchemy_exception) from None


def _unreachable(url: str, exc: OperationalError) -> StoreError:
    safe = make_url(url).render_as_string(hide_password=True)
    reason = " ".join(str(exc.orig or exc).split())[:300]
    if url.startswith("sqlite"):
        return StoreError(f"cannot open the catalog {safe}: {reason}")
    return StoreError(
        f"the catalog database at {safe} is not reachable ({reason}); start the server (for Debian's PostgreSQL: "
        "`pg_ctlcluster 15 main start`), or fix catalog_url"
    )


def _log_change(s: Session, doc_id: str) -> None:
    """Append to the change log inside the caller's transaction. On PostgreSQL the table lock makes
    sequence order equal commit order, so a follower reading "after seq N" never skips a change that
    committed late with a smaller number. Held for the rest of a short transaction."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
    s.add(Change(doc_id=doc_id))


def _owned(owner: str | None):
    return Conversation.owner.is_(None) if owner is None else Conversation.owner == owner


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

