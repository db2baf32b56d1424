"""Background ingestion for the web page and the HTTP API: uploads, removals and re-indexing run off
the request path. The engine makes one ``IngestJobs`` for both (``Engine.start_jobs``).

A person drops files and goes on chatting: ``submit_upload`` copies the uploads into a private
temporary folder under safe names, queues the work on one background thread (the engine's
ingestor handles one batch at a time anyway) and returns at once. The engine's progress events
update a per-file status that the page polls with a timer. Work is grouped by a key (the browser
session, or ``api:<user>`` for the API), so each tab sees the files it added. One bad file never
stops the others: the engine reports it as failed and goes on; if the engine itself raises, every
file that had not finished is marked failed with the reason.

Nothing here parses, embeds or indexes: it only calls the engine.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ragchat.core.access import owned_collection
from ragchat.core.errors import RagchatError
from ragchat.ingest.pipeline import FileEvent, SourceFile, doc_id_for, safe_name

log = logging.getLogger(__name__)

TERMINAL = {"done", "unchanged", "failed"}
_KEEP_ROWS = 200  # per key; older finished rows are dropped


@dataclass
class FileStatus:
    source: str
    stage: str = "queued"
    done: int = 0
    total: int = 0
    message: str = ""
    job: str = ""
    updated: float = field(default_factory=time.time)
    doc_id: str = ""  # the document this row becomes (known before ingestion starts), "" when unknown

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Job:
    id: str
    key: str
    kind: str  # upload | remove | reindex | rebuild
    rows: list[FileStatus]
    finished: bool = False
    error: str | None = None


class IngestJobs:
    def __init__(self, engine, workdir: Path | None = None):
        self.engine = engine
        self.workdir = Path(workdir) if workdir else Path(tempfile.gettempdir())
        # Embedded mode: one thread, since the engine ingests one batch at a time anyway. Shared mode:
        # the threads only follow jobs that any process of the team may be running.
        self._pool = ThreadPoolExecutor(max_workers=4 if engine.shared else 1, thread_name_prefix="ragchat-ingest")
        self._lock = threading.Lock()
        self._jobs: dict[str, list[Job]] = {}
        self._running = 0

    # ---- queries ----------------------------------------------------------------------------

    def rows(self, key: str) -> list[dict]:
        with self._lock:
            return [r.as_dict() for job in self._jobs.get(key, []) for r in job.rows]

    def active(self, key: str | None = None) -> bool:
        """Whether work is queued or running (for this key, or for anyone when key is None)."""
        with self._lock:
            if key is None:
                return self._running > 0
            return any(not j.finished for j in self._jobs.get(key, []))

    def clear_finished(self, key: str) -> None:
        with self._lock:
            self._jobs[key] = [j for j in self._jobs.get(key, []) if not j.finished]

    def job(self, key: str, job_id: str) -> Job | None:
        """One of this key's jobs by id (None for another key's: ids are not secrets)."""
        with self._lock:
            return next((j for j in self._jobs.get(key, []) if j.id == job_id), None)

    def job_rows(self, job: Job) -> list[dict]:
        with self._lock:
            return [r.as_dict() for r in job.rows]

    def row_for_document(self, key: str, doc_id: str) -> dict | None:
        """The newest progress row of this key's work on a document, or None."""
        with self._lock:
            rows = [r for job in self._jobs.get(key, []) for r in job.rows if doc_id and r.doc_id == doc_id]
            return max(rows, key=lambda r: r.updated).as_dict() if rows else None

    # ---- work ------------------------------------------------------------------------------

    def submit_upload(self, key: str, uploads: Sequence[str | Path], collection: str, owner: str | None = None,
                      password: str | None = None) -> Job:
        """Copy uploads into a private folder under safe, distinct names, then ingest them in the background."""
        folder = Path(tempfile.mkdtemp(prefix="ragchat-upload-", dir=self.workdir))
        files: list[SourceFile] = []
        rows: list[FileStatus] = []
        taken: set[str] = set()
        try:
            target = owned_collection(collection, owner)[0]
        except RagchatError:
            target = None  # the ingestor says why, on every file
        for up in uploads:
            src = Path(up)
            name = _distinct(safe_name(src.name), taken)
            dest = folder / name
            doc_id = doc_id_for(target, name) if target else ""
            try:
                shutil.copyfile(src, dest)
            except OSError as exc:
                rows.append(FileStatus(name, "failed", message=f"failed: cannot read the upload: {exc.strerror or exc}",
                                       doc_id=doc_id))
                continue
            files.append(SourceFile(dest, name))
            rows.append(FileStatus(name, doc_id=doc_id))

        def work(job: Job) -> None:
            try:
                if files and self.engine.shared:  # any server or worker may take the jobs
                    self.engine.queue.run_files(files, collection, owner=owner, password=password,
                                                on_event=lambda e: self._update(job, e))
                elif files:
                    self.engine.ingestor.ingest(files, collection, password=password, owner=owner,
                                                on_event=lambda e: self._update(job, e))
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        return self._submit(key, "upload", rows, work)

    def submit_remove(self, key: str, docs: Sequence) -> Job:
        """Remove documents (DocInfo) in the background, after any ingestion that is running."""
        rows = [FileStatus(d.source, "queued", message="removing", doc_id=d.id) for d in docs]

        def work(job: Job) -> None:
            if self.engine.shared:
                self.engine.queue.run_remove(docs, on_event=lambda e: self._update(job, e))
                return
            for d, row in zip(docs, job.rows):
                self._set(row, "reading", message="removing")
                try:
                    self.engine.ingestor.remove(d.id)
                    self._set(row, "done", message="removed")
                except RagchatError as exc:
                    self._set(row, "failed", message=f"failed: {exc}")

        return self._submit(key, "remove", rows, work)

    def remove_now_or_later(self, key: str, docs: Sequence) -> tuple[int, list[tuple[object, str]], Job | None]:
        """Remove documents at once when no ingestion runs, else queue them after it (a removal
        must not race the ingestion that may be writing the same document).
        Returns (removed now, [(doc, reason it failed)], the queued job or None)."""
        if self.active() or self.engine.shared:  # in shared mode another process may be writing them
            return 0, [], self.submit_remove(key, docs)
        removed, failed = 0, []
        for d in docs:
            try:
                removed += bool(self.engine.ingestor.remove(d.id))
            except RagchatError as exc:
                failed.append((d, str(exc)))
        return removed, failed, None

    def submit_reindex(self, key: str, docs: Sequence) -> Job:
        """Parse and index chosen documents again from their stored originals (DocInfo list). If
        the new parse fails, the indexed version stays searchable."""
        rows = [FileStatus(d.source, doc_id=d.id) for d in docs]

        def work(job: Job) -> None:
            if self.engine.shared:
                self.engine.queue.run_reindex(docs, on_event=lambda e: self._update(job, e))
                return
            for d, row in zip(docs, job.rows):
                original = self.engine.store / d.original if d.original else None
                if original is None or not original.is_file():
                    self._set(row, "failed", message="failed: the original file is not stored; add the file again")
                    continue
                self.engine.ingestor.ingest([SourceFile(original, d.source)], d.collection, owner=d.owner, force=True,
                                            on_event=lambda e, r=row: self._event_row(r, e))

        return self._submit(key, "reindex", rows, work)

    def submit_rebuild(self, key: str) -> Job:
        """Rebuild both indexes from the catalog with the configured embedding model."""
        rows: list[FileStatus] = []

        def work(job: Job) -> None:
            self.engine.reindex(on_event=lambda e: self._update(job, e))

        return self._submit(key, "rebuild", rows, work)

    def close(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # ---- internals -------------------------------------------------------------------------

    def _submit(self, key: str, kind: str, rows: list[FileStatus], work: Callable[[Job], None]) -> Job:
        job = Job(uuid.uuid4().hex[:12], key, kind, rows)
        for r in rows:
            r.job = job.id
        with self._lock:
            jobs = self._jobs.setdefault(key, [])
            jobs.append(job)
            # forget old finished jobs so a long session does not grow without bound
            while sum(len(j.rows) for j in jobs) > _KEEP_ROWS and jobs[0].finished:
                jobs.pop(0)
            self._running += 1
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        try:
            work(job)
        except Exception as exc:  # the engine failed as a whole: say so on every unfinished file
            reason = str(exc) if isinstance(exc, RagchatError) else f"{type(exc).__name__}: {exc}"
            log.exception("ingestion job %s failed", job.id)
            job.error = reason
            for r in job.rows:
                if r.stage not in TERMINAL:
                    self._set(r, "failed", message=f"failed: {reason}")
        finally:
            with self._lock:
                job.finished = True
                self._running -= 1

    def _update(self, job: Job, event: FileEvent) -> None:
        with self._lock:
            row = next((r for r in job.rows if r.source == event.source and r.stage not in TERMINAL), None)
            if row is None:
                row = next((r for r in job.rows if r.source == event.source), None)
            if row is None:  # e.g. a rebuild reports documents as it reaches them
                row = FileStatus(event.source, job=job.id)
                job.rows.append(row)
        self._event_row(row, event)

    def _event_row(self, row: FileStatus, e: FileEvent) -> None:
        self._set(row, e.stage, e.done, e.total, e.message)

    def _set(self, row: FileStatus, stage: str, done: int | None = None, total: int | None = None, message: str = "") -> None:
        with self._lock:
            row.stage = stage
            if done is not None:
                row.done = done
            if total is not None:
                row.total = total
            row.message = message
            row.updated = time.time()


def _distinct(name: str, taken: set[str]) -> str:
    """name, or name (2), name (3)... so two uploads with one name in a batch stay two documents."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{stem} ({n}).{ext}" if dot else f"{stem} ({n})"
        n += 1
    taken.add(candidate)
    return candidate
