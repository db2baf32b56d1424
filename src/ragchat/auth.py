"""Team mode: users with argon2 password hashes, login for the web app, and when login is required.

- **Users** live in the catalog's ``users`` table (name, argon2id hash, admin flag). ``ragchat users
  add|remove|list|passwd`` manages them (``users_command``); passwords come from ``--password``,
  ``RAGCHAT_PASSWORD`` or a prompt and are never printed.
- **authenticate** verifies a password; an unknown name costs one argon2 verification too, so the
  answer time does not tell which names exist.
- **require_auth_for_bind** is the start-up rule: bound to anything but loopback, the app refuses to
  start unless users exist (login on) or ``server.insecure_no_auth`` is set.
- **install_web_security(app, settings, catalog)** puts one ASGI middleware in front of a FastAPI
  app (and so in front of the Gradio app mounted on it). It:

  * refuses requests whose ``Host`` is not a loopback name while the app is bound to loopback
    (DNS rebinding), and requests whose ``Origin`` is neither the app's own nor listed in
    ``server.allowed_origins`` (CORS; preflights of listed origins are answered);
  * when login is on, requires a signed session cookie on every route except ``/login``,
    ``/logout``, the health check and static assets (``PUBLIC_PATHS``/``PUBLIC_PREFIXES``): browsers
    are sent to ``/login``, other clients get 401. ``/login`` accepts a form post (what browsers and
    ``gradio_client.Client(url, auth=(name, password))`` send) and sets the cookie;
  * puts the user in ``request.state.user`` and gives Gradio the same answer through
    ``WebSecurity.auth_dependency`` (sync) or ``auth_dependency_async``, so that Gradio's
    ``request.username`` is the signed-in user.

  Session cookies are HMAC-signed (a secret kept in the catalog), expire after ``SESSION_TTL_S``,
  and die at once when the user is removed or their password changes.

Left out: TLS (put a reverse proxy in front for HTTPS; cookies are marked Secure when the request
arrived over https), single sign-on, password reset by mail, roles beyond "admin".
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import html
import ipaddress
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from starlette.datastructures import Headers
from starlette.requests import Request

from ragchat.access import valid_user_name
from ragchat.errors import ConfigError, RagchatError
from ragchat.store.catalog import Catalog, User

if TYPE_CHECKING:  # pragma: no cover
    from ragchat.config import Settings

MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a login post small
SESSION_COOKIE = "ragchat_session"
SESSION_TTL_S = 7 * 24 * 3600
LOGIN_BODY_LIMIT = 16 * 1024
PUBLIC_PATHS = frozenset({
    "/login", "/logout", "/ragchat/health", "/favicon.ico", "/robots.txt", "/manifest.json", "/pwa_icon",
})
PUBLIC_PREFIXES = ("/static/", "/assets/", "/svelte/", "/pwa_icon/")  # Gradio's built front-end files

# argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4). Tests
# swap in a cheaper hasher.
HASHER = PasswordHasher()
_DUMMY: dict[tuple, str] = {}


class AuthError(RagchatError):
    """A user-management request that cannot be done (unknown user, weak password, ...)."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    is_admin: bool
    created_at: datetime


# ---- users ----------------------------------------------------------------------------------


def _hasher(hasher: PasswordHasher | None) -> PasswordHasher:
    return hasher or HASHER


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"the password is too long: use at most {MAX_PASSWORD} characters")


def _check_name(name: str | None) -> str:
    if not name or not valid_user_name(name):
        raise AuthError(f"{name!r} is not a valid user name: use 1 to 64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def add_user(catalog: Catalog, name: str, password: str, admin: bool = False, hasher: PasswordHasher | None = None) -> None:
    _check_name(name)
    check_password(password)
    hashed = _hasher(hasher).hash(password)
    with catalog.session() as s, s.begin():
        if s.get(User, name) is not None:
            raise AuthError(f"user {name} already exists: change the password with `ragchat users passwd {name}`")
        s.add(User(name=name, password_hash=hashed, is_admin=int(bool(admin))))


def set_password(catalog: Catalog, name: str, password: str, hasher: PasswordHasher | None = None) -> None:
    check_password(password)
    hashed = _hasher(hasher).hash(password)
    with catalog.session() as s, s.begin():
        user = s.get(User, name)
        if user is None:
            raise AuthError(f"no user {name}: see `ragchat users list`")
        user.password_hash = hashed


def remove_user(catalog: Catalog, name: str) -> None:
    with catalog.session() as s, s.begin():
        user = s.get(User, name)
        if user is None:
            raise AuthError(f"no user {name}: see `ragchat users list`")
        s.delete(user)


def list_users(catalog: Catalog) -> list[UserInfo]:
    with catalog.session() as s:
        return [UserInfo(u.name, bool(u.is_admin), u.created_at) for u in s.scalars(select(User).order_by(User.name))]


def user_count(catalog: Catalog) -> int:
    with catalog.session() as s:
        return s.scalar(select(func.count()).select_from(User)) or 0


def is_admin(catalog: Catalog, name: str | None) -> bool:
    if not name:
        return False
    with catalog.session() as s:
        user = s.get(User, name)
        return bool(user and user.is_admin)


def _dummy_hash(hasher: PasswordHasher) -> str:
    key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len, hasher.salt_len)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash(secrets.token_urlsafe(16))
    return _DUMMY[key]


def authenticate(catalog: Catalog, name: str, password: str, hasher: PasswordHasher | None = None) -> bool:
    """True when the name and password match a user. Unknown names and malformed input cost the
    same argon2 verification as a wrong password, so timing does not reveal which names exist."""
    hasher = _hasher(hasher)
    stored = None
    if isinstance(name, str) and isinstance(password, str) and valid_user_name(name) and len(password) <= MAX_PASSWORD:
        with catalog.session() as s:
            user = s.get(User, name)
            stored = user.password_hash if user is not None else None
    ok = False
    try:
        ok = hasher.verify(stored or _dummy_hash(hasher), password if isinstance(password, str) else "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    ok = ok and stored is not None
    if ok and hasher.check_needs_rehash(stored):  # parameters were raised since: upgrade quietly
        try:
            set_password(catalog, name, password, hasher)
        except AuthError:
            pass
    return ok


def password_fingerprint(password_hash: str) -> str:
    """Goes into session tokens: a new password (or a removed user) ends every older session."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


# ---- the CLI: ragchat users ... -------------------------------------------------------------


def _read_password(args, env: Mapping[str, str], prompt: Callable[[str], str] | None, stdin_tty: bool) -> str:
    if getattr(args, "password", None):
        print("ragchat: note: a password given on the command line can be seen by other users of this machine "
              "(ps, shell history); prefer RAGCHAT_PASSWORD or the prompt", file=sys.stderr)
        return args.password
    if env.get("RAGCHAT_PASSWORD"):
        return env["RAGCHAT_PASSWORD"]
    if prompt is None:
        if not stdin_tty:
            raise ConfigError("no password given: pass --password, set RAGCHAT_PASSWORD, or run the command in a terminal")
        prompt = getpass.getpass
    first = prompt(f"password for {args.name}: ")
    second = prompt("again: ")
    if first != second:
        raise AuthError("the two passwords differ; nothing was changed")
    return first


def users_command(settings: "Settings", args, *, env: Mapping[str, str] | None = None,
                  prompt: Callable[[str], str] | None = None, hasher: PasswordHasher | None = None) -> int:
    """`ragchat users add|remove|list|passwd [NAME] [--admin] [--password P]`.

    Opens only the catalog (SQLite handles several processes), so users can be managed while the
    web app runs. Adding the first user turns login on at the app's next start."""
    env = os.environ if env is None else env
    settings.store.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.catalog_sqlalchemy_url)
    try:
        action = args.action
        if action == "list":
            users = list_users(catalog)
            if not users:
                print("no users: the web app runs without login (loopback only). Add one with "
                      "`ragchat users add NAME --admin`")
            for u in users:
                print(f"{u.name:<32} {'admin' if u.is_admin else 'user':<6} added {u.created_at:%Y-%m-%d}")
            return 0
        if not args.name:
            raise ConfigError(f"`ragchat users {action}` needs a user name")
        name = _check_name(args.name)
        if action == "remove":
            remove_user(catalog, name)
            print(f"removed user {name}; their private documents (~{name}/...) are kept")
            return 0
        if action == "passwd":
            if name not in {u.name for u in list_users(catalog)}:
                raise AuthError(f"no user {name}: see `ragchat users list`")
            set_password(catalog, name, _read_password(args, env, prompt, sys.stdin.isatty()), hasher)
            print(f"password changed for {name}; their open sessions have ended")
            return 0
        if action == "add":
            first = user_count(catalog) == 0
            if name in {u.name for u in list_users(catalog)}:
                raise AuthError(f"user {name} already exists: change the password with `ragchat users passwd {name}`")
            add_user(catalog, name, _read_password(args, env, prompt, sys.stdin.isatty()), getattr(args, "admin", False),
                     hasher)
            print(f"added {'admin' if getattr(args, 'admin', False) else 'user'} {name}")
            if first:
                print("login is now required: restart the web app if it is running")
            return 0
        raise ConfigError(f"unknown users action {action!r}: use add, remove, list or passwd")
    finally:
        catalog.close()


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


# ---- session tokens ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret: bytes, name: str, fingerprint: str, now: float | None = None, ttl: float = SESSION_TTL_S) -> str:
    payload = json.dumps({"u": name, "f": fingerprint, "e": int((now or time.time()) + ttl)}, separators=(",", ":")).encode()
    return _b64(payload) + "." + _b64(hmac.new(secret, payload, hashlib.sha256).digest())


def read_token(secret: bytes, token: str | None, now: float | None = None) -> tuple[str, str] | None:
    """(name, fingerprint) of a genuine, unexpired token; None otherwise."""
    if not token or len(token) > 4096 or token.count(".") != 1:
        return None
    body, sig = token.split(".")
    try:
        payload = _unb64(body)
        good = hmac.compare_digest(_unb64(sig), hmac.new(secret, payload, hashlib.sha256).digest())
        data = json.loads(payload) if good else None
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("f"), str):
        return None
    if not isinstance(data.get("e"), int) or data["e"] < (now or time.time()):
        return None
    return data["u"], data["f"]


class LoginThrottle:
    """At most ``limit`` failed logins per client address and per user name in ``window_s``."""

    def __init__(self, limit: int = 10, window_s: float = 300.0):
        self.limit, self.window_s = limit, window_s
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(key, []) if now - t < self.window_s]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._fails.setdefault(k, []).append(now)
            if len(self._fails) > 10000:  # a flood of names must not grow memory without bound
                self._fails = {k: v for k, v in self._fails.items() if self._recent(k, now)}

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


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
                stored = self.catalog.get_meta("session_secret")
                if not stored:
                    stored = secrets.token_hex(32)
                    self.catalog.set_meta("session_secret", stored)
                self._secret = bytes.fromhex(stored)
        return self._secret

    def _fingerprint(self, name: str) -> str | None:
        now = time.monotonic()
        hit = self._fp_cache.get(name)
        if hit and now - hit[0] < 5.0:
            return hit[1]
        with self.catalog.session() as s:
            user = s.get(User, name)
            fp = password_fingerprint(user.password_hash) if user is not None else None
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
                (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
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
                await _json(send, 401, {"detail": "login required: sign in at /login"})
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
