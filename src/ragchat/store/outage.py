"""Riding out a server that is away (the catalog's database, Chroma): retry until it is back, say so once.

The background loops of shared mode (the job queue's worker, the BM25 cache's follower) and the
folder watcher call their step through ``RetryQuietly``, built on tenacity: a failing step is tried
again every ``wait_s`` until it succeeds or the loop is stopped, and of one outage only the first
failure and the recovery are logged.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, wait_fixed

T = TypeVar("T")


class RetryQuietly:
    """away(error): says that the step failed, once per outage; back(): says that it works again."""

    def __init__(self, stop: threading.Event, wait_s: float, away: Callable[[BaseException], None],
                 back: Callable[[], None] | None = None):
        self.stop, self.away, self.back = stop, away, back
        self._retrying = Retrying(wait=wait_fixed(wait_s), sleep=stop.wait, stop=lambda _: stop.is_set(),
                                  before_sleep=self._failed, retry_error_callback=lambda _: None)

    def __call__(self, step: Callable[..., T], *args) -> T | None:
        """step(*args) once it succeeds; None when stopped while it was failing."""
        result = self._retrying(step, *args)
        if self.back and self._retrying.statistics.get("attempt_number", 1) > 1 and not self.stop.is_set():
            self.back()
        return result

    def _failed(self, state: RetryCallState) -> None:
        if state.attempt_number == 1:
            self.away(state.outcome.exception())
