"""The record types the catalog stores and hands back, without SQL in them.

``Chunk`` is what chunking makes and the catalog keeps as a chunk row; ``DocInfo`` is a document
row as callers see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Chunk:
    id: str
    seq: int
    page: int | None
    start: int  # character offsets into the page text
    end: int
    text: str


@dataclass(frozen=True)
class DocInfo:
    id: str
    source: str
    collection: str
    owner: str | None
    sha256: str
    size: int
    kind: str
    pages: int
    chunks: int
    status: str
    error: str | None
    embed_model: str
    original: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        d["created_at"] = self.created_at.isoformat()
        d["updated_at"] = self.updated_at.isoformat()
        return d

    def summary(self) -> dict:
        """What people and API clients see of a document (no hashes, no store paths)."""
        return {"id": self.id, "name": self.source, "collection": self.collection, "pages": self.pages,
                "chunks": self.chunks, "size": self.size, "added": self.created_at.isoformat(), "status": self.status,
                "error": self.error}
