"""Exceptions whose messages are written for the person using ragchat.

Every message says what went wrong and, where there is one, what to do about it. Provider and
library errors are wrapped into these at the module boundary that talks to the library.
"""

from contextlib import contextmanager


class RagchatError(Exception):
    """Base class: str(error) is safe and useful to show to a user."""


class ConfigError(RagchatError):
    """A setting has a wrong value; the message names the key and the allowed values."""


class LoadError(RagchatError):
    """A file could not be turned into text. `reason` is a short machine-friendly tag."""

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason


class StoreError(RagchatError):
    """The store on disk cannot be used as asked (locked, built with another model, ...)."""


class EmbeddingModelMismatch(StoreError):
    """The store was built with another embedding model than the one configured."""


class LLMError(RagchatError):
    """The language model could not answer (unreachable, missing model, timeout, bad stream)."""


class BusyError(RagchatError):
    """Too many requests are waiting for the language model."""


class DiskFull(StoreError):
    """The disk that holds the store has no space left (ENOSPC), whichever library hit it."""


class ReadOnlyStore(StoreError):
    """The store folder cannot be written to (EROFS), whichever library hit it."""


_DISK_FULL = ("database or disk is full", "no space left on device", "os error 28", "disk quota exceeded")
_READ_ONLY = ("read-only file system", "readonly database", "os error 30")


def host_fault(exc: BaseException, store) -> StoreError | None:
    """The one message for a full or read-only store disk, or None when exc is something else.

    ENOSPC and EROFS surface as OSError errno 28/30 (file copies), SQLite's "database or disk is
    full" / "attempt to write a readonly database" (the catalog, and Chroma's own SQLite), and
    Tantivy's or Chroma's "(os error 28/30)": the exception and its causes are read for these."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (DiskFull, ReadOnlyStore)):
            return exc
        errno = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        text = str(exc).lower()
        if errno == 28 or errno == 122 or any(s in text for s in _DISK_FULL):
            return DiskFull(f"disk full: the disk that holds the store {store} has no space left, so this change was not "
                            "saved (nothing half-written of it can be found). Free some space on it, or move the store to "
                            "a bigger disk, then add the file again")
        if errno == 30 or any(s in text for s in _READ_ONLY):
            return ReadOnlyStore(f"the store folder {store} is read-only, so nothing can be added to it or removed from "
                                 "it (what it holds is unchanged). Make it writable again (for a mount: "
                                 "`mount -o remount,rw`), then try again")
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


@contextmanager
def host_faults(store):
    """Within it, a full or read-only store disk, hit by any library, raises the one clear StoreError."""
    try:
        yield
    except Exception as exc:
        fault = host_fault(exc, store)
        if fault is None or fault is exc:
            raise
        raise fault from exc
