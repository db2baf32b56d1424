"""ragchat's own HTTP API (stage 6), served by ``ragchat serve`` next to the web page (docs/API.md).

- ``rest``: ``/api/v1/...``: documents (upload, list, delete, re-index, ingestion progress),
  search and ask. FastAPI describes it at ``/api/docs`` (``/api/openapi.json``).
- ``openai_compat``: ``/v1/models`` and ``/v1/chat/completions``, for tools that speak OpenAI's
  chat API; the ``openai`` Python client works against it unchanged.
- ``common``: errors, body limits and the answer runs they share.

Left out: login, which ``ragchat.auth``'s middleware does in front of these routes as in front of
the page (a session cookie or ``Authorization: Bearer <API key>`` in team mode; open on loopback
without users); each route asks for the user with ``auth.current_user``, which fails closed. What a
user may read is decided by ragchat.core.access, as for the page. Ingestion runs in the jobs the
engine shares with the page (``Engine.start_jobs``).

A new API route: add it to the route builder of its theme in ``rest.py`` (or a new builder listed
in ``rest_router``), with a pydantic model for its body; raise ``ApiError`` for errors people
should read. An OpenAI-shaped route goes in ``openai_compat.py``.
"""

from __future__ import annotations

from fastapi import Request
from starlette.routing import Match

from ragchat.api.common import JSON_BODY_LIMIT, OPENAI_PREFIX, REST_PREFIX, ApiError, BodyLimit, install_error_handlers
from ragchat.api.openai_compat import openai_router
from ragchat.api.rest import rest_router
from ragchat.api.schema import install_schema

# Every method the catch-all answers: 405 on a known path, 404 elsewhere (never the page's 404).
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY"]


def install_api(app, engine, jobs) -> None:
    """Add the REST and OpenAI-compatible routes to ``app`` (a FastAPI app), before
    ``auth.install_web_security`` puts the login middleware in front of it."""
    upload_limit = engine.settings.ingest.max_file_mb * 1_000_000 + 1_000_000  # one file at the limit, and the form

    def limit_for(path: str) -> int | None:
        if path == REST_PREFIX + "/documents":
            return upload_limit
        if path.startswith((REST_PREFIX + "/", OPENAI_PREFIX + "/")):
            return JSON_BODY_LIMIT
        return None

    install_error_handlers(app)
    routers = [rest_router(engine, jobs), openai_router(engine)]
    for router in routers:
        app.include_router(router)
    api_routes = [r for router in routers for r in router.routes]  # their paths carry the prefix

    # Any other path under the API's prefixes is the API's 404 (in its own error shape), not the
    # page's: a client with a wrong base URL learns what is wrong. A known path asked with another
    # method is a 405 that names the methods it allows.
    @app.api_route(REST_PREFIX + "/{path:path}", methods=_METHODS, include_in_schema=False)
    @app.api_route(OPENAI_PREFIX + "/{path:path}", methods=_METHODS, include_in_schema=False)
    def unknown(request: Request):
        allowed = sorted({m for r in api_routes if r.matches(request.scope)[0] == Match.PARTIAL for m in r.methods})
        if allowed:
            raise ApiError(405, f"{request.method} is not allowed on {request.url.path}: use {', '.join(allowed)} "
                                "(see /api/docs)", "method_not_allowed", {"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no such API route: {request.method} {request.url.path} (see /api/docs and docs/API.md)",
                       "unknown_route")

    app.add_middleware(BodyLimit, limit_for=limit_for)
    install_schema(app, lambda: bool(getattr(getattr(app.state, "ragchat_security", None), "login_required", False)))
