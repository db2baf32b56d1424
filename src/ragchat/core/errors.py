"""Exceptions whose messages are written for the person using ragchat.

Every message says what went wrong and, where there is one, what to do about it. Provider and
library errors are wrapped into these at the module boundary that talks to the library.
"""


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
