"""Shared mode's BM25: each process keeps its own Tantivy index as a local cache that follows the catalog.

Why a cache per server and not one shared index: Tantivy allows one writer per index and wants a
local disk, and BM25 with our analysers (stemming, jieba for Chinese) must stay exactly what it is
in the embedded mode (docs/RETRIEVAL.md). The catalog stays the truth: every change of a document's
searchable state is a row of its change log (store.tables.Change), in commit order. A follower thread
reads the rows after the last one it applied, drops those documents from the local index and adds
back the chunks of the ones that are "done" now (one still being written waits for its next change); a document removed through another server leaves
this index within `shared.follow_interval_s`. Even before that, retrieval never returns it: it keeps
only chunks of documents the catalog says are done and reads their text from the catalog.

Pruning: each cache reports the sequence number it has applied (``Catalog.applied_changes``, also
as a heartbeat every ``_REPORT_S``), and a follower prunes the rows every live cache has applied
every ``_PRUNE_S`` (``Catalog.prune_changes``). A cache that finds rows it still needed pruned (it
was stopped longer than ``READER_GONE_S``) rebuilds from the catalog, like a new one.

The cache lives in a slot folder under `shared.lexical_cache` (default ~/.cache/ragchat/lexical),
keyed by the catalog's store id: a restarted server catches up from the sequence number it saved
instead of re-reading every chunk, and several servers on one machine each take a free slot (a
file lock), since a Tantivy index has one writer.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
import uuid
from pathlib import Path

from ragchat.store.catalog import Catalog
from ragchat.store.lexical import LEXICAL_FORMAT, LexicalIndex
from ragchat.store.outage import RetryQuietly

log = logging.getLogger(__name__)

_REPORT_S = 60.0  # how often a cache says it is alive even when nothing changed
_PRUNE_S = 60.0  # how often a follower prunes the change log


def store_id(catalog: Catalog) -> str:
    """A random id of this catalog, made once: it names the local caches that belong to it."""
    return catalog.get_meta("store_id") or catalog.setdefault_meta("store_id", uuid.uuid4().hex)


class FollowedLexicalIndex:
    """A LexicalIndex in a local slot folder, kept in step with the catalog's change log."""

    def __init__(self, catalog: Catalog, cache_dir: Path, interval_s: float):
        self.catalog = catalog
        self.interval_s = interval_s
        base = cache_dir / store_id(catalog)
        base.mkdir(parents=True, exist_ok=True)
        self.folder, self._slot_lock = _take_slot(base)
        self._state = self.folder / "applied.json"
        self.index = LexicalIndex(self.folder / "index")
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reader = uuid.uuid4().hex  # replaced by the cache's own id when it has one
        self._reported = self._pruned = 0.0
        self.seq = self._load_seq()
        if self.seq is None or self.seq > catalog.last_change() or self.seq < catalog.changes_pruned_through():
            self.rebuild()  # new cache, the catalog was replaced, or rows it needed were pruned
        else:
            self._save_seq(self.seq)  # keeps this cache's id, and says where it stands, before pruning starts
        self.follow()

    def _load_seq(self) -> int | None:
        try:
            state = json.loads(self._state.read_text())
        except (OSError, ValueError):
            return None
        if state.get("format") != LEXICAL_FORMAT or not isinstance(state.get("seq"), int):
            return None
        if isinstance(state.get("reader"), str):
            self.reader = state["reader"]
        return state["seq"]

    def _save_seq(self, seq: int) -> None:
        self.seq = seq
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"format": LEXICAL_FORMAT, "seq": seq, "reader": self.reader}))
        tmp.replace(self._state)
        self.catalog.applied_changes(self.reader, seq)
        self._reported = time.monotonic()

    def rebuild(self) -> None:
        """Fill the cache from every done chunk of the catalog. The changes made meanwhile are
        applied by the next follow(), since the sequence number is read before the chunks."""
        with self._sync_lock:
            seq = self.catalog.last_change()
            self.catalog.applied_changes(self.reader, seq)  # holds back pruning past seq from now on
            self.index.clear()
            for rows in self.catalog.iter_done_chunks():
                self.index.add(rows)
            self._save_seq(seq)
        log.info("BM25 cache %s rebuilt from the catalog", self.folder)

    def follow(self) -> int:
        """Apply the catalog's changes since the last call; returns how many documents changed."""
        changed = self._follow()
        if time.monotonic() - self._reported > _REPORT_S:
            self.catalog.applied_changes(self.reader, self.seq)
            self._reported = time.monotonic()
        if time.monotonic() - self._pruned > _PRUNE_S:
            self._pruned = time.monotonic()
            self.catalog.prune_changes()
        return changed

    def _follow(self) -> int:
        changed = 0
        with self._sync_lock:
            while True:
                changes = self.catalog.changes_since(self.seq)
                if self.seq < self.catalog.changes_pruned_through():  # read after: a prune commits both at once
                    break  # rows this cache still needed are gone
                if not changes:
                    return changed
                doc_ids = list(dict.fromkeys(d for _, d in changes))
                # A document being written is left as it is: the process writing it keeps its own
                # cache current, and the change that ends the writing brings it here.
                statuses = self.catalog.statuses(doc_ids)
                settled = [d for d in doc_ids if statuses.get(d) != "indexing"]
                self.index.replace_docs(settled, self.catalog.done_chunks_of(settled))
                self._save_seq(changes[-1][0])
                changed += len(doc_ids)
        log.warning("BM25 cache %s was away while the change log was pruned; rebuilding it", self.folder)
        self.rebuild()
        return changed + 1

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ragchat-lexical-follow", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        retry = RetryQuietly(  # while the catalog's server is away
            self._stop, self.interval_s,
            away=lambda exc: log.warning("BM25 cache cannot read the catalog's changes (%s); retrying", exc),
            back=lambda: log.warning("BM25 cache follows the catalog again"))
        while not self._stop.wait(self.interval_s):
            retry(self.follow)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.index.close()
        fcntl.flock(self._slot_lock, fcntl.LOCK_UN)
        self._slot_lock.close()


def _take_slot(base: Path, slots: int = 64):
    """The first slot folder no other process on this machine holds, with its lock held."""
    for n in range(slots):
        fh = open(base / f"slot{n}.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        folder = base / f"slot{n}"
        folder.mkdir(exist_ok=True)
        return folder, fh
    raise RuntimeError(f"all {slots} BM25 cache slots under {base} are in use")
