"""Text to vectors, for ingestion and for queries.

- ``embedder``     the providers behind LangChain's Embeddings interface (bundled EmbeddingGemma,
                   sentence-transformers models such as MiniLM, Ollama's /api/embed) and their tokenizers
- ``gemma``        EmbeddingGemma-300M: joining its slices, exporting and checking its int8 ONNX graph
- ``onnx_export``  the ONNX Runtime backend for local sentence-transformers models

Left out: where vectors are kept (``ragchat.store.vectors``) and how they are searched
(``ragchat.retrieve``). To add an embedding provider, add a class in ``embedder`` and a branch in
``build_embedder``.
"""
