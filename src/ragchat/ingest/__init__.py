"""Ingestion: files in, pages of text out, then chunks, embeddings and index entries.

Reading a file (file -> pages of text):
- ``loaders``     ``load``: the dispatcher, from a file's kind to the reader of that kind
- ``detect``      a file's kind from its first bytes, and the ZIP bomb check
- ``decode``      bytes of unknown encoding -> text, and the cleaning every reader applies
- ``document``    ``LoadedDocument`` and ``Page``, what every reader returns
- ``formats``     one reader per file format (PDF, ruled PDF tables, Office, EPUB, e-mail, HTML, CSV,
                  images) and ``markdown_table``, how they all write tables
- ``ocr``         Tesseract: a picture of a page -> text with a box for every word
- ``rendering``   PDF pages and images -> pictures, for OCR and for the page viewer; PDFium's characters
- ``boxes``       a chunk's span on its page -> rectangles on the page's picture
- ``isolation``   ``IsolatedLoader``: reading, rendering and ``page_chars`` in a child process with
                  time and memory limits, which is how the app reads every file

From pages to the indexes, and when that runs:
- ``chunking``    page text -> overlapping chunks with stable ids and exact offsets
- ``pipeline``    files -> catalog, vector index and lexical index, idempotent and crash-safe
- ``jobs``        ``IngestJobs``: uploads, removals and re-indexing off the request path
- ``queue``       shared mode's job queue in the catalog, run by any server or worker
- ``watch``       a watched folder kept in step with one collection

Left out: where chunks, vectors and pages are kept (``ragchat.store``), how vectors are made
(``ragchat.embed``), and searching them (``ragchat.retrieve``); the page viewer's web route
(``ragchat.ui.pageview``).
"""
