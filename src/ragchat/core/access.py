"""Who may read which collection: shared collections, and private collections of one user.

Naming rule (the whole policy lives here):

- A **private collection** is named ``~<user>/<name>``, e.g. ``~alice/notes``. The ``~`` prefix is
  reserved: a shared collection can never start with it, and a user name cannot contain ``/``, so a
  private name cannot collide with a shared one or with another user's.
- Every document in a private collection has ``Document.owner`` = that user; shared documents have
  no owner. ``owned_collection`` keeps the two in step when a document is added: a user's upload
  into a shared name (``notes``) goes to their own ``~alice/notes``. So two users who upload a file
  with the same name never overwrite each other's document (document ids are derived from the
  collection and the source name).
- A signed-in user may **search** every shared collection and their own private ones
  (``ragchat.retrieve.scope.readable_collections``). Retrieval applies that list inside both indexes
  (``Filters(collections=...)``), so another user's chunks are never even candidates.
- Without login (``user`` is None) only shared collections are readable.

Left out here: who may *write* to shared collections (the web app decides; admins are the natural
choice, see ``auth.is_admin``), per-collection sharing between some users, and groups.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ragchat.core.errors import RagchatError

if TYPE_CHECKING:  # pragma: no cover
    from ragchat.store.records import DocInfo

PRIVATE_PREFIX = "~"
DEFAULT_PRIVATE = "private"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_BAD_COLLECTION = re.compile(r"[\x00-\x1f\x7f]")


class AccessError(RagchatError):
    """The user may not do this with that collection or document."""


def valid_user_name(name: str) -> bool:
    return bool(USER_NAME.fullmatch(name or ""))


def is_private(collection: str) -> bool:
    return collection.startswith(PRIVATE_PREFIX)


def collection_owner(collection: str) -> str | None:
    """The user a private collection belongs to; None for a shared collection."""
    if not is_private(collection):
        return None
    user, sep, _ = collection[len(PRIVATE_PREFIX):].partition("/")
    return user if sep and valid_user_name(user) else None


def private_collection(user: str, name: str = DEFAULT_PRIVATE) -> str:
    """``~user/name``; a name that is itself someone's private collection is reduced to its last part."""
    if not valid_user_name(user):
        raise AccessError(f"{user!r} is not a valid user name")
    if is_private(name):
        name = name.partition("/")[2]
    name = check_collection_name(name.strip() or DEFAULT_PRIVATE, allow_private=False)
    return f"{PRIVATE_PREFIX}{user}/{name}"


def check_collection_name(name: str, allow_private: bool = True) -> str:
    """The name, or AccessError for one that could confuse the rule above."""
    if not name or len(name) > 200 or _BAD_COLLECTION.search(name):
        raise AccessError("a collection name must be 1 to 200 characters, without control characters")
    if is_private(name):
        if not allow_private or collection_owner(name) is None or not name.partition("/")[2].strip():
            raise AccessError(f"collection names starting with {PRIVATE_PREFIX!r} are reserved for private collections "
                              f"(~user/name)")
    return name


def owned_collection(collection: str, owner: str | None) -> tuple[str, str | None]:
    """The (collection, owner) a new document is stored under.

    - no owner, shared name: shared, as asked;
    - no owner, private name ``~alice/x``: alice's (an operator adding files for alice);
    - owner alice, shared name ``x``: alice's private ``~alice/x``;
    - owner alice, ``~alice/x``: as asked; ``~bob/x``: refused.
    """
    check_collection_name(collection)
    col_owner = collection_owner(collection)
    if owner is None:
        return collection, col_owner
    if not valid_user_name(owner):
        raise AccessError(f"{owner!r} is not a valid user name")
    if col_owner is None:
        return private_collection(owner, collection), owner
    if col_owner != owner:
        raise AccessError(f"{owner} cannot add documents to {collection}: it is another user's private collection")
    return collection, owner


def can_read_collection(collection: str, user: str | None) -> bool:
    owner = collection_owner(collection)
    if is_private(collection) and owner is None:
        return False  # a malformed private name belongs to nobody
    return owner is None or owner == user


def can_read(info: "DocInfo", user: str | None) -> bool:
    """Whether a user may see a document, its passages and its stored original."""
    if info.owner is not None and info.owner != user:
        return False
    return can_read_collection(info.collection, user)
