"""Files -> catalog + vector index + lexical index, with progress events; idempotent and crash-safe.

For each file: hash it; if the catalog already has this content under this source and model, report
"unchanged" and touch nothing. Otherwise parse it in the isolated loader (the next file is parsed in
the background while this one embeds; the first one while the embedding model, Chroma and the text
analysers load), chunk it, mark the document "indexing" in the catalog
(committed before any index is touched), swap its old chunks for the new ones in both indexes, and
mark it "done". A crash leaves the document in "indexing"; `recover()` purges every chunk of such a
document from both indexes and ingests it again from the stored original.

One bad file never stops the others: its failure is recorded with a reason for people.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ragchat.core.access import owned_collection
from ragchat.core.text import CJK_RANGE, analyze
from ragchat.core.errors import LoadError, host_fault, host_faults
from ragchat.ingest.chunking import chunk_id, chunk_pages
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.store.catalog import Catalog
from ragchat.store.records import Chunk, DocInfo
from ragchat.store.lexical import LexicalIndex
from ragchat.store.vectors import VectorIndex

SUPPORTED_SUFFIXES = {
    ".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".text", ".docx", ".pptx", ".xlsx", ".csv", ".tsv",
    ".epub", ".eml", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp",
}  # fmt: skip
WRITE_CHUNKS = 256  # chunks embedded before they are written to the indexes and the catalog together

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str  # the name people see and cite: relative to the folder that was ingested


@dataclass(frozen=True)
class _Parse:
    """A parse running in the isolated loader, with the facts already known about the file."""

    future: Future
    sha256: str
    size: int


@dataclass
class FileEvent:
    source: str
    stage: str  # queued | reading | embedding | done | unchanged | failed
    done: int = 0
    total: int = 0
    message: str = ""


@dataclass
class FileResult:
    source: str
    outcome: str  # added | updated | unchanged | failed
    chunks: int = 0
    error: str | None = None
    doc_id: str | None = None

    def line(self) -> str:
        if self.outcome == "failed":
            return f"failed: {self.error}"
        if self.outcome == "unchanged":
            return "unchanged"
        return f"{self.outcome} {self.chunks} chunks"


def collect(paths: Iterable[Path]) -> list[SourceFile]:
    """Files to ingest: files as given, folders walked recursively (hidden entries skipped)."""
    out: list[SourceFile] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            out.append(SourceFile(p, p.name))
        elif p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    fp = Path(root) / f
                    if not f.startswith(".") and fp.is_file():
                        out.append(SourceFile(fp, fp.relative_to(p).as_posix()))
        else:  # reported as a failed file, so the other paths still ingest
            out.append(SourceFile(p, p.name))
    return out


def doc_id_for(collection: str, source: str) -> str:
    return hashlib.sha256(f"{collection}\0{source}".encode()).hexdigest()[:32]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_name(name: str) -> str:
    """A file name that cannot escape a folder or confuse a shell: no separators, dots-only,
    control characters or NUL."""
    name = name.replace("\\", "/").split("/")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)
    name = re.sub(f"[^\\w.\\-() {CJK_RANGE}]", "_", name).strip(" .")
    return name[:150] or "file"


class Ingestor:
    def __init__(self, *, catalog: Catalog, vectors: VectorIndex, lexical: LexicalIndex, embedder, loader: IsolatedLoader,
                 store_dir: Path, max_tokens: int, overlap_tokens: int, batch_size: int):
        self.catalog = catalog
        self.vectors = vectors
        self.lexical = lexical
        self.embedder = embedder
        self.loader = loader
        self.files_dir = store_dir / "files"
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one ingestion at a time; chat keeps working meanwhile

    def ingest(self, files: Sequence[SourceFile], collection: str, password: str | None = None, owner: str | None = None,
               on_event: Callable[[FileEvent], None] | None = None, force: bool = False) -> list[FileResult]:
        """force: parse and index again even when the content is unchanged (re-index)."""
        emit = on_event or (lambda e: None)
        collection, owner = owned_collection(collection, owner)  # a user's files go to their private collection
        for f in files:
            emit(FileEvent(f.source, "queued"))
        with self._lock, host_faults(self.files_dir.parent):
            results: list[FileResult] = []
            pending: Future | None = None
            for i, f in enumerate(files):
                parse = pending if pending is not None else self._start_parse(f, collection, password, force, emit)
                pending = self._start_parse(files[i + 1], collection, password, force, emit) if i + 1 < len(files) else None
                results.append(self._ingest_one(f, collection, owner, parse, emit))
            return results

    def _start_parse(self, f: SourceFile, collection: str, password: str | None, force: bool,
                     emit: Callable[[FileEvent], None]) -> _Parse | FileResult:
        """Either a parse under way, or a FileResult when no parse is needed. Slow steps of the parse
        (OCR, page by page) are reported as "reading" events with done/total and a message."""
        try:
            self.loader.check_file(f.path)  # size, type of file: before reading a byte of it
            size = f.path.stat().st_size
            sha = sha256_file(f.path)
        except LoadError as exc:
            return FileResult(f.source, "failed", error=str(exc))
        except OSError as exc:
            return FileResult(f.source, "failed", error=f"cannot read the file: {exc.strerror or exc}")
        doc_id = doc_id_for(collection, f.source)
        old = self.catalog.get(doc_id)
        if not force and old and old.status == "done" and old.sha256 == sha and old.embed_model == self.embedder.model_id:
            return FileResult(f.source, "unchanged", chunks=old.chunks, doc_id=doc_id)
        def progress(message: str, done: int, total: int) -> None:
            emit(FileEvent(f.source, "reading", done, total, message=message))

        parse = _Parse(self.loader.submit(f.path, password, on_progress=progress), sha, size)
        self._load_parts()  # the first time, about 3 s of it run while the worker parses this file
        return parse

    def _load_parts(self) -> None:
        """Load the embedding model, open Chroma and load jieba's dictionary (both through
        `analyze`), which the first file needs; quick once done."""
        self.embedder.load()
        self.vectors.open()
        analyze("中文 text")

    def _ingest_one(self, f: SourceFile, collection: str, owner: str | None, parse, emit) -> FileResult:
        """Ingest one file; a full or read-only store disk fails this file only, with its half-written
        document undone (see _abandon), and the next file is tried."""
        doc_id = doc_id_for(collection, f.source)
        begun: list[str] = []  # the stored original's name, once the catalog says "indexing"
        try:
            return self._write_one(f, collection, owner, parse, emit, begun)
        except Exception as exc:
            fault = host_fault(exc, self.files_dir.parent)
            if fault is None:
                raise
            log.warning("%s failed: %s (%s: %s)", f.source, type(fault).__name__, type(exc).__name__, exc)
            if begun:
                self._abandon(doc_id, f.source, collection, owner, begun[0], str(fault))
            emit(FileEvent(f.source, "failed", message=f"failed: {fault}"))
            return FileResult(f.source, "failed", error=str(fault), doc_id=doc_id)

    def _abandon(self, doc_id: str, source: str, collection: str, owner: str | None, original: str, error: str) -> None:
        """Undo a document whose writing a disk fault cut short: its stored original first (it frees
        the most space), then its chunks in both indexes, then its catalog rows, recording the failure.
        A step that fails too leaves the document "indexing": never searchable, and purged by
        recover() at the next start."""
        try:
            for name in (original, original + ".part"):
                (self.files_dir.parent / name).unlink(missing_ok=True)
            self.vectors.delete_doc(doc_id)
            self.lexical.delete_doc(doc_id)
            self.catalog.remove(doc_id)
            self.catalog.record_failure(doc_id=doc_id, source=source, collection=collection, owner=owner, error=error)
        except Exception as exc:
            if host_fault(exc, self.files_dir.parent) is None:
                raise
            log.warning("%s stays unfinished until the next start: %s", source, exc)

    def _write_one(self, f: SourceFile, collection: str, owner: str | None, parse, emit, begun: list[str]) -> FileResult:
        doc_id = doc_id_for(collection, f.source)
        if isinstance(parse, FileResult):
            if parse.outcome == "failed":
                self.catalog.record_failure(doc_id=doc_id, source=f.source, collection=collection, owner=owner, error=parse.error)
            emit(FileEvent(f.source, "unchanged" if parse.outcome == "unchanged" else "failed", message=parse.line()))
            return parse
        emit(FileEvent(f.source, "reading"))
        try:
            doc = parse.future.result()
            pages = [(p.number, p.text) for p in doc.pages]
            chunks = chunk_pages(pages, self.embedder.tokenizer, self.max_tokens, self.overlap_tokens, doc_id, parse.sha256)
            if not chunks:
                raise LoadError("no text found in the file", "empty")
        except LoadError as exc:
            self.catalog.record_failure(doc_id=doc_id, source=f.source, collection=collection, owner=owner,
                                        error=str(exc), sha256=parse.sha256, size=parse.size)
            emit(FileEvent(f.source, "failed", message=f"failed: {exc}"))
            return FileResult(f.source, "failed", error=str(exc), doc_id=doc_id)

        old = self.catalog.get(doc_id)
        existed = old is not None and old.status == "done"
        original = self._original_name(f.path, doc_id)
        old_ids = self.catalog.begin_document(
            doc_id=doc_id, source=f.source, collection=collection, owner=owner, sha256=parse.sha256, size=parse.size,
            kind=doc.kind, pages=pages, embed_model=self.embedder.model_id, original=original,
        )
        begun.append(original)
        self.catalog.set_page_boxes(doc_id, [(p.number, p.boxes) for p in doc.pages if p.boxes])  # OCR'd pages
        # Copied only once the catalog says "indexing": a crash before this point leaves the old
        # version done with its old original, a crash after it leaves a document recovery redoes.
        self._keep_original(f.path, original)
        self.vectors.delete(old_ids)
        self.lexical.delete(old_ids)
        self._index([(doc_id, f.source, collection, c) for c in chunks],
                    lambda n: emit(FileEvent(f.source, "embedding", n, len(chunks))))
        n = self.catalog.finish_document(doc_id)
        result = FileResult(f.source, "updated" if existed else "added", chunks=n, doc_id=doc_id)
        emit(FileEvent(f.source, "done", n, n, message=result.line()))
        return result

    def _index(self, items: Sequence[tuple[str, str, str, Chunk]], progress: Callable[[int], None]) -> None:
        """Embed and write chunks to both indexes and the catalog. items: (doc_id, source, collection, chunk).

        One progress event per embedding batch; writes go in blocks of WRITE_CHUNKS, because every
        write has a fixed cost (a Chroma upsert, a BM25 commit, a catalog transaction) that per batch
        took several percent of the ingest time."""
        for start in range(0, len(items), WRITE_CHUNKS):
            block = items[start : start + WRITE_CHUNKS]
            vecs: list[list[float]] = []
            for i in range(0, len(block), self.batch_size):
                vecs += self.embedder.embed_documents([c.text for *_, c in block[i : i + self.batch_size]])
                progress(start + min(i + self.batch_size, len(block)))
            metas = [{"doc_id": d, "source": s, "collection": col, "page": c.page if c.page is not None else -1}
                     for d, s, col, c in block]
            self.vectors.add([c.id for *_, c in block], vecs, metas)
            self.lexical.add((c.id, d, col, c.text) for d, _, col, c in block)
            self.catalog.add_chunks((d, c) for d, _, _, c in block)

    def ingest_texts(self, items: Iterable[tuple[str, str]], collection: str, owner: str | None = None,
                     flush_chunks: int = 512) -> int:
        """Ingest (source, text) pairs without files, batching chunks across documents (for
        evaluation corpora of many short documents). Returns the number of chunks added."""
        collection, owner = owned_collection(collection, owner)
        pending: list[tuple[str, str, str, Chunk]] = []
        doc_ids: list[str] = []
        added = 0

        def flush() -> None:
            self._index(pending, lambda n: None)
            for d in doc_ids:
                self.catalog.finish_document(d)
            pending.clear()
            doc_ids.clear()

        with self._lock:
            for source, text in items:
                doc_id = doc_id_for(collection, source)
                sha = hashlib.sha256(text.encode()).hexdigest()
                old = self.catalog.get(doc_id)
                if old and old.status == "done" and old.sha256 == sha and old.embed_model == self.embedder.model_id:
                    continue
                chunks = chunk_pages([(None, text)], self.embedder.tokenizer, self.max_tokens, self.overlap_tokens, doc_id, sha)
                old_ids = self.catalog.begin_document(
                    doc_id=doc_id, source=source, collection=collection, owner=owner, sha256=sha, size=len(text.encode()),
                    kind="txt", pages=[(None, text)], embed_model=self.embedder.model_id, original=None,
                )
                self.vectors.delete(old_ids)
                self.lexical.delete(old_ids)
                pending += [(doc_id, source, collection, c) for c in chunks]
                doc_ids.append(doc_id)
                added += len(chunks)
                if len(pending) >= flush_chunks:
                    flush()
            flush()
        return added

    def _original_name(self, path: Path, doc_id: str) -> str:
        """Where the original is kept, relative to the store: files/<doc id>-<safe name>. A file
        that already lies there (recovery ingests from it) keeps its name."""
        if path.resolve().parent == self.files_dir.resolve():
            return f"files/{path.name}"
        return f"files/{doc_id}-{safe_name(path.name)}"

    def _keep_original(self, path: Path, original: str) -> None:
        """Copy the original under the store (for page previews and recovery), atomically."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        dest = self.files_dir.parent / original
        if path.resolve() != dest.resolve():
            tmp = dest.with_suffix(dest.suffix + ".part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)

    def adopt(self, donor_id: str, f: SourceFile, collection: str, sha256: str, owner: str | None = None,
              on_event: Callable[[FileEvent], None] | None = None) -> FileResult | None:
        """Index file f, whose content hash is sha256, by re-using the pages, chunks and vectors of
        the indexed document donor_id with the same content (a renamed or copied file): nothing is
        parsed or embedded, only re-keyed under f's source. The donor is left as it is. None when
        the donor is not a finished document of this content and model, or its vectors are
        incomplete: then the caller ingests f instead. Crash-safe like ingest (the new document is
        "indexing" until its last write, and its original is stored first, for recovery)."""
        emit = on_event or (lambda e: None)
        collection, owner = owned_collection(collection, owner)
        doc_id = doc_id_for(collection, f.source)
        with self._lock:
            donor = self.catalog.get(donor_id)
            if (donor is None or donor.status != "done" or donor.sha256 != sha256 or doc_id == donor_id
                    or donor.embed_model != self.embedder.model_id):
                return None
            rows = self.catalog.chunks_of(donor_id)
            stored = self.vectors.vectors_of([r.id for r in rows])
            if not rows or len(stored) != len(rows):
                return None
            old = self.catalog.get(doc_id)
            original = self._original_name(f.path, doc_id)
            pages = self.catalog.pages_of(donor_id)
            old_ids = self.catalog.begin_document(
                doc_id=doc_id, source=f.source, collection=collection, owner=owner, sha256=sha256, size=donor.size,
                kind=donor.kind, pages=pages, embed_model=donor.embed_model, original=original,
            )
            self.catalog.set_page_boxes(doc_id, [(n, self.catalog.page_boxes(donor_id, n)) for n, _ in pages])  # OCR'd pages
            self._keep_original(f.path, original)
            self.vectors.delete(old_ids)
            self.lexical.delete(old_ids)
            chunks = [Chunk(chunk_id(doc_id, sha256, r.page, r.start, r.end), r.seq, r.page, r.start, r.end, r.text)
                      for r in rows]
            metas = [{**stored[r.id][1], "doc_id": doc_id, "source": f.source, "collection": collection} for r in rows]
            self.vectors.add([c.id for c in chunks], [stored[r.id][0] for r in rows], metas)
            self.lexical.add((c.id, doc_id, collection, c.text) for c in chunks)
            self.catalog.add_chunks((doc_id, c) for c in chunks)
            n = self.catalog.finish_document(doc_id)
        result = FileResult(f.source, "updated" if old is not None and old.status == "done" else "added", chunks=n,
                            doc_id=doc_id)
        emit(FileEvent(f.source, "done", n, n, message=result.line()))
        return result

    def remove(self, doc_id: str) -> bool:
        info = self.catalog.get(doc_id)
        if info is None:
            return False
        with self._lock, host_faults(self.files_dir.parent):
            self.catalog.mark_indexing(doc_id)  # unsearchable at once, recoverable if we crash now
            ids = self.catalog.chunk_ids(doc_id)
            self.vectors.delete(ids)
            self.lexical.delete(ids)
            self.catalog.remove(doc_id)
        if info.original:
            (self.files_dir.parent / info.original).unlink(missing_ok=True)
        return True

    def recover(self, on_event: Callable[[FileEvent], None] | None = None) -> list[FileResult]:
        """Purge documents a crash left half-written, then ingest them again from their originals.

        The catalog row stays in "indexing" until the new ingestion replaces it, so a crash during
        recovery itself leaves the document to the next recovery instead of losing it."""
        redo: list[tuple[SourceFile, DocInfo]] = []
        with self._lock:
            if self.files_dir.is_dir():  # copies a crash cut short
                for part in self.files_dir.glob("*.part"):
                    part.unlink(missing_ok=True)
        for info in self.catalog.unfinished():
            with self._lock:
                self.vectors.delete_doc(info.id)
                self.lexical.delete_doc(info.id)
            original = self.files_dir.parent / info.original if info.original else None
            if original and original.is_file():
                redo.append((SourceFile(original, info.source), info))
            else:
                self._give_up(info, "interrupted before it finished; add the file again")
        results = []
        for sf, info in redo:
            (r,) = self.ingest([sf], info.collection, owner=info.owner, on_event=on_event)
            if r.outcome == "failed":  # its half-written chunk rows must go too
                self._give_up(info, r.error or "interrupted before it finished; add the file again")
                (self.files_dir.parent / info.original).unlink(missing_ok=True)
            elif r.doc_id != info.id:  # stored before private collections were named ~user/...
                with self._lock:
                    self.catalog.remove(info.id)
            results.append(r)
        return results

    def _give_up(self, info: DocInfo, error: str) -> None:
        with self._lock:
            self.catalog.remove(info.id)
            self.catalog.record_failure(doc_id=info.id, source=info.source, collection=info.collection, owner=info.owner,
                                        error=error)

    def reindex(self, on_event: Callable[[FileEvent], None] | None = None) -> list[FileResult]:
        """Rebuild both indexes from the catalog's pages with the configured embedder (after a
        model change). Chunk boundaries are measured again with the new model's tokenizer."""
        emit = on_event or (lambda e: None)
        results = []
        with self._lock:
            self.vectors.reset()
            self.lexical.clear()
            for info in self.catalog.documents(status="done") + self.catalog.unfinished():
                pages = self.catalog.pages_of(info.id)
                chunks = chunk_pages(pages, self.embedder.tokenizer, self.max_tokens, self.overlap_tokens, info.id, info.sha256)
                self.catalog.begin_document(
                    doc_id=info.id, source=info.source, collection=info.collection, owner=info.owner, sha256=info.sha256,
                    size=info.size, kind=info.kind, pages=pages, embed_model=self.embedder.model_id, original=info.original,
                )
                self._index([(info.id, info.source, info.collection, c) for c in chunks],
                            lambda n, s=info.source, t=len(chunks): emit(FileEvent(s, "embedding", n, t)))
                n = self.catalog.finish_document(info.id)
                emit(FileEvent(info.source, "done", n, n))
                results.append(FileResult(info.source, "updated", chunks=n, doc_id=info.id))
        return results
