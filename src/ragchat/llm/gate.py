"""Admission: how many generations run and wait at once (``LLMGate``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ragchat.core.errors import BusyError


class LLMGate:
    """At most ``max_concurrent`` generations at once and ``max_queue`` waiting; the rest are refused.

    A small machine answers one question at a time well and ten at once badly, and a person would
    rather hear "busy" now than wait minutes in an invisible queue.
    """

    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._active = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            if self._active >= self.max_concurrent:
                if self._waiting >= self.max_queue:
                    raise BusyError(f"ragchat is busy answering other questions ({self._waiting} waiting); try again in a moment")
                self._waiting += 1
                try:
                    while self._active >= self.max_concurrent:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify()
