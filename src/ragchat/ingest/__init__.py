"""Ingestion: files in, pages of text out, then chunks, embeddings and index entries."""
