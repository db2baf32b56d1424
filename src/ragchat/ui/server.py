"""The web server: a FastAPI app that we own, with the Gradio page mounted on it.

Owning the FastAPI app keeps every HTTP concern in one place: routes of our own (the stored
originals behind a document id, a health check, the HTTP API of ragchat.api under ``/api/v1`` and
``/v1``, described at ``/api/docs``), and login, CORS and Host checks
(ragchat.auth.install_web_security), which cover the Gradio routes too.

Endpoints a Gradio client can call (``gradio_client.Client(url).predict(..., api_name=...)``):

======================  ==========================================================================
``/ask``                stream an answer (message, scope, model, temperature, top_k, system prompt)
``/regenerate``         drop the last answer and answer its question again
``/stop``               (page only) cancels the answer being streamed; clients use ``job.cancel()``
``/show_source``        the passage of source [n] of the answer in the panel, highlighted (HTML)
``/upload``             files -> ingestion in the background (poll ``/ingest_status``)
``/library``            refresh the library table and pickers
``/delete_documents``   delete documents by id; ``/reindex_documents``, ``/rebuild_index``
``/new_chat``           start a conversation; ``/open_chat``, ``/rename_chat``, ``/delete_chat``
``/models``             list the models again and show which one answers
``/list_documents``     JSON: the library
``/ingest_status``      JSON: {"active": bool, "files": [{source, stage, done, total, message, line}]}
``/list_conversations`` JSON: saved conversations, newest first
``/conversation_messages``  JSON: one conversation's messages with their cited sources
======================  ==========================================================================

Plain HTTP routes: ``GET /ragchat/original/{doc_id}`` (the stored original, PDFs inline so the
browser opens them at ``#page=N``), ``GET /ragchat/page/{doc_id}/{page}.png?chunk=ID&w=WIDTH`` (a
page of a PDF or image drawn as PNG with a chunk highlighted; the same access rule), ``GET /ragchat/health`` and ``GET /ragchat/status``
(``{"models": "loading" | "ready" | "failed"}``).

Start-up: the page is served as soon as the web server runs. The embedding model, Chroma, the BM25
index and jieba load afterwards in a background thread (``Warmup``), and the page says so meanwhile.
The LLM loads on the first question.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ragchat import auth
from ragchat.api import install_api
from ragchat.core import access
from ragchat.core.errors import LoadError
from ragchat.core.settings import Settings
from ragchat.core.text import analyze
from ragchat.engine import Engine
from ragchat.ingest.queue import QueueWorker
from ragchat.ingest.watch import Watchers
from ragchat.ui.layout import build_blocks
from ragchat.ui.pageview import DEFAULT_WIDTH, PageViews, has_page_image
from ragchat.ui.style import CSS, HEAD, theme
from ragchat.ui.webapp import WebApp

log = logging.getLogger(__name__)

QUEUE_CONCURRENCY = 8  # default per event; chat events have their own, larger limit (layout.py)
_DOC_ID = re.compile(r"[0-9a-f]{32}")


def build_app(engine, *, workdir: Path | None = None, warmup: "Warmup | None" = None, watchers: Watchers | None = None):
    """(FastAPI app, gr.Blocks) for an open Engine. The caller runs the app and closes the engine.
    Uploads wait in ``workdir``. With a warmup, the page shows its progress; with watchers, the
    library shows the progress of the files they sync."""
    settings: Settings = engine.settings
    jobs = engine.start_jobs(workdir)  # one ingestion for the page and the HTTP API
    page_views = PageViews(engine.catalog, engine.store, settings.ingest)
    webapp = WebApp(engine, jobs, watchers, page_views)
    blocks = build_blocks(webapp, warmup)
    blocks.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=512)

    app = FastAPI(title="ragchat", summary="Chat with your own documents: REST and OpenAI-compatible API (docs/API.md)",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json",
                  swagger_ui_oauth2_redirect_url=None)
    app.state.engine = engine
    app.state.webapp = webapp
    # The HTTP API (ragchat.api): /api/v1/... and the OpenAI-compatible /v1/..., over the same
    # engine and ingestion jobs as the page, behind the same login.
    install_api(app, engine, jobs)
    _install_status_routes(app, warmup)
    app.state.page_views = _install_document_routes(app, engine, page_views)

    # Login (when users exist), CORS and Host checks in front of every route, Gradio's included.
    security = auth.install_web_security(app, settings, engine.catalog)
    app = gr.mount_gradio_app(
        app, blocks, path="/", theme=theme(), css=CSS, head=HEAD, footer_links=[], run_history=False,
        max_file_size=settings.ingest.max_file_mb * 1_000_000, show_error=True, ssr_mode=False,
        server_name=settings.server.host, server_port=settings.server.port,
        auth_dependency=security.auth_dependency if security.login_required else None,
    )
    return app, blocks


def _install_status_routes(app: FastAPI, warmup: "Warmup | None") -> None:
    @app.get("/ragchat/health")
    def health() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/ragchat/status")
    def status() -> JSONResponse:
        return JSONResponse({"models": warmup.state if warmup else "ready"})


def _install_document_routes(app: FastAPI, engine, page_views: PageViews) -> PageViews:
    """The stored originals and their page images, behind the access rules; returns the page views
    (the caller closes them)."""

    def readable_original(doc_id: str, request: Request):
        """(document, path of its stored original), or 404: for an unknown document and for one this
        request may not read alike, so that a 404 tells nobody that a document exists."""
        if not _DOC_ID.fullmatch(doc_id):
            raise HTTPException(404)
        info = engine.catalog.get(doc_id)
        if info is None or not info.original or not can_read(request, info):
            raise HTTPException(404)
        files = (engine.store / "files").resolve()
        path = (engine.store / info.original).resolve()
        if not path.is_relative_to(files) or not path.is_file():
            raise HTTPException(404)
        return info, path

    @app.get("/ragchat/original/{doc_id}")
    def original(doc_id: str, request: Request):
        """The stored original of a document, for the passage viewer's "open the PDF at page N"."""
        info, path = readable_original(doc_id, request)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"}
        name = Path(info.source).name
        if info.kind == "pdf":
            return FileResponse(path, media_type="application/pdf", filename=name, content_disposition_type="inline",
                                headers=headers)
        # Never let a stored HTML file run as a page of this origin: plain text, sandboxed.
        headers["Content-Security-Policy"] = "sandbox"
        return FileResponse(path, media_type="text/plain; charset=utf-8", filename=name,
                            content_disposition_type="inline", headers=headers)

    @app.get("/ragchat/page/{doc_id}/{page}.png")
    def page_image(doc_id: str, page: str, request: Request, chunk: str | None = None, w: int | None = None):
        """A page of a PDF or image document as PNG, `w` pixels wide, with chunk `chunk` of that
        page highlighted (ragchat.ui.pageview). The same access rule as the original's."""
        info, path = readable_original(doc_id, request)
        if not page.isdigit() or not has_page_image(info.kind, int(page)):
            raise HTTPException(404)
        number = int(page)
        row = engine.catalog.chunk(chunk) if chunk else None
        if row is not None and (row.doc_id != info.id or row.page != number):
            row = None  # a chunk of another page, or gone since (the document changed): the page alone
        try:
            data = page_views.png(info, path, number, w or DEFAULT_WIDTH, row)
        except LoadError as exc:
            raise HTTPException(404, detail=f"this page cannot be shown: {exc}") from None
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"}
        return Response(data, media_type="image/png", headers=headers)

    return page_views


def can_read(request, info) -> bool:
    """Whether this request may read a document's original (ragchat.core.access decides). Without login
    there is no user and only shared documents are served; the login middleware (ragchat.auth)
    puts the signed-in user in ``request.state.user``."""
    return access.can_read(info, getattr(request.state, "user", None))


class Warmup:
    """Loads what the first question needs (the embedding model, Chroma, the BM25 index, jieba) in a
    background thread, then finishes any ingestion a crash interrupted. ``state`` is "loading",
    "ready" or "failed"; on failure the page still works and the error shows on first use."""

    def __init__(self, engine, then=None):
        self.engine = engine
        self.state = "loading"
        self.first_start = False  # the multilingual embedder is being prepared (ragchat.embed.gemma), once per user
        self.then = then  # called once ready and recovered (starts the watched folders)

    def start(self) -> None:
        threading.Thread(target=self._run, name="ragchat-warmup", daemon=True).start()

    def _run(self) -> None:
        engine = self.engine
        try:
            self.first_start = not getattr(engine.embedder, "prepared", True)
            engine.embedder.load()
            engine.vectors.open()
            engine.lexical
            analyze("中文 text")  # jieba's dictionary, for the first Chinese question
            engine.retriever
            engine.ingestor
            self.state = "ready"
            if not engine.shared and engine.catalog.unfinished():
                results = engine.recover()
                log.warning("resumed %d interrupted file(s)", len(results))
            if self.then is not None:
                self.then()
        except Exception:
            log.exception("warm-up failed")
            if self.state == "loading":
                self.state = "failed"


def serve(settings: Settings) -> None:
    """Start the web app on settings.server.host:port and block until it is stopped."""
    import uvicorn

    engine = Engine(settings)
    try:
        # Refuse a non-loopback bind without login before anything is served.
        auth.require_auth_for_bind(settings.server.host, settings, auth.user_count(engine.catalog))
        for note in engine.check_services():  # raises, in one clear line, when the Chroma server is away
            print(f"ragchat: note: {note}", file=sys.stderr, flush=True)
        worker = QueueWorker(engine).start() if engine.shared and settings.shared.worker else None
        # Watched folders (settings.watch.folders) start once the models are loaded and crashed
        # ingestions recovered; their progress shows in the library (ragchat.ingest.watch).
        watchers = Watchers(engine, settings.watch) if settings.watch.folders else None
        warmup = Warmup(engine, then=watchers.start if watchers else None)
        app, _ = build_app(engine, warmup=warmup, watchers=watchers)
        warmup.start()
        url = f"http://{settings.server.host}:{settings.server.port}"
        print(f"ragchat is running at {url}  (store: {settings.store}; Ctrl+C to stop)", flush=True)
        uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level="warning",
                    timeout_graceful_shutdown=2)
    finally:
        if locals().get("watchers") is not None:
            watchers.stop()
        if locals().get("worker") is not None:
            worker.stop()
        views = getattr(getattr(locals().get("app"), "state", None), "page_views", None)
        if views is not None:
            views.close()
        engine.close()
