"""The chat events: ask, regenerate, and the model picker.

An answer comes from ``engine.chat.stream``, run in a worker thread (``BackgroundIterator``) so that
every step of the event is short and "stop" acts soon; ``engine.conversations`` saves the question
and the answer. What is here only turns the engine's events into screen updates (``_AnswerView``).
There is no retrieval, prompting or LLM logic here.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any, Iterator

import gradio as gr

from ragchat.answer.engine import ChatOptions
from ragchat.answer.sanitize import safe_markdown
from ragchat.core.errors import RagchatError
from ragchat.core.streams import BackgroundIterator
from ragchat.retrieve.search import Filters
from ragchat.ui import render
from ragchat.ui.session import ALL, AUTO, new_state, user_of

log = logging.getLogger(__name__)

STREAM_INTERVAL_S = 0.05  # at most ~20 screen updates a second while tokens stream
STOP_TICK_S = 0.25  # while the engine is silent (reading the prompt), "stop" acts within this


class ChatCallbacks:
    """The chat and the model picker; part of ``WebApp`` (``engine``, ``settings``)."""

    def default_model(self) -> str:
        return AUTO

    def model_choices(self) -> list[tuple[str, str]]:
        provider = self.settings.llm.provider
        auto = {"auto": "Automatic: Ollama when it runs, else built-in",
                "ollama": f"Ollama: {self.settings.llm.ollama_model} (configured)",
                "llamacpp": "Built-in model (configured)",
                "openai": f"OpenAI-compatible server: {self.settings.llm.model or 'its model'} (configured)"}[provider]
        choices = [(auto, AUTO)] + [(label, value) for value, label in self.engine.builtin_models()]
        try:
            models = self.engine.ollama_models()
        except Exception:  # listing models must never break the page
            models = []
        choices += [(f"Ollama: {m}", m) for m in models]
        return choices

    def _options(self, model: str | None, temperature, top_k, system_prompt: str | None,
                 retrieval: dict | None = None) -> ChatOptions:
        """retrieval: the mode and fusion weight saved from the retrieval test tab, for this session."""
        prompt = (system_prompt or "").strip()
        retrieval = retrieval or {}
        return ChatOptions(
            top_k=int(top_k) if top_k else None,
            temperature=float(temperature) if temperature is not None else None,
            system_prompt=prompt if prompt and prompt != self.settings.chat.system_prompt.strip() else None,
            model=None if not model or model == AUTO else model,
            mode=retrieval.get("mode") or None,
            weight=retrieval.get("weight"),
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
        conversations = self.engine.conversations
        cid, history = conversations.ask(state.get("cid"), question, user_of(request))
        state["cid"] = cid
        options = self._options(model, temperature, top_k, system_prompt, state.get("retrieval"))
        # Start the engine first: retrieval and the prompt then overlap the bookkeeping and the first update.
        # Gradio can only stop a generator between two of its steps, and one step of the engine (reading a
        # long prompt) can take seconds: the events come every STOP_TICK_S at least (None: nothing new).
        events = BackgroundIterator(self.engine.chat.stream(question, history, self._filters(scope, request), options),
                                    tick=STOP_TICK_S, name="ragchat-answer")
        view = _AnswerView(self, state, options, request, cid)
        try:
            conversations.save_question(cid, question)
            yield view.start()
            for event in events:
                update = view.update(event)
                if update is not None:
                    yield update
        except Exception as exc:  # never leave the page hanging on an unexpected engine error
            log.exception("chat failed")
            yield view.failed(exc)
        finally:
            events.close()  # stopped by the person: the engine's stream ends at its next event, freeing its LLM slot
            if not view.saved:  # keep what was said, marked partial
                conversations.save_stopped(cid, view.text(), view.answer, question)


class _AnswerView:
    """The screen updates of one answer, from the engine's events; saves the answer once it is done."""

    def __init__(self, app: ChatCallbacks, state: dict, options: ChatOptions, request, cid: str):
        self.app, self.state, self.options, self.request, self.cid = app, state, options, request, cid
        self.frame = _Frame(state)
        self.screen: list[dict] = []
        self.shown: list[dict] = []
        self.parts: list[str] = []
        self.answer = None
        self.saved = False
        self.index = 0  # where the answer goes in the chatbot
        self.last = 0.0

    def text(self) -> str:
        return "".join(self.parts).strip()

    def show(self, content: str) -> list[dict]:
        self.shown = self.screen + [{"role": "assistant", "content": content}]
        return self.shown

    def conversation_list(self):
        return gr.update(choices=self.app.conversation_choices(self.request), value=self.cid)

    def start(self) -> tuple:
        self.screen = self.app._screen(self.state, self.cid)
        self.index = len(self.screen)
        return self.frame(self.show("*Searching your documents…*"), message="",
                          sources=render.sources_html([], [], pending=True), conversations=self.conversation_list())

    def update(self, event) -> tuple | None:
        if event is None:  # nothing new yet: a short step, so that "stop" acts soon
            return self.frame(self.shown)
        if event.answer is not None:
            self.answer = event.answer
        if event.kind == "status":
            status = f"*{event.text[:1].upper()}{event.text[1:]}…*"
            if not self.parts and status != self.shown[-1]["content"]:
                return self.frame(self.show(status))
        elif event.kind == "sources":
            retrieved = [s.as_dict() for s in self.answer.retrieved]
            return self.frame(self.shown, sources=render.sources_html([], retrieved, pending=True),
                              badge=self.app._badge(self.options, self.answer.provider, self.answer.model),
                              notice=notice_update(self.answer.notice))
        elif event.kind == "token":
            self.parts.append(event.text)
            now = time.monotonic()
            if now - self.last >= STREAM_INTERVAL_S:
                self.last = now
                return self.frame(self.show(safe_markdown("".join(self.parts), bare_urls=True) + " ▍"))
        elif event.kind == "done":
            return self.done(event.answer)
        return None

    def done(self, final) -> tuple:
        cited, retrieved = self.app.engine.conversations.save_answer(self.cid, final)
        self.saved = True
        self.state["answers"][self.index] = self.state["panel"] = {"cited": cited, "retrieved": retrieved}
        content = render.answer_markdown(final.text, partial=final.partial, error=final.error)
        changes = dict(badge=self.app._badge(self.options, final.provider, final.model),
                       notice=notice_update(final.notice)) if final.provider else {}
        return self.frame(self.show(content), sources=render.sources_html(cited, retrieved),
                          conversations=self.conversation_list(), **changes)

    def failed(self, exc: Exception) -> tuple:
        text = self.text()
        reason = str(exc) if isinstance(exc, RagchatError) else f"something went wrong: {type(exc).__name__}: {exc}"
        self.app.engine.conversations.save_failure(self.cid, text, reason)
        self.saved = True
        return self.frame(self.show(render.answer_markdown(text or reason, partial=bool(text), error=reason)))


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


def render_badge(provider: str | None, model: str | None, picked: str = "") -> str:
    """The header's badge: which model answers; ``picked``: why it was picked automatically, if it was."""
    if not provider:
        return '<div class="rc-badge rc-badge-off">No model available</div>'
    kind = {"llamacpp": "built-in", "openai": "OpenAI-compatible server"}.get(provider, "Ollama")
    title = "The model that writes the answers"
    if picked:
        kind += ", picked automatically"
        title += f": {picked}"
    return (f'<div class="rc-badge" title="{html.escape(title)}"><span class="rc-dot"></span>'
            f'Answering with <b>{html.escape(model or "")}</b> <span class="rc-kind">{kind}</span></div>')


def notice_update(notice: str | None):
    if not notice:
        return gr.update(value="", visible=False)
    return gr.update(value=f"⚠️ {safe_markdown(notice, bare_urls=True)}", visible=True)
