"""The catalog's tables, as SQLAlchemy declarative classes (one class per table).

Names, columns and indexes are what every existing store holds: change them only with a migration.
A new table may be added freely (``create_all`` adds missing tables to an older store).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> datetime:
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    sources: Mapped[list | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ApiKey(Base):
    """A user's key for the HTTP API: only a SHA-256 of the secret is kept (ragchat.auth.keys)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # public, part of the key
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Change(Base):
    """One row per change of a document's searchable state (it started or finished indexing, or
    was removed), in commit order: other servers follow it to keep their BM25 caches in step."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    doc_id: Mapped[str] = mapped_column(String(32), index=True)  # no foreign key: removals are logged too
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class LoginFailure(Base):
    """A failed login (or one being checked), per client address and per user name, for the login
    throttle (ragchat.auth.sessions.LoginThrottle): kept here, every server sharing the catalog counts
    the same failures. The key is a hash: a password typed into the name field is not kept."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


class ChangeReader(Base):
    """How far one server's BM25 cache (ragchat.store.lexical_follow) has applied the change log, and
    when it last said so: the rows every live cache has applied can be pruned."""

    __tablename__ = "change_readers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the cache's own random id
    seq: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


class FeedbackRow(Base):
    """A thumbs up (+1) or down (-1) on one answer, with what it was given on: the question, the
    answer, its cited sources and the settings that made it (ragchat.store.feedback)."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    rating: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    correction: Mapped[str] = mapped_column(Text, default="")  # the answer it should have been, if given
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    sources: Mapped[list] = mapped_column(JSON, default=list)
    setup: Mapped[dict] = mapped_column(JSON, default=dict)  # model and retrieval settings
    conversation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


class VoteRow(Base):
    """One comparison of two set-ups on one question (the side-by-side view): which answer won."""

    __tablename__ = "votes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    question: Mapped[str] = mapped_column(Text)
    setup_a: Mapped[str] = mapped_column(String(256))
    setup_b: Mapped[str] = mapped_column(String(256))
    winner: Mapped[str] = mapped_column(String(8))  # a | b | tie
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


class EvalRunRow(Base):
    """One evaluation started in the web app: a QA set asked of some set-ups (ragchat.eval.runs)."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    set_name: Mapped[str] = mapped_column(String(256))
    setups: Mapped[list] = mapped_column(JSON, default=list)  # [{"model", "mode", "top_k"}, ...]
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done | failed | stopped
    done: Mapped[int] = mapped_column(Integer, default=0)  # questions asked, over all set-ups
    total: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[list] = mapped_column(JSON, default=list)  # one dict per finished set-up
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WatchedFile(Base):
    """A file a folder watcher has read: its stamp and content hash (ragchat.store.watched)."""

    __tablename__ = "watched_files"

    collection: Mapped[str] = mapped_column(String(256), primary_key=True)
    source: Mapped[str] = mapped_column(String(1024), primary_key=True)
    stamp: Mapped[str] = mapped_column(String(128))  # size:mtime_ns:ctime_ns:inode
    sha256: Mapped[str] = mapped_column(String(64))
