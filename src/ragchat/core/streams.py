"""One bridge from a blocking iterator to a reader that must not block: ``BackgroundIterator``.

Three readers use it: ``llm.streaming.stream_text`` (a model's stream, with a bound on the wait
for each piece), the web page's answer (``ui.chat``: short steps, so that "stop" acts soon) and the
HTTP API's answers (``api.common.AnswerRun``: async routes, one step at a time).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")

_END = object()


class BackgroundIterator(Generic[T]):
    """Iterates ``source`` in a worker thread, from creation on, and hands each item over a queue.

    - ``tick``: seconds a read waits; when nothing came by then it returns None (the source goes
      on). None: a read waits as long as the source takes.
    - ``pull``: the worker takes the next item only when the reader asks for one, so a slow reader
      holds the source back; without it the worker reads ahead freely.
    - An exception of the source is raised to the reader at its place in the stream.
    - ``close()`` asks the worker to stop after the item it is reading; the worker then closes the
      source (a generator's ``finally`` runs there) and ends.

    The worker runs in a copy of the creator's context variables (LangChain's callbacks, tracing).
    """

    def __init__(self, source: Iterator[T], *, tick: float | None = None, pull: bool = False,
                 name: str = "ragchat-stream"):
        self._source = source
        self._tick = tick
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._demand = threading.Semaphore(0) if pull else None
        self._asked = False  # pull: the reader asked for an item it has not received yet
        self._ended = False
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run,), name=name, daemon=True).start()

    def _wanted(self) -> bool:
        if self._demand is not None:
            self._demand.acquire()
        return not self._stop.is_set()

    def _run(self) -> None:
        try:
            while self._wanted():
                try:
                    item = next(self._source)
                except StopIteration:
                    break
                self._queue.put(item)
        except BaseException as exc:  # handed to the reader
            self._queue.put(exc)
        finally:
            try:
                close = getattr(self._source, "close", None)
                if close is not None:
                    close()
            finally:
                self._queue.put(_END)

    def __iter__(self) -> "BackgroundIterator[T]":
        return self

    def __next__(self) -> T | None:
        if self._ended:
            raise StopIteration
        if self._demand is not None and not self._asked:
            self._asked = True
            self._demand.release()
        try:
            item = self._queue.get(timeout=self._tick)
        except queue.Empty:
            return None
        self._asked = False
        if item is _END:
            self._ended = True
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        if self._demand is not None:
            self._demand.release()  # a worker waiting to be asked wakes, and stops
