"""What the REST and the OpenAI-compatible routes share: errors, body limits, scopes and answer runs.

- ``ApiError`` and the exception handlers: every error of an API route is JSON with a message
  for people and the right status. REST routes answer ``{"detail": message}`` (FastAPI's
  shape); ``/v1/`` routes answer OpenAI's ``{"error": {"message", "type", "param", "code"}}``,
  which the ``openai`` client turns into its exceptions.
- ``BodyLimit``: an ASGI middleware that refuses API request bodies past a size (413), before
  they are read in full.
- ``AnswerRun``: ``engine.chat.stream`` driven from async code, one step at a time in a worker
  thread (``core.streams.BackgroundIterator``). It reads ahead to the first token, so a language model that is down or busy becomes a
  503 before any streamed byte is sent, and it closes the engine's stream when the client goes
  away (which frees the LLM slot).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, Sequence

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragchat.core.access import AccessError
from ragchat.answer.events import Answer, ChatEvent, Source
from ragchat.core.errors import BusyError, LLMError, LoadError, RagchatError
from ragchat.core.streams import BackgroundIterator
from ragchat.retrieve.search import Filters

REST_PREFIX = "/api/v1"
OPENAI_PREFIX = "/v1"
JSON_BODY_LIMIT = 4 * 1024 * 1024

# What each error status means, for the schema (docs/API.md, "Errors", says the same for people).
ERROR_MEANINGS = {
    400: "a malformed body, a missing or wrong field (the schema's rules), no file in an upload",
    401: "no API key or session, or an invalid or revoked key (team mode)",
    403: "a foreign Origin or Host, or a private collection of another user",
    404: "no such document, job or model, or not yours to see (the same answer)",
    409: "the original file is not stored: upload it again",
    413: "the request or a file is larger than the limit",
    503: "the language model or the store is unavailable or busy (Retry-After when busy)",
}

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "invalid_request_error",
          413: "invalid_request_error",
          503: "service_unavailable"}


class ApiError(Exception):
    """An API request that cannot be served; ``message`` is for people."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def _a_json_number(cls, value: Any) -> Any:
    """JSON's true/false and strings are not numbers, whatever pydantic's lax mode would make of them."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be a number")
    return value


def numbers_only(*fields: str):
    """A model's validator: these fields take JSON numbers as the schema says (3 and 3.0 for an
    integer), never true or "3"; ``strict`` would refuse 3.0, which JSON Schema calls an integer."""
    return field_validator(*fields, mode="before")(_a_json_number)


class RestError(BaseModel):
    """A REST error: ``detail`` is for people, ``code`` for programs (401 adds OpenAI's ``error``)."""

    detail: str
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """A ``/v1`` error, in OpenAI's shape."""

    error: OpenAIErrorBody


def errors(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route for the error statuses it can answer (401 always: team mode)."""
    model = OpenAIError if openai else RestError
    return {status: {"model": model, "description": ERROR_MEANINGS[status]} for status in sorted({401, *statuses})}


def is_api_path(path: str) -> bool:
    return path.startswith((REST_PREFIX + "/", OPENAI_PREFIX + "/"))


def error_response(path: str, status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    if path.startswith(OPENAI_PREFIX + "/"):
        body: dict[str, Any] = {"error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": None,
                                          "code": code}}
    else:
        body = {"detail": message}
        if code:
            body["code"] = code
    return JSONResponse(body, status_code=status, headers=headers)


def error_for(exc: RagchatError) -> ApiError:
    """The HTTP status of an engine error."""
    if isinstance(exc, AccessError):
        return ApiError(403, str(exc), "forbidden")
    if isinstance(exc, BusyError):
        return ApiError(503, str(exc), "busy", {"Retry-After": "5"})
    if isinstance(exc, LLMError):
        return ApiError(503, str(exc), "llm_unavailable")
    if isinstance(exc, LoadError):
        return ApiError(400, str(exc), exc.reason)
    return ApiError(503, str(exc), "unavailable")


def install_error_handlers(app) -> None:
    """JSON errors for the API's paths; every other path keeps FastAPI's own handling."""
    from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(request.url.path, exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(RagchatError)
    async def _engine_error(request: Request, exc: RagchatError):
        err = error_for(exc)
        return error_response(request.url.path, err.status, err.message, err.code, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        if not is_api_path(request.url.path):
            return await request_validation_exception_handler(request, exc)
        return error_response(request.url.path, 400, "bad request: " + describe_validation(exc.errors()), "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if not is_api_path(request.url.path):
            return await http_exception_handler(request, exc)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such API route: {request.method} {request.url.path} (see /api/docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /api/docs)"
        return error_response(request.url.path, exc.status_code, message, None, getattr(exc, "headers", None))


def describe_validation(errors: Sequence[dict]) -> str:
    parts = []
    for err in list(errors)[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class BodyLimit:
    """Refuse API request bodies past a size with 413: from Content-Length at once, and while
    reading for bodies sent without one."""

    def __init__(self, app, limit_for):
        self.app = app
        self.limit_for = limit_for  # path -> max bytes, or None for paths it does not guard

    async def __call__(self, scope, receive, send) -> None:
        limit = self.limit_for(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, send, limit)
            return
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, too_large_message(limit), "too_large")
            return message

        await self.app(scope, counted, send)


def too_large_message(limit: int) -> str:
    return (f"the request is larger than {limit / 1e6:g} MB: send smaller files, or one file per request "
            "(the limit is ingest.max_file_mb)")


async def _too_large(scope, send, limit: int) -> None:
    response = error_response(scope.get("path", ""), 413, too_large_message(limit), "too_large")
    await response(scope, _no_receive, send)


async def _no_receive():  # pragma: no cover - a JSONResponse does not read the request
    return {"type": "http.disconnect"}


# ---- scopes, sources -------------------------------------------------------------------------------


def scoped_filters(engine, user: str | None, collections: Sequence[str] | None = None,
                   document_ids: Sequence[str] | None = None) -> Filters:
    """What this user asked to search, narrowed to what they may read (ragchat.core.access decides)."""
    chosen = Filters(collections=list(collections) if collections else None,
                     doc_ids=list(document_ids) if document_ids else None)
    return engine.filters_for(user, chosen)


def source_json(source: Source) -> dict:
    """A source as the API shows it: ``id`` is the n of the [n] marker, ``source`` the file name,
    ``text`` the passage, ``start``/``end`` its character offsets in the page's text."""
    return source.as_dict()


def answer_json(answer: Answer) -> dict:
    return {
        "answer": answer.text, "sources": [source_json(s) for s in answer.sources],
        "retrieved": [source_json(s) for s in answer.retrieved], "provider": answer.provider, "model": answer.model,
        "question": answer.question, "partial": answer.partial, "error": answer.error, "notice": answer.notice,
        "unsupported": answer.unsupported,
    }


# ---- answers -----------------------------------------------------------------------------------------

_END = object()


class AnswerRun:
    """One answer from ``engine.chat.stream``, for async routes. Use ``await AnswerRun.start(...)``.

    The engine's stream runs in a worker thread (``BackgroundIterator``) that takes one step each
    time a route asks for the next event, so a client that reads slowly holds the answer back."""

    def __init__(self, events: Iterator[ChatEvent]):
        self._events = BackgroundIterator(events, pull=True, name="ragchat-api-answer")
        self._ahead: list[ChatEvent] = []

    @classmethod
    async def start(cls, events: Iterator[ChatEvent]) -> "AnswerRun":
        """Run up to the first token (or the end). A model that cannot answer at all raises
        ApiError 503 here, while a status code can still be sent."""
        run = cls(events)
        try:
            while True:
                event = await run._next()
                if event is None:
                    break
                run._ahead.append(event)
                if event.kind in ("token", "done"):
                    break
        except BaseException:
            await run.aclose()
            raise
        done = next((e for e in run._ahead if e.kind == "done"), None)
        if done is not None and done.answer is not None and done.answer.error and not done.answer.partial:
            await run.aclose()
            busy = done.answer.busy
            raise ApiError(503, done.answer.error, "busy" if busy else "llm_unavailable",
                           {"Retry-After": "5"} if busy else None)
        return run

    async def _next(self) -> ChatEvent | None:
        event = await run_in_threadpool(next, self._events, _END)
        return None if event is _END else event

    async def events(self) -> AsyncIterator[ChatEvent]:
        """Every event: those read ahead, then the rest as they come. Closes the engine's stream
        at the end, or when the reader stops early (a client that went away)."""
        try:
            while self._ahead:
                yield self._ahead.pop(0)
            while True:
                event = await self._next()
                if event is None:
                    return
                yield event
        finally:
            await self.aclose()

    async def final(self) -> Answer:
        answer = Answer()
        async for event in self.events():
            if event.kind == "done" and event.answer is not None:
                answer = event.answer
        return answer

    async def aclose(self) -> None:
        """Stop the engine's stream: the worker closes it after its current step (which frees the LLM slot)."""
        self._events.close()
