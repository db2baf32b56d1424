"""An OpenAI-compatible API under ``/v1``, so that tools which speak OpenAI's chat API can ask ragchat.

- ``GET /v1/models``: ``ragchat`` (every collection the user may read) and ``ragchat/COLLECTION``
  for each of those collections; ``GET /v1/models/{model}`` one of them.
- ``POST /v1/chat/completions``, with ``"stream": true`` (server-sent events of
  ``chat.completion.chunk`` objects, then ``data: [DONE]``) or without (one ``chat.completion``).
  The last message must be the user's question; the earlier user and assistant messages are the
  history. System and developer messages are ignored: ragchat's own system prompt is what tells
  the model to answer from the sources and cite them. ``temperature`` is honoured; ``n`` must be
  1; ``max_tokens``, tools and the other sampling fields are ignored (``llm.max_answer_tokens``
  bounds answers).

Citations stay in the text as ``[n]`` markers. The sources they point to come in an extra field,
``sources`` (a list of {id, source, page, text, score, doc_id, chunk_id, collection, start, end};
``id`` is the n of ``[n]``): on the completion, or on the last chunk of a stream, which also
carries ``answer``, the final text as ragchat stores it (it may have markers the model left out,
added by ragchat's attribution). The official ``openai`` client reads both as extra attributes
(``completion.sources``).

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad
request, 401 without a valid key, 404 for a model (collection) the user cannot read, 503 when the
language model is down or busy. An answer that fails half-way through a stream ends with an
``{"error": ...}`` event, which the ``openai`` client raises as an APIError.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragchat.api.common import OPENAI_PREFIX, AnswerRun, ApiError, errors, numbers_only, scoped_filters, source_json
from ragchat.auth import current_user
from ragchat.answer.engine import ChatOptions
from ragchat.answer.sanitize import MarkdownStream

MODEL = "ragchat"


class ChatCompletionRequest(BaseModel):
    """The fields ragchat reads; any other field of OpenAI's request is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description='"ragchat" (every collection you may read) or "ragchat/COLLECTION".')
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    stream: bool = Field(False, strict=True)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    n: int | None = Field(None, ge=1, le=1)
    _numbers = numbers_only("temperature", "n")


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: a string, or the text parts of a list of content parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in ("image_url", "input_audio", "file"):
                raise ApiError(400, f"message content of type {part['type']!r} is not supported: send text", "unsupported_content")
        return "\n".join(parts)
    raise ApiError(400, "a message's content must be a string or a list of text parts", "invalid_content")


def split_messages(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str]]]:
    """(question, history): the last message is the question; earlier user/assistant turns the history."""
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "every message needs a role and content", "invalid_messages")
    last = messages[-1]
    if last["role"] != "user":
        raise ApiError(400, f"the last message must be the user's question (it is a {last['role']!r} message)",
                       "invalid_messages")
    question = message_text(last).strip()
    if not question:
        raise ApiError(400, "the last user message is empty: ask a question", "invalid_messages")
    history = [(m["role"], message_text(m)) for m in messages[:-1] if m["role"] in ("user", "assistant")]
    return question, history


def openai_router(engine) -> APIRouter:
    router = APIRouter(prefix=OPENAI_PREFIX, tags=["openai"])

    def models_for(user: str | None) -> list[str]:
        return [MODEL] + [f"{MODEL}/{c}" for c in engine.allowed_collections(user)]

    def collection_of(model: str, user: str | None) -> list[str] | None:
        """None for every readable collection; 404 (OpenAI's model_not_found) for a collection this
        user cannot read, whether it exists or not."""
        if model == MODEL:
            return None
        name = model.removeprefix(MODEL + "/") if model.startswith(MODEL + "/") else None
        if not name or name not in engine.allowed_collections(user):
            raise ApiError(404, f"the model {model!r} does not exist: use {MODEL!r} or {MODEL + '/COLLECTION'!r} with a "
                                f"collection you may read (GET {OPENAI_PREFIX}/models)", "model_not_found")
        return [name]

    def model_json(name: str, created: int) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "ragchat"}

    @router.get("/models", summary="The models: ragchat, and ragchat/COLLECTION per readable collection",
                responses=errors(openai=True))
    def models(user: str | None = Depends(current_user)):
        created = int(time.time())
        return {"object": "list", "data": [model_json(m, created) for m in models_for(user)]}

    @router.get("/models/{model:path}", summary="One model", responses=errors(404, openai=True))
    def model(model: str, user: str | None = Depends(current_user)):
        collection_of(model, user)
        return model_json(model, int(time.time()))

    @router.post("/chat/completions", summary="Chat completions over your documents (OpenAI-compatible)",
                 responses=errors(400, 403, 404, 413, 503, openai=True))
    async def chat_completions(body: ChatCompletionRequest, request: Request, user: str | None = Depends(current_user)):
        collections = collection_of(body.model, user)
        question, history = split_messages(body.messages)
        filters = scoped_filters(engine, user, collections)
        options = ChatOptions(temperature=body.temperature)
        run = await AnswerRun.start(engine.chat.stream(question, history, filters, options))
        cid, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        if body.stream:
            return StreamingResponse(_sse(run, cid, created, body.model), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        answer = await run.final()
        if answer.error and answer.partial:
            raise ApiError(503, answer.error, "llm_failed")
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop",
                         "logprobs": None}],
            "sources": [source_json(s) for s in answer.sources],
        }

    return router


async def _sse(run: AnswerRun, cid: str, created: int, model: str):
    def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

    safe = MarkdownStream()
    streamed = False
    yield chunk({"role": "assistant", "content": ""})
    async for event in run.events():
        if event.kind == "status":
            yield f": {event.text}\n\n".encode()  # an SSE comment: clients skip it, proxies see life
        elif event.kind == "token":
            streamed = True
            text = safe.feed(event.text)
            if text:
                yield chunk({"content": text})
        elif event.kind == "done" and event.answer is not None:
            answer = event.answer
            rest = safe.flush() if streamed else answer.text  # ragchat's own replies come whole
            if rest:
                yield chunk({"content": rest})
            if answer.error:
                error = {"message": answer.error, "type": "service_unavailable", "param": None, "code": "llm_failed"}
                yield b"data: " + json.dumps({"error": error}, ensure_ascii=False).encode() + b"\n\n"
            else:
                yield chunk({}, "stop", sources=[source_json(s) for s in answer.sources], answer=answer.text)
    yield b"data: [DONE]\n\n"
