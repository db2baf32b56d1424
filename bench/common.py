"""Helpers the bench scripts share (run them as ``python bench/NAME.py``, which puts bench/ on the path)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nobody listens on now (the usual bind-to-0 trick; a race is possible but rare)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
