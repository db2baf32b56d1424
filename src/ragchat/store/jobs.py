"""The catalog's change log and the ingestion queue of shared mode.

- The change log (``changes`` table) has one row per change of a document's searchable state, in
  commit order; shared mode's BM25 caches follow it (ragchat.store.lexical_follow). Each cache says
  how far it has applied it (``change_readers``), and ``prune_changes`` deletes the rows that every
  cache seen in ``READER_GONE_S`` has applied, all but the newest (the sequence goes on from it).
  A cache that comes back after its rows were pruned (``changes_pruned_through``) rebuilds itself
  from the catalog, as a new one does.
- The job queue (``jobs`` table) holds the ingestion jobs any server or worker may take
  (ragchat.ingest.queue runs them); ``claim_job`` makes a claim exclusive. Every change of a job
  row that someone may wait for (queued, progress, put back, finished) sends a notification at
  commit (ragchat.store.wakeup).

An encrypted PDF's password is never written in the clear: the job row holds it encrypted (Fernet,
AES-128-CBC with HMAC-SHA256) with a key derived from the catalog's session secret, which every
server and worker sharing the catalog reads; ``job_password`` decrypts it for the process that runs
the job, and the row's copy is deleted when the job ends (done or failed). Left out: a key kept
outside the catalog (whoever can read the whole catalog can read the secret too; the point is that
no row, dump of the jobs table or log line shows the password).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Sequence

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from ragchat.store.tables import Change, ChangeReader, JobRow, Meta, now
from ragchat.store.wakeup import notify_jobs

READER_GONE_S = 7 * 24 * 3600  # a BM25 cache silent this long no longer holds back pruning
_PRUNED_META = "changes_pruned_through"
_SECRET_META = "session_secret"  # also signs the login sessions (ragchat.auth.web): one secret per catalog
_PASSWORD_KEY = b"ragchat.job-password\0"  # keeps this key apart from the session signatures'


def log_change(s: Session, doc_id: str) -> None:
    """Append to the change log inside the caller's transaction. On PostgreSQL the table lock makes
    sequence order equal commit order, so a follower reading "after seq N" never skips a change that
    committed late with a smaller number. Held for the rest of a short transaction."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
    s.add(Change(doc_id=doc_id))




class ChangeLog:
    """Mixin of ``Catalog``: reading the change log."""

    def last_change(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.max(Change.seq))) or 0

    def changes_since(self, seq: int, limit: int = 10000) -> list[tuple[int, str]]:
        """(seq, doc id) of the changes after seq, oldest first."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Change.seq, Change.doc_id).where(Change.seq > seq).order_by(Change.seq).limit(limit))]

    def applied_changes(self, reader: str, seq: int) -> None:
        """Reader `reader` (a BM25 cache) has applied every change up to seq, and is alive."""
        with self.session() as s, s.begin():
            s.merge(ChangeReader(id=reader, seq=seq, seen_at=now()))

    def changes_pruned_through(self) -> int:
        """The changes up to this sequence number may be gone: a reader behind it must rebuild."""
        return int(self.get_meta(_PRUNED_META) or 0)

    def prune_changes(self, gone_s: float = READER_GONE_S) -> int:
        """Delete the changes every reader seen in the last gone_s seconds has applied, keeping the
        newest row; readers silent longer are forgotten. Returns how many rows went."""
        self.get_meta(_PRUNED_META) or self.setdefault_meta(_PRUNED_META, "0")
        with self.session() as s, s.begin():
            mark = s.get(Meta, _PRUNED_META, with_for_update=True)  # one pruning at a time
            s.execute(delete(ChangeReader).where(ChangeReader.seen_at < now() - timedelta(seconds=gone_s)))
            low = s.scalar(select(func.min(ChangeReader.seq)))
            top = s.scalar(select(func.max(Change.seq)))
            if low is None or top is None or min(low, top - 1) <= int(mark.value):
                return 0
            upto = min(low, top - 1)
            gone = s.execute(delete(Change).where(Change.seq <= upto)).rowcount
            mark.value = str(upto)  # committed with the delete: a reader behind it knows to rebuild
        return gone


class Jobs:
    """Mixin of ``Catalog``: the job queue."""

    def enqueue_job(self, *, kind: str, doc_id: str, collection: str, source: str, owner: str | None,
                    path: str | None = None, password: str | None = None, force: bool = False,
                    failed: str | None = None) -> str:
        """A new job; failed: a job that could not even be queued (its file was unreadable), with the reason."""
        jid = uuid.uuid4().hex
        status, stage, message = ("failed", "failed", f"failed: {failed}") if failed else ("queued", "queued", "")
        sealed = self._password_box().encrypt(password.encode()).decode() if password and not failed else None
        with self.session() as s, s.begin():
            s.add(JobRow(id=jid, kind=kind, doc_id=doc_id, collection=collection, source=source, owner=owner, path=path,
                         password=sealed, force=force, status=status, stage=stage,
                         message=message, created_at=now(), updated_at=now()))
            notify_jobs(s)
        return jid

    def job_password(self, job: JobRow) -> str | None:
        """The password given with the job's file, decrypted; None when there was none (or it cannot
        be read: the catalog's secret changed, and the file then fails as needing its password)."""
        from cryptography.fernet import InvalidToken

        if not job.password:
            return None
        try:
            return self._password_box().decrypt(job.password.encode()).decode()
        except (InvalidToken, ValueError):
            return None

    def _password_box(self):
        from cryptography.fernet import Fernet

        secret = self.get_meta(_SECRET_META) or self.setdefault_meta(_SECRET_META, secrets.token_hex(32))
        key = hashlib.sha256(_PASSWORD_KEY + bytes.fromhex(secret)).digest()
        return Fernet(base64.urlsafe_b64encode(key))

    def claim_job(self, worker: str, stale_s: float) -> JobRow | None:
        """Take the oldest job that is queued, or running in a process that stopped reporting
        stale_s ago (it died), unless an earlier job on the same document is still pending: the
        jobs of one document run in order, one at a time. The conditional update is what makes a
        claim exclusive: of two processes racing for a job, the second one's update matches no row."""
        stale = now() - timedelta(seconds=stale_s)
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
                    status="running", worker=worker, attempts=JobRow.attempts + 1, heartbeat_at=now(), updated_at=now(),
                )).rowcount
            if won == 1:
                with self.session() as s:
                    return s.get(JobRow, job.id)
        return None

    def report_job(self, job_id: str, worker: str, *, stage: str | None = None, done: int | None = None,
                   total: int | None = None, message: str | None = None) -> bool:
        """Progress and heartbeat of a running job; False when another process has taken it over."""
        values: dict = {"heartbeat_at": now(), "updated_at": now()}
        for key, value in (("stage", stage), ("done", done), ("total", total), ("message", message)):
            if value is not None:
                values[key] = value
        with self.session() as s, s.begin():
            notify_jobs(s)
            return s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker,
                                                  JobRow.status == "running").values(**values)).rowcount == 1

    def finish_job(self, job_id: str, worker: str, *, status: str, stage: str, message: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker).values(
                status=status, stage=stage, message=message, password=None, updated_at=now()))
            notify_jobs(s)

    def release_job(self, job_id: str, worker: str, message: str) -> None:
        """Put a job back in the queue (a service it needs is away), to be tried again."""
        with self.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker).values(
                status="queued", stage="queued", message=message, worker=None, updated_at=now()))
            notify_jobs(s)

    def jobs(self, ids: Sequence[str]) -> list[JobRow]:
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(JobRow.id.in_(list(ids)))))

    def jobs_for(self, doc_id: str) -> list[JobRow]:
        with self.session() as s:
            return list(s.scalars(select(JobRow).where(JobRow.doc_id == doc_id).order_by(JobRow.created_at)))

    def pending_jobs(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status.in_(["queued", "running"]))) or 0
