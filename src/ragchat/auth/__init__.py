"""Team mode: users, API keys, sessions, and the web middleware that asks for them.

This package owns who a person or a script is, and whether a web request may come in. One module
per concept:

- ``users``: users with argon2id password hashes and an admin flag; ``authenticate``. ``HASHER``
  there is the password hasher in force (tests swap in a cheaper one there).
- ``keys``: per-user API keys for the HTTP API (only a hash is stored; revocable).
- ``sessions``: session tokens signed with itsdangerous, with expiry and password-fingerprint
  invalidation; login throttling.
- ``web``: when login is required (``require_auth_for_bind``), ``WebSecurity`` (the Host, Origin and
  identity rules) and the FastAPI dependencies ``current_user`` / ``current_user_async``.
- ``login``: the ``/login`` page and form, and ``/logout``.
- ``middleware``: ``SecurityMiddleware`` (pure ASGI, in front of every route) and
  ``install_web_security``.
- ``commands``: ``ragchat users ...``.

The users and API keys are rows of the catalog's ``users`` and ``api_keys`` tables
(ragchat.store.tables), queried here. Left out: what a user may read (ragchat.core.access decides
that from the collection's name), TLS, single sign-on, password reset by mail.

The names below are the package's public surface; callers use ``from ragchat import auth`` and
``auth.<name>``.
"""

from __future__ import annotations

from ragchat.auth.commands import users_command
from ragchat.auth.keys import KeyInfo, create_key, list_keys, revoke_key, user_for_key
from ragchat.auth.middleware import SecurityMiddleware, install_web_security
from ragchat.auth.sessions import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    LoginThrottle,
    issue_token,
    password_fingerprint,
    read_token,
)
from ragchat.auth.users import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    AuthError,
    UserInfo,
    add_user,
    authenticate,
    check_password,
    is_admin,
    list_users,
    remove_user,
    set_password,
    user_count,
)
from ragchat.auth.web import (
    PUBLIC_PATHS,
    PUBLIC_PREFIXES,
    WebSecurity,
    bearer_key,
    current_user,
    current_user_async,
    is_loopback,
    is_public,
    require_auth_for_bind,
    safe_next,
)

__all__ = [
    "MAX_PASSWORD", "MIN_PASSWORD", "PUBLIC_PATHS", "PUBLIC_PREFIXES", "SESSION_COOKIE", "SESSION_TTL_S",
    "AuthError", "KeyInfo", "LoginThrottle", "SecurityMiddleware", "UserInfo", "WebSecurity",
    "add_user", "authenticate", "bearer_key", "check_password", "create_key", "current_user",
    "current_user_async", "install_web_security", "is_admin", "is_loopback", "is_public", "issue_token", "list_keys",
    "list_users", "password_fingerprint", "read_token", "remove_user", "require_auth_for_bind", "revoke_key",
    "safe_next", "set_password", "user_count", "user_for_key", "users_command",
]
