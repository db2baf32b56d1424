"""API keys: one or more per user, for scripts and other tools that call ragchat's HTTP API.

A key reads ``rck_<id>_<secret>``. The id is public (``ragchat users key list`` shows it, and
``key revoke ID`` takes it); the secret is 256 random bits, shown once when the key is made. The
catalog keeps only the SHA-256 of the whole key (a slow password hash buys nothing for a random
secret of that length, and every API request checks one). A request sends the key as
``Authorization: Bearer rck_...`` and then acts as the key's user, with the same access rules as
that user's web session (ragchat.core.access).

A key dies when it is revoked or its user is removed. Left out: expiry dates and scopes (a key can
do what its user can do).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

from ragchat.auth.users import AuthError, check_name
from ragchat.store.catalog import Catalog
from ragchat.store.tables import ApiKey, User

PREFIX = "rck_"
_KEY = re.compile(r"rck_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TOUCH_S = 60.0  # last_used_at is written at most this often per key (a write per request would be wasteful)
MAX_LABEL = 128


@dataclass(frozen=True)
class KeyInfo:
    id: str
    user: str
    label: str
    created_at: datetime
    last_used_at: datetime | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.user, row.label, row.created_at, row.last_used_at)


def create_key(catalog: Catalog, user: str, label: str = "") -> tuple[KeyInfo, str]:
    """A new key for user: (its info, the key itself). The key is not stored and cannot be shown again."""
    check_name(user)
    label = " ".join((label or "").split())[:MAX_LABEL]
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with catalog.session() as s, s.begin():
        if s.get(User, user) is None:
            raise AuthError(f"no user {user}: add them first with `ragchat users add {user}`")
        row = ApiKey(id=key_id, user=user, label=label, secret_hash=_digest(key))
        s.add(row)
        s.flush()
        info = _info(row)
    return info, key


def list_keys(catalog: Catalog, user: str | None = None) -> list[KeyInfo]:
    """Every key (or one user's), oldest first; never the secrets."""
    with catalog.session() as s:
        query = select(ApiKey).order_by(ApiKey.user, ApiKey.created_at)
        if user is not None:
            query = query.where(ApiKey.user == user)
        return [_info(r) for r in s.scalars(query)]


def revoke_key(catalog: Catalog, key_id: str) -> KeyInfo:
    """Delete a key by its id (or by the whole key); it stops working at the next request."""
    m = _KEY.fullmatch(key_id.strip())
    key_id = m.group(1) if m else key_id.strip().removeprefix(PREFIX)
    with catalog.session() as s, s.begin():
        row = s.get(ApiKey, key_id) if re.fullmatch(r"[0-9a-f]{12}", key_id) else None
        if row is None:
            raise AuthError(f"no API key {key_id!r}: see `ragchat users key list`")
        info = _info(row)
        s.delete(row)
    return info


def user_for_key(catalog: Catalog, key: str | None) -> str | None:
    """The user a genuine, unrevoked key belongs to; None for anything else."""
    m = _KEY.fullmatch(key or "")
    if m is None:
        return None
    now = datetime.now(timezone.utc)
    with catalog.session() as s, s.begin():
        row = s.get(ApiKey, m.group(1))
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(key)):
            return None
        if s.get(User, row.user) is None:  # a database that does not cascade deletes
            return None
        last = row.last_used_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)  # SQLite gives naive datetimes back
        if last is None or (now - last).total_seconds() > _TOUCH_S:
            row.last_used_at = now
        return row.user
