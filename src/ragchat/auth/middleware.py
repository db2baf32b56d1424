"""``SecurityMiddleware``: the one ASGI middleware in front of every route, and ``install_web_security``.

In front of a FastAPI app (and so of the Gradio app mounted on it, and of the HTTP API) it:

- refuses requests whose ``Host`` is not a loopback name while the app is bound to loopback (DNS
  rebinding), and requests whose ``Origin`` is neither the app's own nor listed in
  ``server.allowed_origins`` (CORS; preflights of listed origins are answered), with 403;
- answers ``/login`` and ``/logout`` itself (ragchat.auth.login);
- when login is on, requires a session cookie or an API key on every route that is not public:
  browsers are sent to ``/login``, other clients get 401, websockets are closed;
- puts the user in ``request.state.user`` (and in the scope, for ``WebSecurity.user_of_request``)
  and adds nosniff, frame and referrer headers (and CORS ones for a listed origin) to every answer.

A pure ASGI class, not Starlette's ``BaseHTTPMiddleware``: streamed answers and server-sent events
pass through as they are sent, and websockets are checked too. Starlette's ``TrustedHostMiddleware``
and ``CORSMiddleware`` do not fit: the Host rule is "any loopback name" only while bound to loopback,
and a foreign origin is refused outright (403), not just left without CORS headers.
"""

from __future__ import annotations

import urllib.parse

from argon2 import PasswordHasher
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocketClose

from ragchat.auth.login import NO_STORE, json_answer, login_routes, redirect
from ragchat.auth.web import API_PREFIXES, WebSecurity, bearer_key, is_public, norm_origin
from ragchat.core.settings import Settings
from ragchat.store.catalog import Catalog

_SAFE_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "SAMEORIGIN", "referrer-policy": "same-origin"}


class SecurityMiddleware:
    """Pure ASGI middleware (streams and server-sent events pass through untouched)."""

    def __init__(self, app, security: WebSecurity):
        self.app = app
        self.security = security

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sec = self.security
        conn = HTTPConnection(scope)
        scope["ragchat.security"] = sec
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        websocket = scope["type"] == "websocket"

        refusal, cross = self._origin_check(conn, method)
        if refusal is not None:
            await _deny(scope, receive, send, 403, refusal, websocket)
            return
        if method == "OPTIONS" and cross and conn.headers.get("access-control-request-method"):
            await Response(status_code=204, headers={
                **NO_STORE, "access-control-allow-origin": cross, "access-control-allow-credentials": "true",
                "access-control-allow-methods": "GET, POST, DELETE, HEAD, OPTIONS",
                "access-control-allow-headers": conn.headers.get("access-control-request-headers", "content-type"),
                "access-control-max-age": "600", "vary": "Origin",
            })(scope, receive, send)
            return

        if not websocket and path in ("/login", "/logout"):
            response = await login_routes(sec, scope, receive)
            await response(scope, receive, send)
            return

        user = sec.identify(conn) if sec.login_required else None
        scope["ragchat.user"] = user
        scope.setdefault("state", {})["user"] = user
        if sec.login_required and user is None and not is_public(path):
            if websocket:
                await _deny(scope, receive, send, 401, "login required", True)
            elif method in ("GET", "HEAD") and "text/html" in conn.headers.get("accept", ""):
                target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
                await redirect(scope.get("root_path", "") + "/login?next=" + urllib.parse.quote(target, safe=""))(
                    scope, receive, send)
            else:
                await _login_required(path, conn)(scope, receive, send)
            return
        if websocket:
            await self.app(scope, receive, send)
            return

        extra = dict(_SAFE_HEADERS)
        if cross:
            extra.update({"access-control-allow-origin": cross, "access-control-allow-credentials": "true",
                          "vary": "Origin"})

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", []))
                headers = MutableHeaders(scope=message)
                for key, value in extra.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _origin_check(self, conn: HTTPConnection, method: str) -> tuple[str | None, str | None]:
        """(why the request is refused or None, the listed foreign origin to answer with CORS headers or None)."""
        sec, headers = self.security, conn.headers
        refusal = sec.host_refusal(headers)
        origin = headers.get("origin")
        if refusal is not None:
            return refusal, None
        if origin is not None:
            if sec.origin_allowed(origin, headers, "https" if conn.scope.get("scheme") in ("https", "wss") else "http"):
                return None, origin if norm_origin(origin) in sec.allowed_origins else None
            return (f"cross-origin request from {origin} refused; list it in server.allowed_origins "
                    "if it should reach this app"), None
        if method not in ("GET", "HEAD", "OPTIONS") and headers.get("sec-fetch-site") == "cross-site":
            return "cross-site request refused", None
        return None, None


def _login_required(path: str, conn: HTTPConnection) -> Response:
    """The 401 answer: the API's says how to send a key, in the OpenAI error shape too."""
    if not path.startswith(API_PREFIXES):
        return json_answer(401, {"detail": "login required: sign in at /login"})
    if bearer_key(conn.headers) is not None:
        message = "invalid or revoked API key: make one with `ragchat users key create NAME`, or sign in at /login"
    else:
        message = ("login required: send an API key as 'Authorization: Bearer rck_...' (made with "
                   "`ragchat users key create NAME`), or sign in at /login")
    response = json_answer(401, _api_error(message, "authentication_error", "invalid_api_key"))
    response.headers["www-authenticate"] = 'Bearer realm="ragchat"'
    return response


def _api_error(message: str, kind: str, code: str) -> dict:
    """An API refusal that both clients read: the REST API's ``detail`` and OpenAI's ``error`` object."""
    return {"detail": message, "error": {"message": message, "type": kind, "param": None, "code": code}}


async def _deny(scope, receive, send, status: int, reason: str, websocket: bool) -> None:
    if websocket:
        await receive()  # websocket.connect
        await WebSocketClose(1008, reason[:120])(scope, receive, send)
        return
    api = scope.get("path", "").startswith(API_PREFIXES)
    body = _api_error(reason, "permission_error", "forbidden") if api and status == 403 else {"detail": reason}
    await json_answer(status, body)(scope, receive, send)


def install_web_security(app, settings: Settings, catalog: Catalog, *, login_required: bool | None = None,
                         hasher: PasswordHasher | None = None) -> WebSecurity:
    """Protect every route of ``app`` (a FastAPI/Starlette app, with Gradio mounted on it or not).

    Call it once, before the app starts serving. ``login_required`` None decides from the catalog
    and the bind address (``require_auth_for_bind``, which raises ConfigError when the app must not
    start). Returns the WebSecurity; pass ``security.auth_dependency`` to ``gr.mount_gradio_app``
    when ``security.login_required``."""
    security = WebSecurity(settings, catalog, login_required=login_required, hasher=hasher)
    app.state.ragchat_security = security
    app.add_middleware(SecurityMiddleware, security=security)
    return security
