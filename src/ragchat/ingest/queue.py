"""Shared mode's ingestion queue: jobs in the catalog that any `ragchat serve` or `ragchat worker` runs.

- ``JobQueue.run_files`` / ``run_reindex`` / ``run_remove`` stage uploads in the store's shared
  folder (``incoming/``), add one job per document to the catalog (store.tables.JobRow) and follow the
  jobs' progress there, reporting it as the same FileEvents the embedded mode emits. The server
  that takes a job may be another one.
- Both sides wait for each other through PostgreSQL LISTEN/NOTIFY (``Engine.job_wakeup``,
  ragchat.store.wakeup): a queued job starts at once, a finished one is reported at once. Polling
  stays as the fallback, every ``_POLL_S`` while notifications are down, else ``_LISTENING_POLL_S``.
- ``QueueWorker`` is a thread that claims the oldest job it may take and runs it through the same
  Ingestor as the embedded mode, writing progress and a heartbeat to the job row every
  ``_REPORT_S``. The jobs of one document run in order, one at a time (Catalog.claim_job, ragchat.store.jobs).
- A process that dies (kill -9, a lost machine) stops its heartbeat. After ``shared.job_stale_s``
  another process claims the job again: it first drops whatever the dead one wrote to Chroma for
  that document (vectors written before their catalog rows would otherwise stay behind), then
  ingests the document anew; the catalog row said "indexing" all along, so nobody cited the half.

A job that meets a service that is away (StoreError: the Chroma or catalog server) goes back to
the queue and is tried again a few seconds later, so ingestion resumes by itself when it returns.

Left out: priorities, and retry limits for a file that kills every process that reads it (the
parse runs in the isolated, time- and memory-limited worker, so a bad file fails its job instead).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Callable, Sequence

from ragchat.core.access import owned_collection
from ragchat.core.errors import RagchatError, StoreError
from ragchat.ingest.pipeline import FileEvent, SourceFile, doc_id_for, safe_name
from ragchat.store.outage import RetryQuietly

log = logging.getLogger(__name__)

_REPORT_S = 1.0  # progress and heartbeat writes of a running job; job_stale_s must be well above it
_POLL_S = 0.5  # how often an idle worker looks for a job, and a waiting server for progress, without notifications
_LISTENING_POLL_S = 5.0  # the same while notifications arrive (ragchat.store.wakeup): only a dead process's job needs it
_RETRY_S = 5.0  # pause after a job had to wait for a service that is away
FINISHED = {"done", "failed"}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobQueue:
    """The submitting side: add jobs and follow them until they finish."""

    def __init__(self, engine):
        self.engine = engine
        self.catalog = engine.catalog
        self.incoming = engine.store / "incoming"
        self.wakeup = engine.job_wakeup
        self._closed = threading.Event()

    def run_files(self, files: Sequence[SourceFile], collection: str, owner: str | None = None,
                  password: str | None = None, on_event: Callable[[FileEvent], None] | None = None) -> list:
        """Queue one job per file and wait until every one has finished (on any process)."""
        try:
            target = owned_collection(collection, owner)[0]
        except RagchatError as exc:
            for f in files:
                (on_event or _ignore)(FileEvent(f.source, "failed", message=f"failed: {exc}"))
            return []
        ids = []
        for f in files:
            staged, failed = None, None
            try:
                staged = self._stage(f.path)
            except OSError as exc:
                failed = f"cannot read the file: {exc.strerror or exc}"
            ids.append(self.catalog.enqueue_job(kind="ingest", doc_id=doc_id_for(target, f.source), collection=collection,
                                                source=f.source, owner=owner, path=staged, password=password,
                                                failed=failed))
        return self.wait(ids, on_event)

    def run_reindex(self, docs: Sequence, on_event=None) -> list:
        ids = [self.catalog.enqueue_job(kind="reindex", doc_id=d.id, collection=d.collection, source=d.source,
                                        owner=d.owner, force=True) for d in docs]
        return self.wait(ids, on_event)

    def run_remove(self, docs: Sequence, on_event=None) -> list:
        ids = [self.catalog.enqueue_job(kind="remove", doc_id=d.id, collection=d.collection, source=d.source,
                                        owner=d.owner) for d in docs]
        return self.wait(ids, on_event)

    def wait(self, ids: Sequence[str], on_event=None) -> list:
        """Report each job's progress as FileEvents until all have finished; returns the job rows."""
        emit = on_event or _ignore
        seen: dict[str, tuple] = {}
        while True:
            mark = self.wakeup.mark()
            order = {jid: i for i, jid in enumerate(ids)}
            rows = sorted(self.catalog.jobs(ids), key=lambda r: order[r.id])
            for r in rows:
                state = (r.stage, r.done, r.total, r.message)
                if seen.get(r.id) != state:
                    seen[r.id] = state
                    emit(FileEvent(r.source, r.stage, r.done, r.total, r.message))
            if all(r.status in FINISHED for r in rows) or self._closed.is_set():
                return rows
            self.wakeup.wait(mark, _poll_s(self.wakeup))

    def close(self) -> None:
        self._closed.set()
        self.wakeup.nudge()

    def _stage(self, path: Path) -> str:
        """Copy an upload where every process can read it; returns its path relative to the store."""
        folder = self.incoming / uuid.uuid4().hex
        folder.mkdir(parents=True)
        dest = folder / safe_name(path.name)
        try:
            shutil.copyfile(path, dest)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return dest.relative_to(self.engine.store).as_posix()


class QueueWorker:
    """The taking side: a thread that runs jobs from the catalog until stopped."""

    def __init__(self, engine, name: str | None = None):
        self.engine = engine
        self.catalog = engine.catalog
        self.name = name or worker_name()
        self.stale_s = engine.settings.shared.job_stale_s
        self.wakeup = engine.job_wakeup
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "QueueWorker":
        self._thread = threading.Thread(target=self.run, name="ragchat-queue-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self.wakeup.nudge()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        retry = RetryQuietly(  # while the catalog's server is away
            self._stop, _POLL_S, away=lambda exc: log.warning("cannot take jobs from the catalog (%s); retrying", exc),
            back=lambda: log.warning("the job queue is reachable again"))
        while not self._stop.is_set():
            mark = self.wakeup.mark()  # before looking: a job queued while we look wakes the wait below
            if not retry(self.run_one) and not self._stop.is_set():
                self.wakeup.wait(mark, _poll_s(self.wakeup))

    def run_one(self) -> bool:
        """Claim and run one job; False when there was none to take."""
        job = self.catalog.claim_job(self.name, self.stale_s)
        if job is None:
            return False
        log.info("job %s (%s %s), attempt %d, taken by %s", job.id, job.kind, job.source, job.attempts, self.name)
        reporter = _Reporter(self.catalog, job.id, self.name)
        try:
            status, stage, message = self._execute(job, reporter.event)
        except StoreError as exc:  # Chroma or the catalog is away: the job waits for it, nothing is lost
            reporter.stop()
            log.warning("job %s waits: %s", job.id, exc)
            self.catalog.release_job(job.id, self.name, f"waiting: {exc}")
            self._stop.wait(_RETRY_S)
            return True
        except Exception as exc:
            log.exception("job %s failed", job.id)
            reason = str(exc) if isinstance(exc, RagchatError) else f"{type(exc).__name__}: {exc}"
            status, stage, message = "failed", "failed", f"failed: {reason}"
        reporter.stop()
        self.catalog.finish_job(job.id, self.name, status=status, stage=stage, message=message)
        if job.path:
            shutil.rmtree((self.engine.store / job.path).parent, ignore_errors=True)
        return True

    def _execute(self, job, emit: Callable[[FileEvent], None]) -> tuple[str, str, str]:
        ingestor = self.engine.ingestor
        if job.kind == "remove":
            emit(FileEvent(job.source, "reading", message="removing"))
            ingestor.remove(job.doc_id)
            return "done", "done", "removed"
        info = self.catalog.get(job.doc_id)
        if job.attempts > 1 and info is not None and info.status == "indexing":
            self.engine.vectors.delete_doc(job.doc_id)  # what the dead process wrote before its catalog rows
        if job.kind == "reindex":
            original = self.engine.store / info.original if info is not None and info.original else None
            if original is None or not original.is_file():
                return "failed", "failed", "failed: the original file is not stored; add the file again"
            path = original
        else:
            path = self.engine.store / job.path
        force = job.force or job.attempts > 1
        (result,) = ingestor.ingest([SourceFile(path, job.source)], job.collection, password=self.catalog.job_password(job),
                                    owner=job.owner, force=force, on_event=emit)
        if result.outcome == "failed":
            return "failed", "failed", f"failed: {result.error}"
        return "done", "unchanged" if result.outcome == "unchanged" else "done", result.line()


class _Reporter:
    """Writes a running job's latest progress, and so its heartbeat, every _REPORT_S from a thread
    of its own: a long embedding batch or parse must not look like a dead process."""

    def __init__(self, catalog, job_id: str, worker: str):
        self.catalog, self.job_id, self.worker = catalog, job_id, worker
        self._latest: FileEvent | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragchat-job-report", daemon=True)
        self._thread.start()

    def event(self, e: FileEvent) -> None:
        with self._lock:
            self._latest = e

    def _run(self) -> None:
        while not self._stop.wait(_REPORT_S):
            self._write()

    def _write(self) -> None:
        with self._lock:
            e, self._latest = self._latest, None
        try:
            if e is None:
                kept = self.catalog.report_job(self.job_id, self.worker)
            else:
                kept = self.catalog.report_job(self.job_id, self.worker, stage=e.stage, done=e.done, total=e.total,
                                               message=e.message)
            if not kept:
                log.warning("job %s was taken over by another process", self.job_id)
        except Exception as exc:  # the catalog is away for a moment; the next report tries again
            log.warning("cannot report progress of job %s: %s", self.job_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _poll_s(wakeup) -> float:
    return _LISTENING_POLL_S if wakeup.listening else _POLL_S


def _ignore(_event) -> None:
    pass
