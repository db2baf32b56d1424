"""The change log of shared mode is pruned once every server's BM25 cache has applied its rows, and
a cache that comes later, or comes back after its rows were pruned, builds itself from the catalog.

Real parts: the catalog (SQLite; PostgreSQL runs the same queries in tests/test_shared_servers.py)
and Tantivy BM25 caches (ragchat.store.lexical_follow), two of them on one catalog as two servers.
"""

from __future__ import annotations

import time

from ragchat.store.catalog import Catalog
from ragchat.store.lexical_follow import FollowedLexicalIndex
from ragchat.store.records import Chunk


def add_doc(catalog: Catalog, name: str, text: str) -> str:
    doc_id = (name.encode().hex() + "0" * 32)[:32]
    catalog.begin_document(doc_id=doc_id, source=name, collection="default", owner=None, sha256="0" * 64,
                           size=len(text), kind="text", pages=[(None, text)], embed_model="test", original=None)
    catalog.add_chunks([(doc_id, Chunk(id=f"{doc_id}-0", seq=0, page=None, start=0, end=len(text), text=text))])
    catalog.finish_document(doc_id)
    return doc_id


def ids(cache: FollowedLexicalIndex) -> set[str]:
    return {hit.chunk_id for hit in cache.index.search("otters kelp urchins storms", 50)}


def changes(catalog: Catalog) -> int:
    return len(catalog.changes_since(0))


def test_the_change_log_is_pruned_once_every_cache_applied_it_and_a_new_cache_still_builds(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    catalog, other = Catalog(url, shared=True), Catalog(url, shared=True)
    a = FollowedLexicalIndex(catalog, tmp_path / "cache-a", 3600)
    b = FollowedLexicalIndex(other, tmp_path / "cache-b", 3600)
    try:
        first = add_doc(catalog, "otters.txt", "Sea otters float in the kelp.")
        second = add_doc(catalog, "urchins.txt", "Urchins eat the kelp when otters are gone.")
        assert changes(catalog) == 4  # begun and finished, twice
        a.follow()
        assert catalog.prune_changes() == 0  # b has applied none of them yet
        b.follow()
        assert catalog.prune_changes() == 3  # both have: all but the newest row go
        assert changes(catalog) == 1 and catalog.last_change() == 4  # the sequence goes on from it
        assert ids(a) == ids(b) == {f"{first}-0", f"{second}-0"}

        catalog.remove(first)
        third = add_doc(other, "storms.txt", "Storms tear the kelp loose.")
        assert a.follow() and b.follow()
        catalog.prune_changes()
        assert ids(a) == ids(b) == {f"{second}-0", f"{third}-0"}

        # a new server builds its cache from the catalog, not from the pruned log
        c = FollowedLexicalIndex(Catalog(url, shared=True), tmp_path / "cache-c", 3600)
        try:
            assert ids(c) == {f"{second}-0", f"{third}-0"}
        finally:
            c.close()

        # a cache that was away while rows it needed were pruned (it no longer counted: gone) rebuilds
        b.close()
        fourth = add_doc(catalog, "more.txt", "More otters and more kelp.")
        catalog.remove(third)
        a.follow()
        time.sleep(1.0)
        catalog.applied_changes(a.reader, a.seq)  # a says it is alive; b and c said nothing for 1 s
        assert catalog.prune_changes(gone_s=0.5) > 0  # b and c count as gone: rows b needed go too
        assert catalog.changes_pruned_through() > b.seq
        b = FollowedLexicalIndex(other, tmp_path / "cache-b", 3600)
        assert ids(b) == ids(a) == {f"{second}-0", f"{fourth}-0"}
    finally:
        a.close()
        b.close()
        catalog.close()
        other.close()
