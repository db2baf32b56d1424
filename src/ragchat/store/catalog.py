"""The catalog: documents, pages, chunks, store facts, conversations, users and API keys, in SQL.

SQLAlchemy 2 over SQLite inside the store by default; any SQLAlchemy URL (Postgres) works. The
catalog is the source of truth: the vector and lexical indexes can be rebuilt from its chunk rows,
and a document is searchable only once its status is "done".

``Catalog`` is the one object callers hold. This module opens the database and keeps the store
facts (``store_meta``: a key-value table); the methods of each table group come from the modules
that own it: ``documents`` (documents, pages, word boxes, chunks), ``jobs`` (the change log and the
job queue), ``conversations``, ``logins`` (the login throttle's counts), ``feedback`` (thumbs and
votes) and ``evals`` (the web app's evaluation runs). The tables themselves are in ``tables``; the
users and API keys tables are read by ragchat.auth.
"""

from __future__ import annotations

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ragchat.core.errors import StoreError
from ragchat.store.conversations import Conversations
from ragchat.store.documents import Documents
from ragchat.store.evals import Evaluations
from ragchat.store.feedback import Feedback
from ragchat.store.jobs import ChangeLog, Jobs
from ragchat.store.logins import LoginFailures
from ragchat.store.tables import Base, Meta
from ragchat.store.watched import WatchedFiles

# CREATE TABLE checks first, then creates: two processes opening a new PostgreSQL catalog at once
# would both create, and one would fail. They take this advisory lock (held until commit) in turn.
_SCHEMA_LOCK = 0x7261676368617401


class Catalog(Documents, ChangeLog, Jobs, Conversations, LoginFailures, Feedback, Evaluations, WatchedFiles):
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
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":  # processes starting together on a new catalog
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                Base.metadata.create_all(conn)
        except (OperationalError, StoreError) as exc:
            self.engine.dispose()
            raise exc if isinstance(exc, StoreError) else _unreachable(url, exc) from None
        self._session = sessionmaker(self.engine, expire_on_commit=False)
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

