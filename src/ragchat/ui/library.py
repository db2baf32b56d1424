"""The library and ingestion events: list, upload, delete and re-index documents, and follow the
progress of background ingestion (``IngestJobs``) and of the watched folders.

Nothing here parses or indexes: documents come from ``engine.catalog`` (through
``ragchat.retrieve.scope``, which applies the access rules) and work goes to the ingestion jobs.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from ragchat.core import access
from ragchat.retrieve import scope
from ragchat.ui import render
from ragchat.ui.session import ALL, session_key, user_of

WELCOME = """### Welcome to ragchat 👋
Chat with your own documents, privately, on this machine.

1. **Add documents**: drop PDF, TXT, Markdown or HTML files on *Add documents* (or anywhere on this page).
2. Wait until each file says **done**; you can chat meanwhile.
3. **Ask a question.** Answers cite their sources like [1]. Click a source to read the passage in its page."""

READY = """### Ask about your {n} document{s}
Answers cite their sources like [1]. Click a source on the right to read the passage in its page."""


class LibraryCallbacks:
    """The library's events; part of ``WebApp`` (``engine``, ``settings``, ``jobs``, ``watchers``)."""

    def visible(self, request: gr.Request | None) -> list:
        """Documents this person may see: shared ones and their own private ones (ragchat.core.access)."""
        return scope.visible_documents(self.engine.catalog, user_of(request))

    def document_choices(self, docs) -> list[tuple[str, str]]:
        return [(f"{d.source}  ·  {d.collection}", d.id) for d in docs]

    def scope_choices(self, docs) -> list[tuple[str, str]]:
        searchable = [d for d in docs if d.status == "done"]
        collections = sorted({d.collection for d in searchable})
        choices = [("Search in all documents", ALL)]
        if len(collections) > 1:
            choices += [(f"📁 {c} (collection)", f"col:{c}") for c in collections]
        choices += [(f"📄 {d.source}", f"doc:{d.id}") for d in searchable]
        return choices

    def welcome(self, docs) -> str:
        n = sum(1 for d in docs if d.status == "done")
        return READY.format(n=n, s="" if n == 1 else "s") if n else WELCOME

    def library_view(self, request: gr.Request | None = None, selected: list[str] | None = None):
        """Outputs: library table, document picker, search scope picker, collection picker, chatbot placeholder."""
        docs = self.visible(request)
        ids = {d.id for d in docs}
        keep = [s for s in (selected or []) if s in ids]
        collections = sorted({d.collection for d in docs} | {self.settings.collection})
        return (
            self.library_table(docs, request),
            gr.update(choices=self.document_choices(docs), value=keep),
            gr.update(choices=self.scope_choices(docs)),
            gr.update(choices=collections),
            gr.update(placeholder=self.welcome(docs)),
        )

    def list_documents(self, request: gr.Request | None = None) -> list[dict]:
        """The library as JSON: one dict per document. A file a watched folder is syncing has
        "progress" (e.g. "embedding 3/8"); one not in the catalog yet is listed as "indexing"."""
        live = self.watched_progress(request)
        out = []
        for d in self.visible(request):
            row = d.summary()
            if d.id in live:
                row["progress"] = render.progress_line(live.pop(d.id))
            out.append(row)
        return out + [{"id": p["id"], "name": p["source"], "collection": p["collection"], "pages": 0, "chunks": 0,
                       "size": 0, "added": None, "status": "indexing", "error": None, "progress": render.progress_line(p)}
                      for p in live.values()]

    def watched_progress(self, request: gr.Request | None) -> dict[str, dict]:
        """Files the watched folders are syncing now, that this person may see, by document id."""
        if self.watchers is None:
            return {}
        user = user_of(request)
        return {p["id"]: p for p in self.watchers.progress() if access.can_read_collection(p["collection"], user)}

    def library_table(self, docs, request: gr.Request | None) -> list[list]:
        """The library's rows, with the progress of files the watched folders are syncing."""
        rows = render.library_rows(docs)
        live = self.watched_progress(request)
        for row, d in zip(rows, docs):
            if d.id in live:
                row[-1] = f"{render.progress_line(live.pop(d.id))} (watched folder)"
        return rows + [[p["source"], p["collection"], "", "", "", "", f"{render.progress_line(p)} (watched folder)"]
                       for p in live.values()]

    def watch_tick(self, selected, seen: int, request: gr.Request | None = None):
        """Timer tick while folders are watched: the library again, only when something changed."""
        version = self.watchers.version if self.watchers is not None else 0
        if version == seen:
            return (*(gr.skip() for _ in range(5)), seen)
        return (*self.library_view(request, selected), version)

    def upload(self, files, collection: str | None, request: gr.Request):
        """Start ingesting uploaded files in the background; the chat stays usable."""
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            return gr.update(value=None), self.progress_panel(request), gr.update()
        collection = (collection or "").strip() or self.settings.collection
        self.jobs.submit_upload(session_key(request), paths, collection, owner=user_of(request))
        _forget_uploads(paths)
        return gr.update(value=None), self.progress_panel(request), gr.Timer(active=True)

    def progress_panel(self, request: gr.Request | None) -> str:
        return render.progress_html(self.jobs.rows(session_key(request)))

    def ingest_status(self, request: gr.Request | None = None) -> dict:
        """This session's ingestion, as JSON: {"active": bool, "files": [{source, stage, done, total, message}]}."""
        key = session_key(request)
        rows = self.jobs.rows(key)
        for r in rows:
            r["line"] = render.progress_line(r)
        return {"active": self.jobs.active(key), "files": rows}

    def poll(self, selected, request: gr.Request):
        """Timer tick while files ingest: progress, and the library once something finished."""
        key = session_key(request)
        active = self.jobs.active(key)
        return (self.progress_panel(request), *self.library_view(request, selected), gr.Timer(active=active))

    def forget_session(self, request: gr.Request) -> None:
        """The tab was closed: drop its finished ingestion rows (running work goes on)."""
        self.jobs.clear_finished(session_key(request))

    def clear_progress(self, request: gr.Request):
        self.jobs.clear_finished(session_key(request))
        return self.progress_panel(request)

    def _selected_docs(self, selected, request):
        wanted = set(selected or [])
        return [d for d in self.visible(request) if d.id in wanted]

    def delete_documents(self, selected, request: gr.Request):
        """Delete the chosen documents: at once when no ingestion runs, else right after it."""
        docs = self._selected_docs(selected, request)
        if not docs:
            gr.Info("Choose one or more documents first (click a row or use the list).")
            return (self.progress_panel(request), *self.library_view(request, selected), gr.update())
        removed, failed, queued = self.jobs.remove_now_or_later(session_key(request), docs)
        if queued is not None:
            gr.Info(f"Removing {len(docs)} document(s) after the upload that is running.")
            return (self.progress_panel(request), *self.library_view(request, []), gr.Timer(active=True))
        for d, reason in failed:
            gr.Warning(f"{d.source}: {reason}")
        gr.Info(f"Removed {removed} document(s).")
        return (self.progress_panel(request), *self.library_view(request, []), gr.update())

    def reindex_documents(self, selected, request: gr.Request):
        docs = self._selected_docs(selected, request)
        if not docs:
            gr.Info("Choose one or more documents first (click a row or use the list).")
            return (self.progress_panel(request), gr.update())
        self.jobs.submit_reindex(session_key(request), docs)
        return (self.progress_panel(request), gr.Timer(active=True))

    def rebuild_index(self, request: gr.Request):
        self.jobs.submit_rebuild(session_key(request))
        return (self.progress_panel(request), gr.Timer(active=True))

    def pick_row(self, selected, request: gr.Request, evt: gr.SelectData):
        """Clicking a library row adds (or removes) that document in the picker."""
        docs = self.visible(request)
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(docs):
            return gr.update()
        doc_id = docs[row].id
        chosen = list(selected or [])
        chosen = [c for c in chosen if c != doc_id] if doc_id in chosen else chosen + [doc_id]
        return gr.update(value=chosen)


def _forget_uploads(paths) -> None:
    """Delete Gradio's cached copies of uploads once they are copied for ingestion, so that the
    files are not left behind in Gradio's cache (where its file route could serve them)."""
    cache = Path(get_upload_folder()).resolve()
    for p in paths:
        path = Path(p).resolve()
        if path.is_relative_to(cache) and path != cache:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir() if path.parent != cache else None
            except OSError:
                pass  # not empty
