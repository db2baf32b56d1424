"""Storage: the catalog (SQL, the source of truth) and the two indexes rebuilt from it (vectors, BM25).

This package owns what is kept on disk or on the shared servers, and how it is read back:

- ``catalog``: ``Catalog``, the one object callers hold: opens the database (SQLite in the store,
  or PostgreSQL) and keeps the store facts (``store_meta``); its methods come from the modules below.
- ``tables``: the SQLAlchemy tables, one class per table (names and columns are the stored format).
- ``records``: the plain records the catalog takes and gives (``Chunk``, ``DocInfo``).
- ``documents``: documents and their life cycle, pages, word boxes and chunks.
- ``jobs``: the change log and the ingestion queue of shared mode.
- ``logins``: the login throttle's counts, shared by every server of a catalog.
- ``conversations``: chats and their messages.
- ``feedback``: thumbs up or down on answers, and votes between two set-ups side by side.
- ``watched``: what folder watchers last read of each file (stamp and hash), so restarts skip unchanged files.
- ``vectors``: ``VectorIndex``, the chunk vectors in Chroma (embedded, or a Chroma server).
- ``lexical``: ``LexicalIndex``, BM25 over the chunks with Tantivy.
- ``lexical_follow``: shared mode's BM25 cache that follows the catalog's change log.
- ``outage``: ``RetryQuietly``, retrying a background step while a server is away.

Left out: making chunks or vectors (ragchat.ingest, ragchat.embed), searching across both indexes
(ragchat.retrieve), and who may read what (ragchat.core.access; the users and API keys tables are
queried by ragchat.auth). Nothing here imports a later stage.
"""
