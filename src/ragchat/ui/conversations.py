"""The conversation and source events: saved conversations (list, open, rename, delete) and the
sources panel (the passage of source [n], highlighted in its page).

Conversations live in the catalog (``engine.catalog``), owned by the signed-in user; a source's
document is shown only when ``ragchat.core.access`` says this user may read it.
"""

from __future__ import annotations

import gradio as gr

from ragchat.core import access
from ragchat.ui import pageview, render
from ragchat.ui.session import new_state, user_of


class ConversationCallbacks:
    """Conversations and sources; part of ``WebApp`` (``engine``)."""

    def conversation_choices(self, request: gr.Request | None) -> list[tuple[str, str]]:
        return [(c.title, c.id) for c in self.engine.catalog.conversations(owner=user_of(request))]

    def conversation_list(self, request: gr.Request | None = None) -> list[dict]:
        """Saved conversations as JSON, newest first."""
        return [{"id": c.id, "title": c.title, "updated": c.updated_at.isoformat()}
                for c in self.engine.catalog.conversations(owner=user_of(request))]

    def conversation_messages(self, cid: str, request: gr.Request | None = None) -> list[dict]:
        """The messages of one conversation as JSON: role, content, sources (cited), meta."""
        if not cid or self.engine.catalog.conversation(cid, owner=user_of(request)) is None:
            raise gr.Error("No such conversation.")
        return [{"role": m.role, "content": m.content, "sources": m.sources or [], "meta": m.meta or {}}
                for m in self.engine.catalog.messages(cid)]

    def _screen(self, state: dict, cid: str | None) -> list[dict]:
        """Chat messages of a conversation; records each answer's sources in state by index."""
        state["answers"] = {}
        if not cid:
            return []
        rows = self.engine.catalog.messages(cid)
        for i, m in enumerate(rows):
            if m.role == "assistant":
                state["answers"][i] = {"cited": m.sources or [], "retrieved": (m.meta or {}).get("retrieved") or m.sources or []}
        return render.chat_messages(rows)

    def _last_panel(self, state: dict) -> dict:
        if state["answers"]:
            return state["answers"][max(state["answers"])]
        return {"cited": [], "retrieved": []}

    def open_conversation(self, cid: str | None, state: dict, request: gr.Request):
        """Outputs: chatbot, state, sources panel, viewer, title box, browser memory."""
        state = dict(state or new_state())
        if cid and self.engine.catalog.conversation(cid, owner=user_of(request)) is None:
            cid = None
        state["cid"] = cid
        messages = self._screen(state, cid)
        state["panel"] = self._last_panel(state)
        title = next((t for t, i in self.conversation_choices(request) if i == cid), "")
        return (messages, state, render.sources_html(state["panel"]["cited"], state["panel"]["retrieved"]),
                render.viewer_placeholder(), gr.update(value=title), cid or "")

    def new_conversation(self, state: dict, request: gr.Request):
        """Outputs: chatbot, state, sources, viewer, title box, browser memory, conversation list."""
        state = {**new_state(), "retrieval": (state or {}).get("retrieval")}  # the session's saved search settings stay
        return ([], state, render.sources_html([], []), render.viewer_placeholder(), gr.update(value=""), "",
                gr.update(choices=self.conversation_choices(request), value=None))

    def rename_conversation(self, title: str, state: dict, request: gr.Request):
        cid = (state or {}).get("cid")
        title = (title or "").strip()
        if not cid:
            gr.Info("Ask a question first: a conversation is saved once it has one.")
        elif not title:
            gr.Info("Type a title first.")
        else:
            self.engine.catalog.rename_conversation(cid, title, owner=user_of(request))
        return gr.update(choices=self.conversation_choices(request), value=cid)

    def delete_conversation(self, state: dict, request: gr.Request):
        cid = (state or {}).get("cid")
        if cid:
            self.engine.catalog.delete_conversation(cid, owner=user_of(request))
        return self.new_conversation(state, request)

    def restore(self, remembered: str | None, state: dict, request: gr.Request):
        """Page load: reopen the conversation this browser had open, if it still exists."""
        opened = self.open_conversation(remembered or None, state, request)
        choices = self.conversation_choices(request)
        return (*opened, gr.update(choices=choices, value=opened[1]["cid"]))

    def show_source(self, n, state: dict, request: gr.Request | None = None) -> str:
        """The passage of source [n] of the answer in the panel, highlighted in its page."""
        panel = (state or {}).get("panel") or {}
        try:
            n = int(n)
        except (TypeError, ValueError):
            return render.viewer_placeholder()
        pool = list(panel.get("cited") or []) + list(panel.get("retrieved") or [])
        source = next((s for s in pool if int(s.get("id", -1)) == n), None)
        if source is None:
            return render.viewer_placeholder()
        doc = self.engine.catalog.get(source.get("doc_id", ""))
        if doc is not None and not access.can_read(doc, user_of(request)):
            doc = None
        page_text = self.engine.catalog.page_text(doc.id, source.get("page")) if doc is not None else None
        url = f"ragchat/original/{doc.id}" if doc is not None and doc.original else None
        picture = note = None
        if url and pageview.has_page_image(doc.kind, source.get("page")):
            picture = pageview.page_url(doc.id, source["page"], source.get("chunk_id"))
            views = getattr(self, "page_views", None)
            if views is not None:  # an encrypted PDF: say so, rather than show a broken picture
                note = views.problem(doc, self.engine.store / doc.original, source["page"])
        return render.passage_html(source, page_text, original_url=url, is_pdf=doc is not None and doc.kind == "pdf",
                                   page_image=None if note else picture, page_note=note)

    def source_clicked(self, state: dict, request: gr.Request, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        return self.show_source(data.get("source"), state, request)

    def select_message(self, state: dict, request: gr.Request, evt: gr.SelectData):
        """Clicking an answer shows its sources in the panel."""
        state = dict(state or new_state())
        index = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else None)
        panel = state.get("answers", {}).get(index)
        if panel is None:
            return state, gr.skip(), gr.skip()
        state["panel"] = panel
        return state, render.sources_html(panel["cited"], panel["retrieved"]), render.viewer_placeholder()
