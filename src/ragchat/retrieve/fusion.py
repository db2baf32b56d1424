"""Fusing the dense and the lexical ranking into one score per chunk.

``rrf``: weighted reciprocal rank fusion, ``w / (rrf_k + rank)``. ``convex``: each ranking's scores
min-max normalised within the ranking, then weighted and summed. Both take any ranking of objects
with ``chunk_id`` and ``score``.
"""

from __future__ import annotations

from typing import Sequence


def fuse(dense: Sequence, lexical: Sequence, method: str, rrf_k: int, weights: dict[str, float]) -> dict[str, float]:
    """chunk id -> fused score. A ranking with zero weight still breaks ties and fills in when the
    other finds too little."""
    fused: dict[str, float] = {}
    for name, ranking in (("dense", dense), ("lexical", lexical)):
        w = weights[name]
        if not ranking:
            continue
        if method == "rrf":
            scores = [w / (rrf_k + rank + 1) for rank in range(len(ranking))]
        else:  # convex
            hi, lo = ranking[0].score, ranking[-1].score
            scores = [w * ((h.score - lo) / (hi - lo) if hi > lo else 1.0) for h in ranking]
        for h, sc in zip(ranking, scores):
            fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + sc
    for rank, h in enumerate(dense if weights["dense"] == 0 else []):
        fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + 1e-9 / (rank + 1)
    return fused
