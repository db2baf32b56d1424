"""The one percentile every figure uses (`ragchat eval`, `ragchat eval --answers`, the bench scripts)."""

from __future__ import annotations

from typing import Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (p from 0 to 100) by linear interpolation between the closest ranks
    (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
