"""The web side of team mode: when login is required, who a request is, and whether it may come in.

- **require_auth_for_bind** is the start-up rule: bound to anything but loopback, the app refuses to
  start unless users exist (login on) or ``server.insecure_no_auth`` is set.
- **WebSecurity** is the policy and state behind ``SecurityMiddleware`` (ragchat.auth.middleware):
  which Host and Origin headers are accepted (loopback names only while bound to loopback: DNS
  rebinding; the app's own origin and ``server.allowed_origins``: CORS), which paths are public
  (``PUBLIC_PATHS``/``PUBLIC_PREFIXES``: the login routes, the health check and static assets),
  and who a request is: a signed session cookie (ragchat.auth.sessions) or an API key
  (``Authorization: Bearer rck_...``, ragchat.auth.keys).
- It gives Gradio the same answer through ``WebSecurity.auth_dependency`` (sync) or
  ``auth_dependency_async``, so that Gradio's ``request.username`` is the signed-in user. Routes of
  our own ask for it with the ``current_user`` / ``current_user_async`` dependencies, which fail
  closed.

Left out: TLS (put a reverse proxy in front for HTTPS; cookies are marked Secure when the request
arrived over https), single sign-on.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
import urllib.parse
from typing import Mapping

from argon2 import PasswordHasher
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request

from ragchat.auth.keys import user_for_key
from ragchat.auth.sessions import SESSION_COOKIE, LoginThrottle, issue_token, password_fingerprint, read_token
from ragchat.auth.users import authenticate, password_hash_of, user_count
from ragchat.core.errors import ConfigError
from ragchat.core.settings import Settings
from ragchat.store.catalog import Catalog

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


def require_auth_for_bind(host: str, settings: Settings, users: int) -> str:
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


# ---- the policy, and the dependencies ---------------------------------------------------------


def norm_origin(origin: str) -> str | None:
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


class WebSecurity:
    """The policy and the state behind ``SecurityMiddleware``. Made by ``install_web_security``."""

    def __init__(self, settings: Settings, catalog: Catalog, *, login_required: bool | None = None,
                 hasher: PasswordHasher | None = None, throttle: LoginThrottle | None = None):
        self.settings = settings
        self.catalog = catalog
        self.hasher = hasher
        self.throttle = throttle or LoginThrottle(  # counts shared by every server of the catalog
            settings.server.login_attempts, settings.server.login_window_s, catalog=catalog)
        self.loopback_bind = is_loopback(settings.server.host)
        self.allowed_origins = {o for o in (norm_origin(x) for x in settings.server.allowed_origins) if o}
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

    def identify(self, conn: HTTPConnection) -> str | None:
        """The user of an API key (``Authorization: Bearer``) or else of the session cookie. A key
        that was sent decides alone: a wrong one is refused even next to a good cookie."""
        key = bearer_key(conn.headers)
        if key is not None:
            return user_for_key(self.catalog, key)
        return self.user_for_token(conn.cookies.get(SESSION_COOKIE))

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
        norm = norm_origin(origin)
        if norm is None:
            return False  # "null" (sandboxed frames, file://) and garbage
        if norm in self.allowed_origins:
            return True
        own = norm_origin(f"{scheme}://{headers.get('host', '')}")
        own_https = norm_origin(f"https://{headers.get('host', '')}")  # behind a TLS proxy
        return norm in {own, own_https}

    # -- dependencies for FastAPI routes and Gradio ---------------------------------------------

    def user_of_request(self, request: HTTPConnection) -> str | None:
        """The user the middleware found for this request, or else who the request says it is."""
        if "ragchat.user" in request.scope:
            return request.scope["ragchat.user"]
        return self.identify(request)

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


def _security_of(request) -> WebSecurity | None:
    sec = request.scope.get("ragchat.security")
    if sec is None:
        sec = getattr(getattr(request.app, "state", None), "ragchat_security", None)
    return sec


def _current_user(request: HTTPConnection) -> str | None:
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


