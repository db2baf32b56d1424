"""A question to ranked passages.

- ``search``  ``Retriever``: the dense (Chroma) and lexical (BM25) rankings under the same filters,
              fused, with the relevance bar chat uses; ``Hit`` and ``Filters``
- ``fusion``  the fusion rules (weighted reciprocal rank, or convex over min-max scores)
- ``scope``   the collections a user may read, as ``Filters``

Left out: building the indexes (``ragchat.ingest``, ``ragchat.store``) and deciding whether the
passages answer the question (``ragchat.answer``). A reranking stage would go here, between search
and fusion's output.
"""
