"""Retrieval narrowed to what a user may read: the collections they may search, as Filters.

The naming rules themselves (who owns ``~alice/notes``) live in ``ragchat.core.access``; this module
applies them to what the catalog holds.
"""

from __future__ import annotations

from typing import Sequence

from ragchat.core.access import can_read, can_read_collection
from ragchat.retrieve.search import Filters
from ragchat.store.catalog import Catalog
from ragchat.store.records import DocInfo


def readable_collections(catalog: Catalog, user: str | None) -> list[str]:
    """Every collection this user may search: the shared ones and their own private ones."""
    return [c for c in catalog.collections() if can_read_collection(c, user)]


def scope_filters(catalog: Catalog, user: str | None, filters: Filters | None = None) -> Filters:
    """The filters narrowed to what the user may read. Collections the user asked for but may not
    read are dropped silently (an empty list finds nothing)."""
    filters = filters or Filters()
    allowed = readable_collections(catalog, user)
    if filters.collections is not None:
        wanted = set(filters.collections)
        allowed = [c for c in allowed if c in wanted]
    return Filters(collections=allowed, doc_ids=filters.doc_ids)


def visible_documents(catalog: Catalog, user: str | None, docs: Sequence[DocInfo] | None = None) -> list[DocInfo]:
    return [d for d in (catalog.documents() if docs is None else docs) if can_read(d, user)]
