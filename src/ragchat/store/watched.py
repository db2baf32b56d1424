"""What a folder watcher last read of each file (``watched_files``): its stamp (size, modification
and change times, inode) and the SHA-256 of its content, so that a watcher starting again reads
only the files whose stamp moved instead of hashing the whole folder (ragchat.ingest.watch)."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import delete, select

from ragchat.store.tables import WatchedFile


class WatchedFiles:
    """Mixin of ``Catalog``: the watchers' file stamps."""

    def file_hashes(self, collection: str) -> dict[str, tuple[str, str]]:
        """source -> (stamp, sha256) of the files last read in this collection's folder."""
        with self.session() as s:
            rows = s.scalars(select(WatchedFile).where(WatchedFile.collection == collection))
            return {r.source: (r.stamp, r.sha256) for r in rows}

    def remember_hashes(self, collection: str, read: dict[str, tuple[str, str]], gone: Iterable[str] = ()) -> None:
        with self.session() as s, s.begin():
            for source, (stamp, sha) in read.items():
                s.merge(WatchedFile(collection=collection, source=source, stamp=stamp, sha256=sha))
            gone = list(gone)
            if gone:
                s.execute(delete(WatchedFile).where(WatchedFile.collection == collection, WatchedFile.source.in_(gone)))
