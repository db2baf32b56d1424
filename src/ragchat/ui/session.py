"""Who is asking, and the page's per-tab state.

Per-tab state is one dict (a ``gr.State``): the open conversation id, the sources of every answer
on screen (by chatbot index) and the sources in the panel. Conversations themselves live in the
catalog, so they survive restarts and two tabs never share an unsaved history.

The signed-in user (``request.username`` once login is configured) owns the conversations and
uploads of a session. What they may see is decided by ``ragchat.core.access`` (through
``engine.filters_for`` and ``ragchat.retrieve.scope``), never in the UI.
"""

from __future__ import annotations

import gradio as gr

AUTO = "auto"  # the model picker's "let the settings decide"
ALL = "all"  # the search scope's "every document"


def new_state() -> dict:
    return {"cid": None, "answers": {}, "panel": {"cited": [], "retrieved": []}}


def user_of(request: gr.Request | None) -> str | None:
    """The signed-in user, or None when the app runs without login."""
    if request is None:
        return None
    return getattr(request, "username", None) or None


def session_key(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request is not None else "anonymous"
