"""The web side of team mode: when login is required, and one ASGI middleware in front of every route.

- **require_auth_for_bind** is the start-up rule: bound to anything but loopback, the app refuses to
  start unless users exist (login on) or ``server.insecure_no_auth`` is set.
- **install_web_security(app, settings, catalog)** puts ``SecurityMiddleware`` in front of a FastAPI
  app (and so in front of the Gradio app mounted on it, and of the HTTP API). It:

  * refuses requests whose ``Host`` is not a loopback name while the app is bound to loopback
    (DNS rebinding), and requests whose ``Origin`` is neither the app's own nor listed in
    ``server.allowed_origins`` (CORS; preflights of listed origins are answered);
  * when login is on, requires a signed session cookie (ragchat.auth.sessions) or an API key
    (``Authorization: Bearer rck_...``, ragchat.auth.keys) on every route except ``/login``,
    ``/logout``, the health check and static assets (``PUBLIC_PATHS``/``PUBLIC_PREFIXES``):
    browsers are sent to ``/login``, other clients get 401. ``/login`` accepts a form post (what
    browsers and ``gradio_client.Client(url, auth=(name, password))`` send) and sets the cookie;
  * puts the user in ``request.state.user`` and gives Gradio the same answer through
    ``WebSecurity.auth_dependency`` (sync) or ``auth_dependency_async``, so that Gradio's
    ``request.username`` is the signed-in user. Routes of our own ask for it with the
    ``current_user`` / ``current_user_async`` dependencies, which fail closed.

Left out: TLS (put a reverse proxy in front for HTTPS; cookies are marked Secure when the request
arrived over https), single sign-on.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import secrets
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Mapping

from argon2 import PasswordHasher
from starlette.datastructures import Headers
from starlette.requests import Request

from ragchat.auth.keys import user_for_key
from ragchat.auth.sessions import SESSION_COOKIE, SESSION_TTL_S, LoginThrottle, issue_token, password_fingerprint, read_token
from ragchat.auth.users import authenticate, password_hash_of, user_count
from ragchat.core.errors import ConfigError
from ragchat.store.catalog import Catalog

if TYPE_CHECKING:  # pragma: no cover
    from ragchat.core.settings import Settings

LOGIN_BODY_LIMIT = 16 * 1024
PUBLIC_PATHS = frozenset({
    "/login", "/logout", "/ragchat/health", "/favicon.ico", "/robots.txt", "/manifest.json", "/pwa_icon",
})
PUBLIC_PREFIXES = ("/static/", "/assets/", "/svelte/", "/pwa_icon/")  # Gradio's built front-end files
API_PREFIXES = ("/api/", "/v1/")  # the HTTP API (ragchat.api): refusals name the API key too


# ---- when login is required -------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    host = (host or "").strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "0.0.0.0", "::", "" and host names: reachable from elsewhere


def require_auth_for_bind(host: str, settings: "Settings", users: int) -> str:
    """How the web app may run when bound to ``host`` with ``users`` users in the catalog:
    "login" (users exist), "open" (loopback, no users) or "insecure" (another address, no users,
    ``server.insecure_no_auth`` set). Raises ConfigError when it must not start."""
    if users > 0:
        return "login"
    if is_loopback(host):
        return "open"
    if settings.server.insecure_no_auth:
        return "insecure"
    raise ConfigError(
        f"refusing to serve on {host}: anyone who can reach this address could read every document, and no login "
        "is configured. Add a user with `ragchat users add NAME --admin` (login is then required), bind to "
        "127.0.0.1, or, on a trusted network only, pass --insecure-no-auth (server.insecure_no_auth = true)"
    )


# ---- the web: one middleware, and the dependencies ---------------------------------------------


def _norm_origin(origin: str) -> str | None:
    """scheme://host[:port] in lower case with default ports dropped; None when it is not one."""
    try:
        u = urllib.parse.urlsplit(origin.strip())
        if u.scheme not in ("http", "https") or not u.hostname:
            return None
        port = u.port
    except ValueError:
        return None
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    default = {"http": 80, "https": 443}[u.scheme]
    return f"{u.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _host_only(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1: host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def safe_next(target: str | None) -> str:
    """A same-site path to go to after login (never another site: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or target.startswith("/\\"):
        return "/"
    if any(c in target for c in "\r\n\x00") or urllib.parse.urlsplit(target).netloc:
        return "/"
    return target


def is_public(path: str) -> bool:
    if "/../" in path or path.endswith("/..") or "/./" in path or "\\" in path:
        return False
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · ragchat</title>
<style>body{{font-family:system-ui,sans-serif;background:#f6f7f9;display:flex;min-height:100vh;align-items:center;
justify-content:center;margin:0}}form{{background:#fff;padding:2rem;border-radius:12px;box-shadow:0 2px 12px #0002;
width:min(340px,90vw)}}label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.5rem;box-sizing:border-box}}
button{{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:8px;background:#2563eb;color:#fff;font-size:1rem}}
.err{{color:#b91c1c}}</style></head>
<body><form method="post" action="{action}"><h1>ragchat</h1>{error}
<label for="u">User name</label><input id="u" name="username" autocomplete="username" required autofocus>
<label for="p">Password</label><input id="p" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form></body></html>"""


class WebSecurity:
    """The policy and the state behind the middleware. Made by ``install_web_security``."""

    def __init__(self, settings: "Settings", catalog: Catalog, *, login_required: bool | None = None,
                 hasher: PasswordHasher | None = None, throttle: LoginThrottle | None = None):
        self.settings = settings
        self.catalog = catalog
        self.hasher = hasher
        self.throttle = throttle or LoginThrottle()
        self.loopback_bind = is_loopback(settings.server.host)
        self.allowed_origins = {o for o in (_norm_origin(x) for x in settings.server.allowed_origins) if o}
        self.allowed_hosts = {urllib.parse.urlsplit(o).hostname for o in self.allowed_origins}
        if login_required is None:
            mode = require_auth_for_bind(settings.server.host, settings, user_count(catalog))
            login_required = mode == "login"
        self.login_required = login_required
        self._secret: bytes | None = None
        self._fp_cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    # -- identity ----------------------------------------------------------------------------

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            with self._lock:
                # every server of a shared catalog signs with the same secret (docs/DEPLOY.md)
                stored = self.catalog.get_meta("session_secret") or self.catalog.setdefault_meta(
                    "session_secret", secrets.token_hex(32))
                self._secret = bytes.fromhex(stored)
        return self._secret

    def _fingerprint(self, name: str) -> str | None:
        now = time.monotonic()
        hit = self._fp_cache.get(name)
        if hit and now - hit[0] < 5.0:
            return hit[1]
        stored = password_hash_of(self.catalog, name)
        fp = password_fingerprint(stored) if stored is not None else None
        self._fp_cache[name] = (now, fp)
        return fp

    def user_for_token(self, token: str | None) -> str | None:
        got = read_token(self.secret, token)
        if got is None:
            return None
        name, fp = got
        current = self._fingerprint(name)
        return name if current is not None and hmac.compare_digest(current, fp) else None

    def user_for_headers(self, headers: Mapping[str, str]) -> str | None:
        """The user of an API key (``Authorization: Bearer``) or else of the session cookie. A key
        that was sent decides alone: a wrong one is refused even next to a good cookie."""
        key = bearer_key(headers)
        if key is not None:
            return user_for_key(self.catalog, key)
        return self.user_for_token(_cookies(headers.get("cookie", "")).get(SESSION_COOKIE))

    def login(self, name: str, password: str) -> str | None:
        """A session token for a correct name and password, else None."""
        if not authenticate(self.catalog, name, password, self.hasher):
            return None
        self._fp_cache.pop(name, None)
        fp = self._fingerprint(name)
        return issue_token(self.secret, name, fp) if fp else None

    # -- request checks ------------------------------------------------------------------------

    def host_refusal(self, headers: Mapping[str, str]) -> str | None:
        """Bound to loopback, only loopback host names reach the app (no DNS rebinding)."""
        if not self.loopback_bind:
            return None
        host = _host_only(headers.get("host", ""))
        if is_loopback(host) or host in self.allowed_hosts:
            return None
        return (f"host {host!r} refused: this app is bound to {self.settings.server.host} and answers only to "
                "localhost names; list the origin in server.allowed_origins to allow it")

    def origin_allowed(self, origin: str, headers: Mapping[str, str], scheme: str) -> bool:
        norm = _norm_origin(origin)
        if norm is None:
            return False  # "null" (sandboxed frames, file://) and garbage
        if norm in self.allowed_origins:
            return True
        own = _norm_origin(f"{scheme}://{headers.get('host', '')}")
        own_https = _norm_origin(f"https://{headers.get('host', '')}")  # behind a TLS proxy
        return norm in {own, own_https}

    def cookie_header(self, token: str, secure: bool) -> str:
        return (f"{SESSION_COOKIE}={token}; Path=/; Max-Age={SESSION_TTL_S}; HttpOnly; SameSite=Lax"
                + ("; Secure" if secure else ""))

    # -- dependencies for FastAPI routes and Gradio ---------------------------------------------

    def user_of_request(self, request) -> str | None:
        scope = request.scope
        if "ragchat.user" in scope:
            return scope["ragchat.user"]
        return self.user_for_headers(request.headers)

    def auth_dependency(self, request) -> str | None:
        """For ``gr.mount_gradio_app(..., auth_dependency=...)``: the signed-in user, or None
        (Gradio then answers 401)."""
        return self.user_of_request(request)

    async def auth_dependency_async(self, request) -> str | None:
        return self.user_of_request(request)


def bearer_key(headers: Mapping[str, str]) -> str | None:
    scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def _refusal_body(path: str, headers: Mapping[str, str]) -> tuple[dict, list[tuple[bytes, bytes]]]:
    """The 401 answer: the API's says how to send a key, in the OpenAI error shape too."""
    if not path.startswith(API_PREFIXES):
        return {"detail": "login required: sign in at /login"}, []
    if bearer_key(headers) is not None:
        message = "invalid or revoked API key: make one with `ragchat users key create NAME`, or sign in at /login"
    else:
        message = ("login required: send an API key as 'Authorization: Bearer rck_...' (made with "
                   "`ragchat users key create NAME`), or sign in at /login")
    body = {"detail": message, "error": {"message": message, "type": "authentication_error", "code": "invalid_api_key"}}
    return body, [(b"www-authenticate", b'Bearer realm="ragchat"')]


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k not in out:
            out[k] = v
    return out


def _security_of(request) -> WebSecurity | None:
    sec = request.scope.get("ragchat.security")
    if sec is None:
        sec = getattr(getattr(request.app, "state", None), "ragchat_security", None)
    return sec


def _current_user(request) -> str | None:
    from fastapi import HTTPException

    sec = _security_of(request)
    if sec is None:  # fail closed: a route that asks for a user never runs unprotected
        raise HTTPException(401, "login required")
    if not sec.login_required:
        return None
    user = sec.user_of_request(request)
    if user is None:
        raise HTTPException(401, "login required: sign in at /login")
    return user


def current_user(request: Request) -> str | None:
    """Sync FastAPI dependency: the signed-in user; 401 when login is on and nobody is signed in;
    None when the app runs without login."""
    return _current_user(request)


async def current_user_async(request: Request) -> str | None:
    """The same as ``current_user``, as an async dependency."""
    return _current_user(request)


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
        headers = Headers(scope=scope)
        scope["ragchat.security"] = sec
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        websocket = scope["type"] == "websocket"

        refusal = sec.host_refusal(headers)
        origin = headers.get("origin")
        cross = None
        if refusal is None and origin is not None:
            if sec.origin_allowed(origin, headers, "https" if scope.get("scheme") in ("https", "wss") else "http"):
                cross = origin if _norm_origin(origin) in sec.allowed_origins else None
            else:
                refusal = (f"cross-origin request from {origin} refused; list it in server.allowed_origins "
                           "if it should reach this app")
        elif refusal is None and method not in ("GET", "HEAD", "OPTIONS") and headers.get("sec-fetch-site") == "cross-site":
            refusal = "cross-site request refused"
        if refusal is not None:
            await _deny(scope, receive, send, 403, refusal, websocket)
            return
        if method == "OPTIONS" and cross and headers.get("access-control-request-method"):
            await _plain(send, 204, b"", [
                (b"access-control-allow-origin", cross.encode()), (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", b"GET, POST, DELETE, HEAD, OPTIONS"),
                (b"access-control-allow-headers", headers.get("access-control-request-headers", "content-type").encode()),
                (b"access-control-max-age", b"600"), (b"vary", b"Origin"),
            ])
            return

        if not websocket and path in ("/login", "/logout"):
            await self._login_routes(scope, receive, send, headers, path, method)
            return

        user = sec.user_for_headers(headers) if sec.login_required else None
        scope["ragchat.user"] = user
        scope.setdefault("state", {})["user"] = user
        if sec.login_required and user is None and not is_public(path):
            if websocket:
                await _deny(scope, receive, send, 401, "login required", True)
            elif method in ("GET", "HEAD") and "text/html" in headers.get("accept", ""):
                target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
                location = scope.get("root_path", "") + "/login?next=" + urllib.parse.quote(target, safe="")
                await _plain(send, 303, b"", [(b"location", location.encode())])
            else:
                body, extra = _refusal_body(path, headers)
                await _json(send, 401, body, extra)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"SAMEORIGIN"),
                         (b"referrer-policy", b"same-origin")]
                if cross:
                    extra += [(b"access-control-allow-origin", cross.encode()),
                              (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [(k, v) for k, v in extra if k not in have]
            await send(message)

        await self.app(scope, receive, send if websocket else send_with_headers)

    async def _login_routes(self, scope, receive, send, headers, path, method) -> None:
        sec = self.security
        browser = "text/html" in headers.get("accept", "")
        secure = scope.get("scheme") == "https" or headers.get("x-forwarded-proto") == "https"
        root = scope.get("root_path", "")
        if not sec.login_required:
            await _json(send, 404, {"detail": "login is not enabled on this server (no users configured)"})
            return
        if path == "/logout":
            clear = f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax".encode()
            if browser:
                await _plain(send, 303, b"", [(b"location", (root + "/login").encode()), (b"set-cookie", clear)])
            else:
                await _json(send, 200, {"success": True}, [(b"set-cookie", clear)])
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if method in ("GET", "HEAD"):
            await _login_page(send, 200, root, safe_next((query.get("next") or ["/"])[0]), "")
            return
        if method != "POST":
            await _json(send, 405, {"detail": "use GET or POST"})
            return
        body = await _read_body(receive, LOGIN_BODY_LIMIT)
        if body is None:
            await _json(send, 413, {"detail": "login request too large"})
            return
        ctype = headers.get("content-type", "")
        if "json" in ctype:
            try:
                data = json.loads(body or b"{}")
                form = {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
            except ValueError:
                form = {}
        else:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
        name, password = form.get("username", "").strip(), form.get("password", "")
        target = safe_next(form.get("next") or (query.get("next") or ["/"])[0])
        client = (scope.get("client") or ("?", 0))[0]
        if sec.throttle.blocked(f"ip:{client}", f"user:{name}"):
            await _json(send, 429, {"detail": "too many failed logins: wait a few minutes and try again"})
            return
        import anyio

        token = await anyio.to_thread.run_sync(sec.login, name, password)  # argon2 takes a while: off the event loop
        if token is None:
            sec.throttle.failed(f"ip:{client}", f"user:{name}")
            if browser:
                await _login_page(send, 401, root, target, "Wrong user name or password.")
            else:
                await _json(send, 401, {"detail": "wrong user name or password"})
            return
        sec.throttle.succeeded(f"user:{name}")
        cookie = sec.cookie_header(token, secure).encode()
        if browser:
            await _plain(send, 303, b"", [(b"location", (root + target).encode()), (b"set-cookie", cookie)])
        else:
            await _json(send, 200, {"success": True, "user": name}, [(b"set-cookie", cookie)])


async def _read_body(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _plain(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], ctype: bytes = b"text/plain; charset=utf-8") -> None:
    hdrs = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff")] + headers
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _plain(send, status, json.dumps(obj).encode(), headers or [], b"application/json")


async def _login_page(send, status: int, root: str, target: str, error: str) -> None:
    page = _LOGIN_PAGE.format(
        action=html.escape(root + "/login"), next=html.escape(target),
        error=f'<p class="err">{html.escape(error)}</p>' if error else "",
    ).encode()
    await _plain(send, status, page, [
        (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
    ], b"text/html; charset=utf-8")


async def _deny(scope, receive, send, status: int, reason: str, websocket: bool) -> None:
    if websocket:
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        return
    await _json(send, status, {"detail": reason})


def install_web_security(app, settings: "Settings", catalog: Catalog, *, login_required: bool | None = None,
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
