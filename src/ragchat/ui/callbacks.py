"""What the page's events do: each callback reads the engine, or asks it to act, and returns what to show.

There is no retrieval, prompting or LLM logic here: answers come from ``engine.chat.stream``,
documents from ``engine.catalog`` and ingestion goes through ``IngestJobs`` to
``engine.ingestor``. Callbacks return plain values (lists, strings, dicts) or Gradio updates;
``layout.py`` wires them to components.

Per-tab state is one dict (a ``gr.State``): the open conversation id, the sources of every answer
on screen (by chatbot index) and the sources in the panel. Conversations themselves live in the
catalog, so they survive restarts and two tabs never share an unsaved history.

The signed-in user (``request.username`` once login is configured) owns the conversations and
uploads of a session. What they may see is decided by ``ragchat.core.access`` (through ``visible`` and
``engine.filters_for``), never here.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from ragchat.core import access
from ragchat.answer.chat import ChatOptions, cite
from ragchat.core.errors import RagchatError
from ragchat.retrieve import scope
from ragchat.retrieve.search import Filters
from ragchat.ui import pageview, render
from ragchat.ingest.jobs import IngestJobs

log = logging.getLogger(__name__)

AUTO = "auto"
ALL = "all"
STREAM_INTERVAL_S = 0.05  # at most ~20 screen updates a second while tokens stream
STOP_TICK_S = 0.25  # while the engine is silent (reading the prompt), "stop" acts within this

WELCOME = """### Welcome to ragchat 👋
Chat with your own documents, privately, on this machine.

1. **Add documents**: drop PDF, TXT, Markdown or HTML files on *Add documents* (or anywhere on this page).
2. Wait until each file says **done**; you can chat meanwhile.
3. **Ask a question.** Answers cite their sources like [1]. Click a source to read the passage in its page."""

READY = """### Ask about your {n} document{s}
Answers cite their sources like [1]. Click a source on the right to read the passage in its page."""


def new_state() -> dict:
    return {"cid": None, "answers": {}, "panel": {"cited": [], "retrieved": []}}


def user_of(request: gr.Request | None) -> str | None:
    """The signed-in user, or None when the app runs without login."""
    if request is None:
        return None
    return getattr(request, "username", None) or None


def session_key(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request is not None else "anonymous"


class WebApp:
    def __init__(self, engine, jobs: IngestJobs | None = None):
        self.engine = engine
        self.settings = engine.settings
        self.jobs = jobs or IngestJobs(engine)
        self.watchers = None  # ragchat.ingest.watch.Watchers when the server watches folders (server.build_app)

    # ==== documents ============================================================================

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

    # ==== model ===============================================================================

    def default_model(self) -> str:
        return AUTO

    def model_choices(self) -> list[tuple[str, str]]:
        provider = self.settings.llm.provider
        auto = {"auto": "Automatic: Ollama when it runs, else built-in",
                "ollama": f"Ollama: {self.settings.llm.ollama_model} (configured)",
                "llamacpp": "Built-in model (configured)"}[provider]
        choices = [(auto, AUTO)] + [(label, value) for value, label in self.engine.builtin_models()]
        try:
            models = self.engine.ollama_models()
        except Exception:  # listing models must never break the page
            models = []
        choices += [(f"Ollama: {m}", m) for m in models]
        return choices

    def _options(self, model: str | None, temperature, top_k, system_prompt: str | None) -> ChatOptions:
        prompt = (system_prompt or "").strip()
        return ChatOptions(
            top_k=int(top_k) if top_k else None,
            temperature=float(temperature) if temperature is not None else None,
            system_prompt=prompt if prompt and prompt != self.settings.chat.system_prompt.strip() else None,
            model=None if not model or model == AUTO else model,
        )

    def model_status(self, model: str | None, temperature=None):
        """Outputs: the model badge and the notice (Ollama down, model missing)."""
        options = self._options(model, temperature, None, None)
        try:
            llm = self.engine.llm_for(options)
        except RagchatError as exc:
            return (render_badge(None, None), notice_update(f"{exc}. Pick the built-in model to keep chatting."))
        return self._badge(options, llm.provider, llm.model_name), notice_update(llm.notice)

    def _badge(self, options: ChatOptions, provider: str | None, model: str | None) -> str:
        if not provider:
            return render_badge(None, None)
        return render_badge(provider, *self.engine.describe_llm(options.model, provider, model or ""))

    def refresh_models(self, model: str | None):
        choices = self.model_choices()
        values = {v for _, v in choices}
        value = model if model in values else AUTO
        return (gr.update(choices=choices, value=value), *self.model_status(value))

    # ==== conversations ======================================================================

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
        state = new_state()
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

    # ==== chat ================================================================================

    def _filters(self, scope, request) -> Filters:
        """The "Search in" choice as Filters (chosen documents plus chosen collections, as a union),
        narrowed by the engine to what this person may read."""
        picked = [s for s in (scope or []) if s and s != ALL]
        chosen = Filters()
        if picked:
            collections = {p[4:] for p in picked if p.startswith("col:")}
            wanted = {p[4:] for p in picked if p.startswith("doc:")}
            chosen = Filters(doc_ids=[d.id for d in self.visible(request) if d.id in wanted or d.collection in collections])
        return self.engine.filters_for(user_of(request), chosen)

    def ask(self, message: str, state: dict, scope, model, temperature, top_k, system_prompt, request: gr.Request):
        """Stream an answer. Outputs: textbox, chatbot, state, sources, conversation list, badge, notice."""
        question = (message or "").strip()
        state = dict(state or new_state())
        if not question:
            yield (gr.update(), gr.skip(), state, gr.skip(), gr.skip(), gr.skip(), gr.skip())
            return
        yield from self._answer(question, state, scope, model, temperature, top_k, system_prompt, request)

    def regenerate(self, state: dict, scope, model, temperature, top_k, system_prompt, request: gr.Request):
        state = dict(state or new_state())
        cid = state.get("cid")
        question = self.engine.catalog.delete_last_exchange(cid) if cid else None
        if not question:
            gr.Info("There is no answer to regenerate yet.")
            yield (gr.update(), gr.skip(), state, gr.skip(), gr.skip(), gr.skip(), gr.skip())
            return
        yield from self._answer(question, state, scope, model, temperature, top_k, system_prompt, request)

    def _answer(self, question, state, scope, model, temperature, top_k, system_prompt, request) -> Iterator[tuple]:
        catalog = self.engine.catalog
        user = user_of(request)
        cid = state.get("cid")
        if not cid or catalog.conversation(cid, owner=user) is None:
            cid = catalog.create_conversation(_title(question), owner=user)
            state["cid"] = cid
        history = [(m.role, m.content) for m in catalog.messages(cid)]
        filters = self._filters(scope, request)
        options = self._options(model, temperature, top_k, system_prompt)
        # Start the engine first: retrieval and the prompt then overlap the bookkeeping and the first update.
        pump = _Pump(self.engine.chat.stream(question, history, filters, options))
        screen: list[dict] = []
        shown: list[dict] = []
        frame = _Frame(state)

        def show(text: str) -> list[dict]:
            nonlocal shown
            shown = screen + [{"role": "assistant", "content": text}]
            return shown

        parts: list[str] = []
        answer = None
        saved = False
        last = 0.0
        try:
            catalog.add_message(cid, "user", question)
            screen = self._screen(state, cid)
            index = len(screen)  # where the answer goes
            yield frame(show("*Searching your documents…*"), message="", sources=render.sources_html([], [], pending=True),
                        conversations=gr.update(choices=self.conversation_choices(request), value=cid))
            for event in pump:
                if event is None:  # nothing new yet: a short step, so that "stop" acts soon
                    yield frame(shown)
                    continue
                if event.answer is not None:
                    answer = event.answer
                if event.kind == "status":
                    status = f"*{event.text[:1].upper()}{event.text[1:]}…*"
                    if not parts and status != shown[-1]["content"]:
                        yield frame(show(status))
                elif event.kind == "sources":
                    retrieved = [s.as_dict() for s in answer.retrieved]
                    yield frame(shown, sources=render.sources_html([], retrieved, pending=True),
                                badge=self._badge(options, answer.provider, answer.model), notice=notice_update(answer.notice))
                elif event.kind == "token":
                    parts.append(event.text)
                    now = time.monotonic()
                    if now - last >= STREAM_INTERVAL_S:
                        last = now
                        yield frame(show(render.safe_markdown("".join(parts)) + " ▍"))
                elif event.kind == "done":
                    final = event.answer
                    cited = [s.as_dict() for s in final.sources]
                    retrieved = [s.as_dict() for s in final.retrieved]
                    meta = {"provider": final.provider, "model": final.model, "partial": final.partial,
                            "error": final.error, "notice": final.notice, "question": final.question,
                            "retrieved": retrieved}
                    catalog.add_message(cid, "assistant", final.text, sources=cited, meta=meta)
                    saved = True
                    state["answers"][index] = state["panel"] = {"cited": cited, "retrieved": retrieved}
                    content = render.answer_markdown(final.text, partial=final.partial, error=final.error)
                    changes = dict(badge=self._badge(options, final.provider, final.model),
                                   notice=notice_update(final.notice)) if final.provider else {}
                    yield frame(show(content), sources=render.sources_html(cited, retrieved),
                                conversations=gr.update(choices=self.conversation_choices(request), value=cid), **changes)
        except Exception as exc:  # never leave the page hanging on an unexpected engine error
            log.exception("chat failed")
            text = "".join(parts).strip()
            reason = str(exc) if isinstance(exc, RagchatError) else f"something went wrong: {type(exc).__name__}: {exc}"
            catalog.add_message(cid, "assistant", text or reason, sources=[],
                                meta={"partial": bool(text), "error": reason})
            saved = True
            yield frame(show(render.answer_markdown(text or reason, partial=bool(text), error=reason)))
        finally:
            pump.stop()
            if not saved:  # stopped by the person: keep what was said, marked partial
                retrieved_sources = list(answer.retrieved) if answer is not None else []
                text, cited_sources = cite("".join(parts).strip(), retrieved_sources)
                catalog.add_message(cid, "assistant", text, sources=[s.as_dict() for s in cited_sources],
                                    meta={"partial": True, "retrieved": [s.as_dict() for s in retrieved_sources],
                                          "provider": getattr(answer, "provider", ""), "model": getattr(answer, "model", ""),
                                          "question": getattr(answer, "question", question)})

    # ==== sources ===========================================================================

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
        picture = None
        if url and pageview.has_page_image(doc.kind, source.get("page")):
            picture = pageview.page_url(doc.id, source["page"], source.get("chunk_id"))
        return render.passage_html(source, page_text, original_url=url, is_pdf=doc is not None and doc.kind == "pdf",
                                   page_image=picture)

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


_UNSET = object()  # an output this answer has not set yet


class _Frame:
    """One update of the answer event: textbox, chatbot, state, sources, conversation list, badge, notice.

    Gradio treats a ``gr.skip()`` output as a property update and builds that component again (about
    0.7 ms each, on the cores llama.cpp is using, for every streamed update; bench/gradio_floor.py).
    So an output this answer has already set is sent again as the same plain value, which costs next
    to nothing and reaches the page as an empty diff; only outputs not set yet are skipped. The
    textbox is never sent again, so that what the person types meanwhile stays."""

    def __init__(self, state: dict):
        self.state = state
        self.sent: dict[str, Any] = {}

    def __call__(self, chatbot: list[dict], message=_UNSET, **changes) -> tuple:
        for name, value in changes.items():
            self.sent[name] = value.get("value") if isinstance(value, dict) and "__type__" in value else value
        out = {name: changes.get(name, self.sent.get(name, _UNSET)) for name in ("sources", "conversations", "badge", "notice")}
        return (gr.skip() if message is _UNSET else message, chatbot, self.state,
                *(gr.skip() if v is _UNSET else v for v in out.values()))


_END = object()


class _Pump:
    """Runs the engine's answer stream in a thread, from its creation on, and hands its events over a queue.

    Gradio can only stop a generator between two of its steps, and one step of the engine's stream
    (reading a long prompt) can take seconds on a small CPU. Iterating this pump yields None every
    ``tick`` seconds while nothing new arrived, so every step is short and "stop" acts within a tick;
    ``stop()`` then closes the engine's stream at its next event (it marks the answer partial and
    frees its LLM slot). Each tick is an update that Gradio processes on the cores llama.cpp is
    using, so ticks are few (see STOP_TICK_S) and cheap (see ``_answer``).
    """

    def __init__(self, events: Iterator, tick: float = STOP_TICK_S):
        self._events = events
        self._tick = tick
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        ctx = contextvars.copy_context()
        threading.Thread(target=ctx.run, args=(self._run,), name="ragchat-answer", daemon=True).start()

    def _run(self) -> None:
        try:
            for event in self._events:
                self._queue.put(event)
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the reader
            self._queue.put(exc)
        finally:
            self._events.close()
            self._queue.put(_END)

    def __iter__(self) -> Iterator:
        while True:
            try:
                item = self._queue.get(timeout=self._tick)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stop.set()


def render_badge(provider: str | None, model: str | None, picked: str = "") -> str:
    """The header's badge: which model answers; ``picked``: why it was picked automatically, if it was."""
    if not provider:
        return '<div class="rc-badge rc-badge-off">No model available</div>'
    kind = {"llamacpp": "built-in", "openai": "OpenAI-compatible server"}.get(provider, "Ollama")
    import html

    title = "The model that writes the answers"
    if picked:
        kind += ", picked automatically"
        title += f": {picked}"
    return (f'<div class="rc-badge" title="{html.escape(title)}"><span class="rc-dot"></span>'
            f'Answering with <b>{html.escape(model or "")}</b> <span class="rc-kind">{kind}</span></div>')


def notice_update(notice: str | None):
    if not notice:
        return gr.update(value="", visible=False)
    return gr.update(value=f"⚠️ {render.safe_markdown(notice)}", visible=True)


def _forget_uploads(paths) -> None:
    """Delete Gradio's cached copies of uploads once they are copied for ingestion, so that the
    files are not left behind in Gradio's cache (where its file route could serve them)."""
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    for p in paths:
        path = Path(p).resolve()
        if path.is_relative_to(cache) and path != cache:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir() if path.parent != cache else None
            except OSError:
                pass  # not empty


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= 60 else text[:59].rstrip() + "…"
