"""The chat's thumbs up and down, and the note that may follow.

A click on a thumb under an answer stores the rating at once (``engine.feedback.rate_message``: the
question, answer, sources and model come from the saved conversation, not from the browser) and
opens a small form: what was good or wrong, and, after a thumbs-down, the right answer. Saving it
adds both to that rating. ``ragchat feedback export`` turns the ratings into a test set.
"""

from __future__ import annotations

import gradio as gr

from ragchat.core.errors import RagchatError
from ragchat.ui.session import new_state, user_of


class FeedbackCallbacks:
    """Part of ``WebApp`` (``engine``)."""

    def rate(self, state: dict, like: gr.LikeData, request: gr.Request):
        """Outputs: state, the note form, the note box, the correction box."""
        state = dict(state or new_state())
        index = like.index[0] if isinstance(like.index, (list, tuple)) else like.index
        if like.liked not in (True, False):  # a thumb clicked off again: the rating stays, nothing more to ask
            return state, gr.update(visible=False), gr.skip(), gr.skip()
        try:
            fid = self.engine.feedback.rate_message(user_of(request), state.get("cid") or "", int(index),
                                                    1 if like.liked else -1)
        except RagchatError as exc:
            gr.Warning(f"The rating was not saved: {exc}.")
            return state, gr.update(visible=False), gr.skip(), gr.skip()
        state["feedback"] = fid
        return (state, gr.update(visible=True), gr.update(value=""),
                gr.update(value="", visible=not like.liked))

    def add_note(self, note: str, correction: str, state: dict, request: gr.Request):
        """Outputs: the note form (closed once saved)."""
        fid = (state or {}).get("feedback")
        note, correction = (note or "").strip(), (correction or "").strip()
        if not fid or not self.engine.catalog.amend_feedback(fid, user_of(request), note=note, correction=correction):
            gr.Warning("Rate an answer first (the thumbs under it).")
            return gr.update()
        gr.Info("Thank you: the note is saved with your rating.")
        return gr.update(visible=False)
