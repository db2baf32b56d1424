"""Several OpenAI-compatible servers that serve the same model, as one chat model
(``FailoverChatModel``): each request starts at the next server in turn, and a server that cannot be
reached hands the request on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from langchain_core.outputs import ChatGenerationChunk

from ragchat.core.errors import LLMError
from ragchat.llm.chat_model import StreamingChatModel

_TURN_LOCK = threading.Lock()


def _unreachable(exc: BaseException) -> bool:
    """The server could not be reached, or failed without answering: another one may do better."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out (a subclass)
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 429))


class ServerError(Exception):
    """An error from one of several servers, with that server's URL for the message."""

    def __init__(self, url: str, exc: BaseException):
        super().__init__(str(exc))
        self.url, self.exc = url, exc


class FailoverChatModel(StreamingChatModel):
    """Several OpenAI-compatible servers that serve the same model, as one chat model.

    Each request starts at the next server in turn, which spreads the load. A server that cannot be
    reached, or fails before the first piece of text, hands the request to the next one. Once text
    has come, an error is the answer's error: the question is never answered twice. When every
    server fails, the error names each one and what went wrong there.
    """

    models: list[Any]  # one ChatOpenAI per server
    urls: list[str]
    turn: list[int] = [0]  # shared counter, so copies of the model keep taking turns

    @property
    def _llm_type(self) -> str:
        return "openai-failover"

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        with _TURN_LOCK:
            start, self.turn[0] = self.turn[0], self.turn[0] + 1
        failures: list[str] = []
        for i in range(len(self.models)):
            n = (start + i) % len(self.models)
            started = False
            try:
                for chunk in self.models[n].stream(messages, stop=stop, **kwargs):
                    started = True
                    yield self._relay(chunk, run_manager)
                return
            except Exception as exc:
                if started or not _unreachable(exc):
                    raise ServerError(self.urls[n], exc) from exc
                failures.append(f"{self.urls[n]} ({short_error(exc)})")
        raise LLMError("no LLM server answered: " + "; ".join(failures) + ". Check that they run, or fix llm.base_url")


def short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
