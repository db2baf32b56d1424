"""A watched folder: one collection kept in step with a folder on disk.

`ragchat watch DIR` runs one `FolderWatcher`; the web app's server runs one per entry of
`watch.folders` (`Watchers`). Each watcher:

- hears about changes from `watchdog` (inotify, FSEvents, ReadDirectoryChangesW), or polls the
  folder with watchdog's PollingObserver when `watch.polling` is set (network folders) or when
  notifications cannot be set up (e.g. the inotify watch limit is reached);
- only marks the changed paths as pending: a worker thread reads a pending file once its size and
  modification time have stayed the same for `watch.settle_s` seconds, so a file being copied or
  written is waited for, and a burst of events becomes one batch;
- syncs a batch against the catalog, which is the only state there is: a file whose content hash
  the collection's document already has is left alone; a file whose hash another finished document
  has (a rename, or a copy) gets that document's chunks and vectors re-keyed under its own name
  (`Ingestor.adopt`: nothing is parsed or embedded); other new or changed files are ingested like
  any upload; documents whose file is gone are removed from the catalog and both indexes;
- on start, catches up with what changed while it was not running by marking every file of the
  folder and every document of the collection as pending (a crash mid-batch is repaired by the
  ingestor's recovery, and the rest is redone by this catch-up). A file whose stamp (size,
  modification and change times, inode) is the one recorded when it was last read keeps that
  read's hash (store.watched), so a restart hashes only what changed, not the whole folder.

A watched collection mirrors its folder: a document in it that has no file in the folder is
removed. So that this cannot empty a collection by mistake, the store remembers which folder each
watched collection belongs to, and a collection that already holds other documents, or belongs to
another folder, is refused.

Hidden files and folders (a name starting with "."), Office lock files ("~$..."), files of an
unsupported type and the store itself (when it lies inside the folder) are not watched. Symbolic
links to folders are not followed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEventHandler

from ragchat.core.access import check_collection_name
from ragchat.core.errors import ConfigError
from ragchat.ingest.pipeline import (
    SUPPORTED_SUFFIXES,
    FileEvent,
    SourceFile,
    doc_id_for,
    sha256_file,
)
from ragchat.store.outage import RetryQuietly

log = logging.getLogger(__name__)

_CLAIM = "watch:"  # store meta key prefix: watch:<collection> -> the folder it mirrors
_UNSEEN = object()  # a pending path whose size and mtime were not looked at yet
INGEST_BATCH = 8  # files per ingestor call


@dataclass
class _Pending:
    stat: object  # (size, mtime_ns), None when the file is gone, or _UNSEEN
    since: float  # when stat was last seen to change (or an event came)


def default_collection(folder: Path) -> str:
    """The collection a folder goes to when none is named: the folder's own name."""
    name = folder.expanduser().resolve().name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "watched"


def claim(catalog, folder: Path, collection: str) -> None:
    """Record that `collection` mirrors `folder`, or raise ConfigError when that would remove
    documents that are not the folder's: the collection belongs to another folder that still
    exists, or already holds documents without having been watched. (A folder that was moved takes
    its collection along: sources are relative to the folder, so its documents stay as they are.)"""
    folder = str(folder.resolve())
    owner = catalog.get_meta(_CLAIM + collection)
    if owner == folder:
        return
    if owner is not None and Path(owner).is_dir():
        raise ConfigError(f"collection {collection!r} already mirrors the folder {owner}: a watched collection mirrors "
                          "one folder, so choose another collection for this one (--collection NAME)")
    held = len(catalog.documents(collections=[collection]))
    if held and owner is None:
        raise ConfigError(f"collection {collection!r} already holds {held} document(s) that are not from {folder}. A "
                          "watched collection mirrors its folder, so they would be removed: choose another collection "
                          "(--collection NAME; by default the folder's name)")
    catalog.set_meta(_CLAIM + collection, folder)


class FolderWatcher:
    """Keeps `collection` in step with `folder` until stopped. `engine` gives the ingestor and the
    catalog. on_event: the ingestor's progress events (queued, reading, embedding n/m, done...);
    on_result(source, line): one line per file synced ("added 3 chunks", "renamed from a.txt: 3
    chunks re-used, none embedded", "removed", "failed: ..."); on_idle(documents): called whenever
    every pending change is synced."""

    def __init__(self, engine, folder: Path, collection: str | None = None, *, settle_s: float = 2.0,
                 polling: bool = False, poll_interval_s: float = 2.0,
                 on_event: Callable[[FileEvent], None] | None = None,
                 on_result: Callable[[str, str], None] | None = None,
                 on_idle: Callable[[int], None] | None = None):
        self.root = Path(folder).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"cannot watch {folder}: it is not a folder")
        self.engine = engine
        self.collection = check_collection_name(collection or default_collection(self.root))  # AccessError for people
        self.settle_s = settle_s
        self.polling = polling
        self.poll_interval_s = poll_interval_s
        self.on_event = on_event or (lambda e: None)
        self.on_result = on_result or (lambda s, line: None)
        self.on_idle = on_idle or (lambda n: None)
        self.mode = ""  # "notifications" or "polling", once started
        store = Path(engine.store).resolve()
        self._store = store.relative_to(self.root).as_posix() if store.is_relative_to(self.root) else None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        self._observer = None
        self._thread: threading.Thread | None = None

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> FolderWatcher:
        """Claim the collection, start listening, then queue the catch-up (every file and document)."""
        claim(self.engine.catalog, self.root, self.collection)
        self._observer = self._start_observer()
        self.mark_all()
        self._thread = threading.Thread(target=self._loop, name=f"ragchat-watch-{self.collection}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop listening and syncing; a batch being ingested finishes first (up to timeout)."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        """Whether changes are pending or being synced."""
        with self._lock:
            return self._busy or bool(self._pending)

    def _start_observer(self):
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        handler = _Handler(self)
        if not self.polling:
            observer = Observer()
            try:
                observer.schedule(handler, str(self.root), recursive=True)
                observer.start()
                self.mode = "notifications"
                return observer
            except OSError as exc:  # e.g. inotify's watch or instance limit
                log.warning("cannot get change notifications for %s (%s); polling it every %.1f s instead",
                            self.root, exc, self.poll_interval_s)
        observer = PollingObserver(timeout=self.poll_interval_s)
        observer.schedule(handler, str(self.root), recursive=True)
        observer.start()
        self.mode = "polling"
        return observer

    # ---- what changed ----------------------------------------------------------------------

    def watched(self, source: str) -> bool:
        """Whether a path relative to the folder is a file this watcher keeps in the collection."""
        parts = source.split("/")
        if any(p.startswith((".", "~$")) for p in parts):
            return False
        if self._store is not None and (source == self._store or source.startswith(self._store + "/")):
            return False
        return Path(source).suffix.lower() in SUPPORTED_SUFFIXES

    def mark_all(self) -> None:
        """Every file of the folder and every document of the collection becomes pending."""
        self._mark(self._files_under("") | {d.source for d in self.engine.catalog.documents(collections=[self.collection])})

    def mark_path(self, path: str, is_directory: bool) -> None:
        """A change reported at an absolute path (a file, or a folder: then everything under it)."""
        try:
            source = Path(os.path.abspath(path)).relative_to(self.root).as_posix()
        except ValueError:
            return  # outside the folder (the other end of a move)
        if source == ".":
            return
        if is_directory:
            prefix = source + "/"
            docs = {d.source for d in self.engine.catalog.documents(collections=[self.collection])
                    if d.source.startswith(prefix)}
            self._mark(self._files_under(source) | docs)
        else:
            self._mark([source])

    def _mark(self, sources: Iterable[str]) -> None:
        now = time.monotonic()
        sources = [s for s in sources if self.watched(s)]
        with self._lock:
            for s in sources:
                self._pending[s] = _Pending(_UNSEEN, now)
        self._wake.set()
        for s in sources:  # shown as queued until synced (every synced source ends with a final event)
            self.on_event(FileEvent(s, "queued", message="waiting until the file stops changing"))

    def _files_under(self, sub: str) -> set[str]:
        out: set[str] = set()
        top = self.root / sub if sub else self.root
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(root).relative_to(self.root)
            for f in files:
                source = (rel / f).as_posix()
                if self.watched(source):
                    out.add(source)
        return out

    def _settled(self) -> list[str]:
        """Pending sources whose size and mtime (or absence) held still for settle_s."""
        now = time.monotonic()
        with self._lock:
            items = list(self._pending.items())
        ready = []
        for source, p in items:
            try:
                st = os.stat(self.root / source)
                stat = (st.st_size, st.st_mtime_ns) if os.path.isfile(self.root / source) else None
            except OSError:
                stat = None
            if stat != p.stat:
                p.stat, p.since = stat, now
            elif now - p.since >= self.settle_s:
                ready.append(source)
        seen = dict(items)
        with self._lock:  # an event that came meanwhile replaced the entry: that one waits again
            for source in ready:
                if self._pending.get(source) is seen[source]:
                    del self._pending[source]
            self._busy = bool(ready)
            return ready

    # ---- syncing ---------------------------------------------------------------------------

    def _loop(self) -> None:
        tick = max(0.05, min(0.5, self.settle_s / 4))
        retry = RetryQuietly(  # the engine failed as a whole (a store's server is away): try the batch again later
            self._stop, max(self.settle_s, 5.0),
            away=lambda exc: log.error("watched folder %s: sync failed; trying again", self.root, exc_info=exc))
        while not self._stop.is_set():
            ready = self._settled()
            if ready:
                retry(self.sync, ready)
                with self._lock:
                    self._busy = False
                    idle = not self._pending
                if idle:
                    self.on_idle(len(self.engine.catalog.documents(collections=[self.collection])))
                continue
            self._wake.wait(tick)
            self._wake.clear()

    def sync(self, sources: Iterable[str]) -> None:
        """Bring the documents of these sources in line with the folder: unchanged files are left
        alone, renamed or copied ones re-keyed, new and changed ones ingested, missing ones removed."""
        ingestor, catalog = self.engine.ingestor, self.engine.catalog
        model = ingestor.embedder.model_id
        docs = {d.source: d for d in catalog.documents(collections=[self.collection])}
        by_hash: dict[str, list] = {}
        for d in docs.values():
            if d.status == "done" and d.embed_model == model:
                by_hash.setdefault(d.sha256, []).append(d)

        present = {s: self.root / s for s in sorted(set(sources)) if self.watched(s) and (self.root / s).is_file()}
        gone = [s for s in sorted(set(sources)) if s not in present and s in docs]
        for s in set(sources) - set(present) - set(gone):  # ignored, or gone without ever being a document
            self.on_event(FileEvent(s, "unchanged"))
        to_ingest: list[SourceFile] = []
        renamed: set[str] = set()  # donors already renamed in this batch: another file of theirs is a copy
        known, read = catalog.file_hashes(self.collection), {}
        for source, path in present.items():
            try:
                sha = _content_hash(path, known.get(source), read, source)
            except OSError:  # it went away meanwhile: its own event brings it back
                self.on_event(FileEvent(source, "unchanged"))
                continue
            d = docs.get(source)
            if d is not None and d.sha256 == sha and (d.status == "failed" or (d.status == "done" and d.embed_model == model)):
                self.on_event(FileEvent(source, "unchanged"))  # a file that failed stays failed until it changes
                continue
            f = SourceFile(path, source)
            donors = sorted((x for x in by_hash.get(sha, []) if x.source != source), key=lambda x: self._exists(x.source))
            result = None
            if donors:
                donor = donors[0]
                result = ingestor.adopt(donor.id, f, self.collection, sha, on_event=self.on_event)
                if result is not None:
                    how = "copied" if self._exists(donor.source) or donor.id in renamed else "renamed"
                    renamed.add(donor.id)
                    self.on_result(source, f"{how} from {donor.source}: {result.chunks} chunks re-used, none embedded")
                    by_hash.setdefault(sha, []).append(catalog.get(result.doc_id))
            if result is None:
                to_ingest.append(f)
        catalog.remember_hashes(self.collection, read, gone=[s for s in sources if s not in present])
        embedded: dict[str, int] = {}

        def event(e: FileEvent) -> None:  # a line per file as soon as it is done
            if e.stage == "embedding":
                embedded[e.source] = e.done
            self.on_event(e)
            if e.stage == "done":
                self.on_result(e.source, f"{e.message}, {embedded.get(e.source, 0)} embedded")
            elif e.stage in ("failed", "unchanged"):
                self.on_result(e.source, e.message or e.stage)

        # A few files per call, so that uploads (which wait for the ingestor) are not held up by a
        # whole folder, and a stop is quick; what a stop leaves undone the next start catches up.
        for i in range(0, len(to_ingest), INGEST_BATCH):
            if self._stop.is_set():
                return
            ingestor.ingest(to_ingest[i : i + INGEST_BATCH], self.collection, on_event=event)
        for source in gone:
            d = docs[source]
            self.on_event(FileEvent(source, "reading", message="removing"))
            ingestor.remove(d.id)
            self.on_event(FileEvent(source, "done", message="removed"))
            self.on_result(source, "removed")

    def _exists(self, source: str) -> bool:
        return self.watched(source) and (self.root / source).is_file()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _content_hash(path: Path, known: tuple[str, str] | None, read: dict, source: str) -> str:
    """The file's SHA-256: the one read last time when its stamp has not moved since (any write
    moves the change time, which no program can set back), else read now and kept in ``read``
    unless the file changed while it was read."""
    before = _stamp(path)
    if known is not None and known[0] == before:
        return known[1]
    sha = sha256_file(path)
    if _stamp(path) == before:
        read[source] = (before, sha)
    return sha


class _Handler(FileSystemEventHandler):
    """watchdog's events -> pending paths. Only "something changed here" is taken from an event;
    what changed is read from the disk once it settles (events can be lost, merged or out of order)."""

    def __init__(self, watcher: FolderWatcher):
        super().__init__()
        self.watcher = watcher

    def dispatch(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type not in ("created", "deleted", "moved"):
            return  # a folder is "modified" whenever a file in it changes, and that file has its own event
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.watcher.mark_path(os.fsdecode(path), event.is_directory)


class Watchers:
    """The folders of settings.watch.folders, for the web app's server: each watched in the
    background, with the progress of each file kept for the library (`progress()`)."""

    def __init__(self, engine, settings):
        self.engine = engine
        self.settings = settings
        self.watchers: list[FolderWatcher] = []
        self._progress: dict[str, dict] = {}  # doc id -> the latest event of a file being synced
        self._lock = threading.Lock()
        self.version = 0  # bumped on every event, so the page refreshes only when something changed

    def start(self) -> None:
        """Start every configured folder; one that cannot be watched is logged and skipped."""
        for entry in self.settings.folders:
            try:
                w = FolderWatcher(self.engine, entry.path, entry.collection or None, settle_s=self.settings.settle_s,
                                  polling=self.settings.polling, poll_interval_s=self.settings.poll_interval_s)
                w.on_event = lambda e, w=w: self._event(doc_id_for(w.collection, e.source), w.collection, e)
                w.on_result = lambda s, line, w=w: log.info("watched %s: %s: %s", w.collection, s, line)
                w.start()
                log.warning("watching %s into collection %r (%s)", w.root, w.collection, w.mode)
                self.watchers.append(w)
            except Exception as exc:
                log.error("cannot watch %s: %s", entry.path, exc)

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()

    def _event(self, doc_id: str, collection: str, e: FileEvent) -> None:
        with self._lock:
            self.version += 1
            if e.stage in ("done", "unchanged", "failed"):
                self._progress.pop(doc_id, None)
            else:
                self._progress[doc_id] = {"id": doc_id, "source": e.source, "collection": collection, "stage": e.stage,
                                          "done": e.done, "total": e.total, "message": e.message}

    def progress(self) -> list[dict]:
        """Files being synced right now: {id, source, collection, stage, done, total, message}."""
        with self._lock:
            return [dict(p) for p in self._progress.values()]
