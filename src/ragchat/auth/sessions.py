"""Session tokens for the web page (and any client that signs in at ``/login``), and login throttling.

A token is a JSON payload ``{"u": user, "f": fingerprint, "e": expiry}`` signed by itsdangerous
(``URLSafeSerializer``, HMAC-SHA256, with a secret kept in the catalog). It is worth nothing once
it has expired (``SESSION_TTL_S``), and ``WebSecurity`` also compares its password fingerprint
with the user's current one, so a new password or a removed user ends every older session at once.

``LoginThrottle`` counts failed logins per client address and per user name, in the catalog, so that
every server sharing it counts the same failures.

Left out: server-side session storage (a token is checked by its signature alone, so any server
that shares the catalog's secret accepts it), "log out everywhere" other than changing the password.
"""

from __future__ import annotations

import hashlib
import threading
import time

from itsdangerous import BadData, URLSafeSerializer

SESSION_COOKIE = "ragchat_session"
SESSION_TTL_S = 7 * 24 * 3600
_SALT = "ragchat.session"
_MAX_TOKEN = 4096


def _serializer(secret: bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT, signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256})


def password_fingerprint(password_hash: str) -> str:
    """Goes into session tokens: a new password (or a removed user) ends every older session."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def issue_token(secret: bytes, name: str, fingerprint: str, now: float | None = None, ttl: float = SESSION_TTL_S) -> str:
    return _serializer(secret).dumps({"u": name, "f": fingerprint, "e": int((now or time.time()) + ttl)})


def read_token(secret: bytes, token: str | None, now: float | None = None) -> tuple[str, str] | None:
    """(name, fingerprint) of a genuine, unexpired token; None otherwise."""
    if not token or len(token) > _MAX_TOKEN:
        return None
    try:
        data = _serializer(secret).loads(token)
    except (BadData, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("f"), str):
        return None
    if not isinstance(data.get("e"), int) or data["e"] < (now or time.time()):
        return None
    return data["u"], data["f"]


class LoginThrottle:
    """At most ``limit`` failed logins per client address and per user name in ``window_s``.

    With a catalog, the counts are kept in it (ragchat.store.logins), so every server sharing the
    catalog counts the same failures: N servers allow ``limit`` wrong passwords in all, not N times
    as many. Without one, they are kept in this process. An attempt is counted before its password
    is checked (``begin``) and forgotten when it succeeds (``succeeded``), so parallel attempts
    cannot all pass before the first failure is counted. Keys are hashed before they are kept."""

    def __init__(self, limit: int, window_s: float, catalog=None):
        self.limit, self.window_s = limit, window_s
        self.catalog = catalog
        self._fails: dict[str, list[tuple[int, float]]] = {}  # without a catalog: key -> (attempt id, time)
        self._next = 0
        self._lock = threading.Lock()

    def begin(self, *keys: str) -> list[int] | None:
        """Count an attempt under each key; a handle for ``succeeded``, or None when a key has had
        ``limit`` failures in the window (the attempt is then refused, and not counted)."""
        hashed = [_hashed(k) for k in keys]
        if self.catalog is not None:
            return self.catalog.reserve_login(hashed, self.limit, self.window_s)
        now = time.monotonic()
        with self._lock:
            if any(len(self._recent(k, now)) >= self.limit for k in hashed):
                return None
            self._next += 1
            for k in dict.fromkeys(hashed):
                self._fails.setdefault(k, []).append((self._next, now))
            if len(self._fails) > 10000:  # a flood of names must not grow memory without bound
                self._fails = {k: v for k, v in self._fails.items() if self._recent(k, now)}
            return [self._next]

    def succeeded(self, attempt: list[int], user_key: str) -> None:
        """The attempt was right: it is not a failure, and the user's earlier failures are forgotten."""
        if self.catalog is not None:
            self.catalog.release_login(attempt, _hashed(user_key))
            return
        with self._lock:
            self._fails.pop(_hashed(user_key), None)
            for k in list(self._fails):
                kept = [f for f in self._fails[k] if f[0] not in attempt]
                if kept:
                    self._fails[k] = kept
                else:
                    del self._fails[k]

    def _recent(self, key: str, now: float) -> list[tuple[int, float]]:
        times = [f for f in self._fails.get(key, []) if now - f[1] < self.window_s]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
