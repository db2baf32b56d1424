"""The BM25 index: SQLite FTS5 in its own file beside Chroma, updated incrementally.

Text is turned into terms by `ragchat.analysis` (stemming, stop words, Chinese word segmentation)
and stored space-separated, so FTS5 only has to split on spaces; FTS5's built-in bm25() ranks
(k1 = 1.2, b = 0.75). Filters on collection and document run inside the same SQL query.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ragchat.analysis import analyze

_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    terms, chunk_id UNINDEXED, doc_id UNINDEXED, collection UNINDEXED,
    tokenize = "unicode61 remove_diacritics 0"
);
CREATE TABLE IF NOT EXISTS chunk_rows (chunk_id TEXT PRIMARY KEY, rid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunk_rows_rid ON chunk_rows(rid);
"""


@dataclass(frozen=True)
class LexicalHit:
    chunk_id: str
    doc_id: str
    score: float  # BM25, higher is better


class LexicalIndex:
    def __init__(self, path: Path):
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """rows: (chunk_id, doc_id, collection, text). Re-adding a chunk id replaces it."""
        prepared = [(cid, did, col, " ".join(analyze(text))) for cid, did, col, text in rows]
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN")
            try:
                self._delete_locked(cur, [r[0] for r in prepared])
                for cid, did, col, terms in prepared:
                    cur.execute("INSERT INTO fts(terms, chunk_id, doc_id, collection) VALUES (?,?,?,?)", (terms, cid, did, col))
                    cur.execute("INSERT INTO chunk_rows(chunk_id, rid) VALUES (?, ?)", (cid, cur.lastrowid))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def delete(self, chunk_ids: Sequence[str]) -> None:
        if not chunk_ids:
            return
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN")
            try:
                self._delete_locked(cur, chunk_ids)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def delete_doc(self, doc_id: str) -> None:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN")
            rids = [r[0] for r in cur.execute("SELECT rowid FROM fts WHERE doc_id = ?", (doc_id,))]
            cur.executemany("DELETE FROM fts WHERE rowid = ?", [(r,) for r in rids])
            cur.executemany("DELETE FROM chunk_rows WHERE rid = ?", [(r,) for r in rids])
            cur.execute("COMMIT")

    @staticmethod
    def _delete_locked(cur: sqlite3.Cursor, chunk_ids: Sequence[str]) -> None:
        for i in range(0, len(chunk_ids), 500):
            batch = list(chunk_ids[i : i + 500])
            marks = ",".join("?" * len(batch))
            rids = [r[0] for r in cur.execute(f"SELECT rid FROM chunk_rows WHERE chunk_id IN ({marks})", batch)]
            cur.executemany("DELETE FROM fts WHERE rowid = ?", [(r,) for r in rids])
            cur.execute(f"DELETE FROM chunk_rows WHERE chunk_id IN ({marks})", batch)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM fts")
            self._db.execute("DELETE FROM chunk_rows")

    def search(
        self,
        query: str,
        k: int,
        collections: Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
    ) -> list[LexicalHit]:
        terms = list(dict.fromkeys(analyze(query)))
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        sql = "SELECT chunk_id, doc_id, -bm25(fts) FROM fts WHERE fts MATCH ?"
        args: list = [match]
        if collections is not None:
            sql += f" AND collection IN ({','.join('?' * len(collections))})"
            args += list(collections)
        if doc_ids is not None:
            sql += f" AND doc_id IN ({','.join('?' * len(doc_ids))})"
            args += list(doc_ids)
        sql += " ORDER BY bm25(fts) LIMIT ?"
        args.append(k)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [LexicalHit(cid, did, float(s)) for cid, did, s in rows]

    def chunk_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT chunk_id FROM chunk_rows")}

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM chunk_rows").fetchone()[0]
