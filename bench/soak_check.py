"""The end of bench/soak.py: let the queue drain, check the ledger through every server, then, with
the ragchat processes stopped, compare the chunk ids of the catalog, of Chroma and of each BM25 index.

- drain: no job queued or running in the catalog and no document ``indexing``, twice in a row, then
  a few follow intervals so that every BM25 cache has applied the last changes;
- ledger, on every server, lexical and dense: each document told "done" (and not deleted or replaced
  since) is found by a search for its token restricted to its id; each deleted document, and each
  replaced version, is not;
- stores, read from their files or servers once the processes are stopped: the catalog's chunks
  (``Catalog.all_chunk_ids``), Chroma's ids (``VectorIndex.chunk_ids``: ``collection.get`` without
  payloads) and each Tantivy index (``LexicalIndex.chunk_ids``): a shared-mode process's cache is
  its slot folder under its ``shared.lexical_cache``; the embedded server's index is the store's.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from ragchat.store.catalog import Catalog
from ragchat.store.lexical import LexicalIndex
from ragchat.store.vectors import VectorIndex


def drain(catalog: Catalog, follow_s: float, timeout: float = 600) -> float:
    """Seconds it took until nothing was pending (raises TimeoutError past timeout)."""
    t0 = time.monotonic()
    calm = 0
    while calm < 2:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"the queue did not drain in {timeout:.0f} s")
        try:
            busy = catalog.pending_jobs() or sum(d.status == "indexing" for d in catalog.documents())
        except Exception:  # the catalog's server is still coming back
            busy = 1
        calm = 0 if busy else calm + 1
        time.sleep(2.0)
    time.sleep(max(5.0, 4 * follow_s))
    return time.monotonic() - t0


def check_ledger(urls: list[str], present: dict, absent: list) -> dict:
    """Searches for every ledger entry on every server; returns counts and the first failures."""
    lost, found_deleted, errors = [], [], []
    with httpx.Client(timeout=120) as c:
        def hits(url: str, query: str, doc_id: str, mode: str) -> int | None:
            r = c.post(url + "/api/v1/search", json={"query": query, "mode": mode, "top_k": 5, "document_ids": [doc_id]})
            if r.status_code != 200:
                errors.append(f"{url} {mode} {r.status_code} {r.text[:100]}")
                return None
            return len(r.json()["results"])

        for url in urls:
            for doc_id, (query, name) in present.items():
                for mode in ("lexical", "dense"):
                    if hits(url, query, doc_id, mode) == 0:
                        lost.append(f"{url} {mode}: {name} ({doc_id}) told done, not found for {query!r}")
            for doc_id, query, why in absent:
                for mode in ("lexical", "dense"):
                    n = hits(url, query, doc_id, mode)
                    if n and (why == "deleted" or mode == "lexical"):  # dense finds a replaced document's new text too
                        found_deleted.append(f"{url} {mode}: {doc_id} {why}, still found for {query!r}")
    return {"present_checked": len(present), "absent_checked": len(absent), "lost": lost,
            "found_after_delete_or_replace": found_deleted, "search_errors": errors}


def cache_indexes(cache_dir: Path) -> list[Path]:
    """The Tantivy folders of a shared-mode process's BM25 cache (one slot per running process)."""
    return sorted(p for p in cache_dir.glob("*/slot*/index") if p.is_dir())


def chunk_sets(catalog_url: str, chroma: dict, lexical: dict[str, Path]) -> dict:
    """chroma: {"path": Path} (embedded) or {"url", "database"}; lexical: name -> Tantivy folder.
    Returns the three sets' sizes and, per BM25 index, the ids it lacks and the ids it has too many."""
    catalog = Catalog(catalog_url)
    try:
        in_catalog = catalog.all_chunk_ids()
        done = {row[0] for rows in catalog.iter_done_chunks() for row in rows}
        documents = catalog.documents()
    finally:
        catalog.close()
    vectors = VectorIndex(chroma.get("path"), None, url=chroma.get("url", ""), database=chroma.get("database", "default_database"))
    in_chroma = vectors.chunk_ids()
    out = {"catalog_chunks": len(in_catalog), "catalog_done_chunks": len(done), "chroma_chunks": len(in_chroma),
           "documents": len(documents), "failed_documents": sum(d.status == "failed" for d in documents),
           "catalog_not_in_chroma": sorted(in_catalog - in_chroma)[:20], "chroma_not_in_catalog": sorted(in_chroma - in_catalog)[:20],
           "not_done_chunks_in_catalog": len(in_catalog - done), "bm25": {}}
    diffs = len(in_catalog ^ in_chroma) + len(in_catalog - done)
    for name, folder in lexical.items():
        index = LexicalIndex(folder)
        try:
            ids = index.chunk_ids()
        finally:
            index.close()
        missing, extra = done - ids, ids - done
        out["bm25"][name] = {"chunks": len(ids), "missing": sorted(missing)[:20], "extra": sorted(extra)[:20],
                             "missing_n": len(missing), "extra_n": len(extra)}
        diffs += len(missing) + len(extra)
    out["inconsistencies"] = diffs
    return out
