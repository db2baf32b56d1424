"""The documents part of the catalog: the document life cycle, and each document's pages, word boxes and chunks.

Status of a document: "indexing" while its chunks are being written (a crash leaves it there and
recovery purges and re-queues it), "done", or "failed" with an error for people. A document is
searchable only once it is "done" (``searchable_doc_ids``). Every change of that state is logged
to the change log (ragchat.store.jobs) in the same transaction.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from sqlalchemy import delete, func, select, update

from ragchat.store.jobs import log_change
from ragchat.store.records import Chunk, DocInfo
from ragchat.store.tables import ChunkRow, Document, PageBoxesRow, PageRow, now


def doc_info(d: Document) -> DocInfo:
    return DocInfo(
        d.id, d.source, d.collection, d.owner, d.sha256, d.size, d.kind, d.pages, d.chunks, d.status, d.error,
        d.embed_model, d.original, d.created_at, d.updated_at,
    )


class Documents:
    """Mixin of ``Catalog`` (it needs ``session()``, ``last_change()`` and the searchable cache
    attributes that ``Catalog.__init__`` sets)."""

    def find(self, collection: str, source: str) -> DocInfo | None:
        with self.session() as s:
            d = s.scalar(select(Document).where(Document.collection == collection, Document.source == source))
            return doc_info(d) if d else None

    def get(self, doc_id: str) -> DocInfo | None:
        with self.session() as s:
            d = s.get(Document, doc_id)
            return doc_info(d) if d else None

    def documents(self, collections: Sequence[str] | None = None, status: str | None = None) -> list[DocInfo]:
        q = select(Document).order_by(Document.collection, Document.source)
        if collections is not None:
            q = q.where(Document.collection.in_(list(collections)))
        if status is not None:
            q = q.where(Document.status == status)
        with self.session() as s:
            return [doc_info(d) for d in s.scalars(q)]

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
                d = Document(id=doc_id, source=source, collection=collection, created_at=now())
                s.add(d)
            d.owner, d.sha256, d.size, d.kind, d.pages = owner, sha256, size, kind, len(pages)
            d.chunks, d.status, d.error, d.embed_model, d.original = 0, "indexing", None, embed_model, original
            d.updated_at = now()
            log_change(s, doc_id)
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
            s.execute(update(Document).where(Document.id == doc_id).values(status="done", chunks=n, error=None, updated_at=now()))
            log_change(s, doc_id)
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
            log_change(s, doc_id)
        self._invalidate()
        return ids

    def mark_indexing(self, doc_id: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Document).where(Document.id == doc_id).values(status="indexing", updated_at=now()))
            log_change(s, doc_id)
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
