"""Streaming an answer's text (``stream_text``), and what each provider's failure means for a person.

The model runs in a worker thread (``core.streams.BackgroundIterator``), so the wait for the next
piece is bounded whatever the provider does; every failure becomes an ``LLMError`` that says what
happened and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from langchain_core.messages import BaseMessage

from ragchat.core.errors import LLMError
from ragchat.core.streams import BackgroundIterator
from ragchat.llm.chat_model import ResolvedLLM
from ragchat.llm.failover import ServerError
from ragchat.llm.providers import no_model, not_running


def stream_text(llm: ResolvedLLM, messages: list[BaseMessage], timeout_s: float) -> Iterator[str]:
    """Yield the answer's text as it is generated.

    Raises ``LLMError`` for every provider failure, including no new text within ``timeout_s``
    and a stream that ends without the provider saying it is done. The model runs in a worker
    thread so that the wait is bounded whatever the provider does; closing this generator early
    asks the worker to stop at the next piece.
    """
    pieces = BackgroundIterator(_pieces(llm, messages), tick=timeout_s, name="ragchat-llm")
    try:
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                return
            except Exception as exc:
                raise _explain(exc, llm) from exc
            if piece is None:
                raise LLMError(
                    f"{_describe(llm)} sent nothing for {timeout_s:g} s: it may be busy or overloaded; "
                    "try again, or raise llm.timeout_s"
                )
            yield piece
    finally:
        pieces.close()


def _pieces(llm: ResolvedLLM, messages: list[BaseMessage]) -> Iterator[str]:
    """The model's text pieces; an ``LLMError`` when its stream ends without saying it is done."""
    finished = False
    stream = llm.model.stream(messages)
    try:
        for chunk in stream:
            meta = chunk.response_metadata
            finished = finished or bool(meta.get("done") or meta.get("finish_reason") or meta.get("done_reason"))
            if chunk.text:
                yield str(chunk.text)
    finally:
        stream.close()
    if not finished:
        raise LLMError(f"{_describe(llm)} stopped in the middle of the answer: check that it is still running, then try again")
def _explain(exc: BaseException, llm: ResolvedLLM) -> LLMError:
    """Turn a provider's exception into a message that says what happened and what to do."""
    if isinstance(exc, LLMError):
        return exc
    if llm.provider in ("llamacpp", "openai"):
        return _explain_openai(exc, llm)

    import httpx
    import ollama
    import pydantic

    url, name = llm.base_url, llm.model_name
    if isinstance(exc, ollama.ResponseError):
        if exc.status_code == 404 and "not found" in str(exc.error).lower():
            return LLMError(no_model(name))
        return LLMError(f"Ollama at {url} answered with an error: {exc.error} (HTTP {exc.status_code})")
    if isinstance(exc, httpx.TimeoutException):
        return LLMError(
            f"Ollama at {url} did not answer in time: it may be loading '{name}' or overloaded; "
            "try again, or raise llm.timeout_s"
        )
    if isinstance(exc, (httpx.ConnectError, ConnectionRefusedError)) or type(exc) is ConnectionError:
        return LLMError(not_running(url) + ', or set llm.provider = "llamacpp"')
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError, ConnectionError)):
        return LLMError(f"Ollama at {url} stopped in the middle of the answer: check that it is still running, then try again")
    if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError, KeyError, TypeError, ValueError)):
        return LLMError(
            f"Ollama at {url} sent a response ragchat cannot read ({type(exc).__name__}): check that llm.ollama_url "
            "points at Ollama itself and not at a proxy or another service"
        )
    return LLMError(f"Ollama at {url} failed: {type(exc).__name__}: {exc}")


def _explain_openai(exc: BaseException, llm: ResolvedLLM) -> LLMError:
    import openai

    url = llm.base_url
    if isinstance(exc, ServerError):
        exc, url = exc.exc, exc.url
    who = f"the LLM server at {url}" if llm.provider == "openai" else f"the built-in model {llm.model_name}"
    text = str(getattr(exc, "message", "") or exc)
    if isinstance(exc, openai.BadRequestError) and "context" in text:
        fix = "raise llm.context_tokens" if llm.provider == "llamacpp" else "use a model with a longer context"
        return LLMError(f"the question and its sources do not fit in the model's context ({text}): "
                        f"ask a shorter question, lower retrieval.top_k, or {fix}")
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(f"{who} did not answer in time: it may be busy or overloaded; try again, or raise llm.timeout_s")
    if isinstance(exc, openai.APIConnectionError):
        if llm.provider == "llamacpp":
            return LLMError(f"{who} stopped: {text}")
        return LLMError(f"the LLM server at {url} is not reachable ({text}): check that it is running, or fix llm.base_url")
    if isinstance(exc, openai.AuthenticationError):
        return LLMError(f"{who} refused the API key (HTTP 401): set llm.api_key")
    if isinstance(exc, openai.NotFoundError):
        return LLMError(f"{who} has no model '{llm.model_name}' (HTTP 404): {text}; check llm.model")
    if isinstance(exc, openai.APIStatusError):
        return LLMError(f"{who} answered with an error: {text} (HTTP {exc.status_code})")
    return LLMError(f"{who} failed: {type(exc).__name__}: {exc}")


def _describe(llm: ResolvedLLM) -> str:
    if llm.provider == "ollama":
        return f"Ollama at {llm.base_url}"
    if llm.provider == "openai":
        return f"the LLM server at {llm.base_url}"
    return f"the built-in model {llm.model_name}"
