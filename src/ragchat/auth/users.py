"""Users of team mode: names, argon2id password hashes and the admin flag, in the catalog's ``users`` table.

- ``add_user``, ``set_password``, ``remove_user``, ``list_users``, ``user_count``, ``is_admin``;
- ``authenticate`` verifies a password. An unknown name costs one argon2 verification too, so the
  answer time does not tell which names exist.

Removing a user removes their API keys (``ragchat.auth.keys``) with them and ends their sessions
(``ragchat.auth.sessions``); their private documents stay. Left out: password reset by mail,
roles beyond "admin".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select

from ragchat.core.access import valid_user_name
from ragchat.core.errors import RagchatError
from ragchat.store.catalog import Catalog
from ragchat.store.tables import ApiKey, User

MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a login post small

# argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4). Read at
# each call, so that tests can swap in a cheaper one here (``ragchat.auth.users.HASHER``).
HASHER = PasswordHasher()
_DUMMY: dict[tuple, str] = {}


class AuthError(RagchatError):
    """A user-management request that cannot be done (unknown user, weak password, ...)."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    is_admin: bool
    created_at: datetime


def _hasher(hasher: PasswordHasher | None) -> PasswordHasher:
    return hasher if hasher is not None else HASHER


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"the password is too long: use at most {MAX_PASSWORD} characters")


def check_name(name: str | None) -> str:
    if not name or not valid_user_name(name):
        raise AuthError(f"{name!r} is not a valid user name: use 1 to 64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def add_user(catalog: Catalog, name: str, password: str, admin: bool = False, hasher: PasswordHasher | None = None) -> None:
    check_name(name)
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
        s.execute(delete(ApiKey).where(ApiKey.user == name))  # also where the database ignores foreign keys
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


def password_hash_of(catalog: Catalog, name: str) -> str | None:
    with catalog.session() as s:
        user = s.get(User, name)
        return user.password_hash if user is not None else None
