"""The "Side by side" tab: one question, two set-ups (``answer.setups.Setup``), two answers streamed
together, a vote, and the win rates of the set-ups.

Each answer comes from ``engine.chat.stream`` in a worker thread (``BackgroundIterator``), both at
once when the LLM gate lets two generations run (``llm.max_concurrent`` of 2 or more), else one
after the other, which the page says. A column shows its answer, its sources, its first-token and
total time, and how many of its sentences no source supports (``answer.grounding``). In blind mode
the columns are "Answer 1" and "Answer 2" in a random order until the vote. Votes go to the
catalog (``catalog.add_vote``) under the signed-in user; the win-rate table shows the user's own
votes, or the team's to an admin. There is no retrieval, prompting or LLM logic here.
"""

from __future__ import annotations

import html
import logging
import random
import time
from typing import Iterator

import gradio as gr

from ragchat.answer.events import Answer, ChatEvent
from ragchat.answer.sanitize import safe_markdown
from ragchat.answer.setups import MODES, Setup
from ragchat.auth.users import is_admin
from ragchat.core.streams import BackgroundIterator
from ragchat.store.feedback import ALL
from ragchat.ui import render
from ragchat.ui.session import AUTO, user_of

log = logging.getLogger(__name__)

STREAM_INTERVAL_S = 0.05  # at most ~20 screen updates a second while tokens stream
TICK_S = 0.02  # how long one column's reader waits before looking at the other
COMPARE_CONCURRENCY = 16  # comparisons that may run at once; the LLM itself is bounded by engine.gate
WIN_HEADERS = ["Set-up", "Votes", "Wins", "Ties", "Losses", "Win rate"]
KIND = {"llamacpp": "built-in", "openai": "OpenAI-compatible server", "ollama": "Ollama"}


class _Column:
    """One set-up's answer as it streams: its text, sources, times and grounding."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.status = "Waiting…"
        self.parts: list[str] = []
        self.answer: Answer | None = None
        self.started = self.first = self.total = None
        self.events = None
        self.done = False

    def start(self, chat, question: str, filters) -> None:
        self.started = time.monotonic()
        self.status = "Searching your documents…"
        stream = chat.stream(question, (), filters, self.setup.options())
        self.events = BackgroundIterator(stream, tick=TICK_S, name="ragchat-compare")

    def step(self) -> bool:
        """Reads what came from the engine; returns whether anything changed."""
        if self.events is None or self.done:
            return False
        try:
            event = next(self.events)
        except StopIteration:
            self.finish()
            return True
        except Exception as exc:  # an unexpected engine error shows in its column, not as a broken page
            log.exception("side-by-side answer failed")
            self.answer = self.answer or Answer()
            self.answer.error = f"something went wrong: {type(exc).__name__}: {exc}"
            self.finish()
            return True
        return event is not None and self.feed(event)

    def feed(self, event: ChatEvent) -> bool:
        if event.answer is not None:
            self.answer = event.answer
        if event.kind == "status":
            self.status = f"{event.text[:1].upper()}{event.text[1:]}…"
        elif event.kind == "token":
            if self.first is None:
                self.first = time.monotonic() - self.started
            self.parts.append(event.text)
        elif event.kind == "done":
            self.finish()
        return True

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.total = time.monotonic() - self.started

    def close(self) -> None:
        if self.events is not None:
            self.events.close()

    def model_name(self, app) -> str:
        """The model that answers, for a person ("" until the engine has resolved it)."""
        a = self.answer
        if a is None or not a.provider:
            return ""
        return app.engine.describe_llm(self.setup.model, a.provider, a.model)[0]

    def title(self, app, letter: str, label: str | None) -> str:
        """``label``: "Answer 1" in blind mode (the set-up stays hidden), else None: the set-up is named."""
        if label:
            return f'<div class="rc-cmp-title"><b>{label}</b></div>'
        name = self.model_name(app)
        if name:
            name += f" ({KIND.get(self.answer.provider, self.answer.provider)})"
        parts = [name or self.setup.model or "Automatic", self.setup.mode, self.setup.top_k and f"{self.setup.top_k} sources"]
        return f'<div class="rc-cmp-title"><b>{letter}</b> · ' + " · ".join(html.escape(str(p)) for p in parts if p) + "</div>"

    def body(self) -> str:
        if self.done:
            a = self.answer or Answer()
            return render.answer_markdown(a.text or "".join(self.parts), partial=a.partial, error=a.error)
        if not self.parts:
            return f"*{self.status}*"
        return safe_markdown("".join(self.parts), bare_urls=True) + " ▍"

    def details(self) -> str:
        """Times, grounding and sources."""
        times = []
        if self.first is not None:
            times.append(f"first token {self.first:.1f} s")
        if self.done and self.total is not None:
            times.append(f"total {self.total:.1f} s")
        a = self.answer
        grounding = ""
        if self.done and a is not None and a.sources and not a.error:
            n = len(a.unsupported)
            grounding = ("✓ every checked sentence is supported by its sources" if not n else
                         f"⚠️ {n} sentence{'s' if n != 1 else ''} not supported by the documents")
        cited = [s.as_dict() for s in a.sources] if a and self.done else []
        retrieved = [s.as_dict() for s in a.retrieved] if a else []
        return (f'<div class="rc-cmp-meta">{" · ".join(times) or "&nbsp;"}</div>'
                f'<div class="rc-cmp-ground">{html.escape(grounding)}</div>'
                + render.sources_html(cited, retrieved, pending=not self.done))


def setup_of(model, mode, top_k, default_mode: str) -> Setup:
    """The pickers' values as a Setup (the settings' own mode and "0 sources" mean: as configured)."""
    return Setup(model=None if not model or model == AUTO else model,
                 mode=mode if mode in MODES and mode != default_mode else None,
                 top_k=int(top_k) if top_k else None)


class CompareCallbacks:
    """The side-by-side tab; part of ``WebApp`` (``engine``, ``settings``, ``model_choices``, ``_filters``)."""

    def compare_pickers(self, model_a, model_b):
        """On opening the tab: both model pickers get the Settings tab's list of models."""
        choices = self.model_choices()
        values = {v for _, v in choices}
        pick = [m if m in values else AUTO for m in (model_a, model_b)]
        return (*(gr.update(choices=choices, value=v) for v in pick),)

    def compare(self, question, model_a, mode_a, top_a, model_b, mode_b, top_b, blind, scope, request: gr.Request):
        """Stream both answers. Outputs: notice, title, answer and details of column 1 then 2, the three
        vote buttons, state."""
        question = (question or "").strip()
        if not question:
            gr.Info("Type a question to compare the two set-ups.")
            yield (gr.skip(),) * 11
            return
        default = self.settings.retrieval.mode
        setups = [setup_of(model_a, mode_a, top_a, default), setup_of(model_b, mode_b, top_b, default)]
        order = random.sample([0, 1], 2) if blind else [0, 1]
        columns = [_Column(setups[i]) for i in order]
        state = {"question": question, "setups": [s.key() for s in setups], "order": order, "blind": bool(blind),
                 "voted": False}
        together = self.engine.gate.max_concurrent >= 2
        notice = "" if together else (
            "The two answers are written one after the other: llm.max_concurrent is "
            f"{self.engine.gate.max_concurrent}, so one generation runs at a time (set it to 2 or more to "
            "write both at once). Each column's times count from its own start.")
        yield from self._stream(columns, question, self._filters(scope, request), together, notice, state)

    def _stream(self, columns: list[_Column], question, filters, together: bool, notice: str, state) -> Iterator[tuple]:
        try:
            columns[0].start(self.engine.chat, question, filters)
            if together:
                columns[1].start(self.engine.chat, question, filters)
            yield self._frame(columns, state, notice, voting=False)
            last = 0.0
            while not all(c.done for c in columns):
                changed = [c.step() for c in columns]
                if columns[0].done and columns[1].events is None:
                    columns[1].start(self.engine.chat, question, filters)
                now = time.monotonic()
                if any(changed) and now - last >= STREAM_INTERVAL_S:
                    last = now
                    yield self._frame(columns, state, notice, voting=False)
            for i, c in enumerate(columns):  # the automatic choice is named by the model it made
                state["setups"][state["order"][i]] = c.setup.key(c.model_name(self))
            yield self._frame(columns, state, notice, voting=True)
        finally:
            for c in columns:
                c.close()

    def _frame(self, columns: list[_Column], state: dict, notice: str, voting: bool) -> tuple:
        shown = []
        for i, c in enumerate(columns):
            letter = "AB"[state["order"][i]]
            shown += [c.title(self, letter, f"Answer {i + 1}" if state["blind"] else None), c.body(), c.details()]
        return (gr.update(value=notice, visible=bool(notice)), *shown, *self._vote_buttons(state, voting), state)

    @staticmethod
    def _vote_buttons(state: dict, enabled: bool) -> tuple:
        left, right = ("Answer 1", "Answer 2") if state.get("blind") else ("A", "B")
        return (gr.update(value=f"{left} is better", interactive=enabled), gr.update(interactive=enabled),
                gr.update(value=f"{right} is better", interactive=enabled))

    def vote(self, choice: str, state: dict, request: gr.Request):
        """choice: "1" (left column), "2" (right) or "tie". Outputs: the two titles, the three vote
        buttons, the win-rate table, state."""
        state = dict(state or {})
        if not state.get("setups") or state.get("voted"):
            gr.Info("Ask a question first: there is nothing to vote on yet." if not state.get("setups")
                    else "This comparison has its vote already.")
            return (gr.skip(),) * 7
        order = state["order"]
        winner = "tie" if choice == "tie" else "ab"[order[int(choice) - 1]]
        a, b = state["setups"]
        self.engine.catalog.add_vote(owner=user_of(request), question=state["question"], setup_a=a, setup_b=b,
                                     winner=winner, blind=state["blind"])
        state["voted"] = True
        titles = []
        for i in range(2):  # the set-ups are named now
            letter = "AB"[order[i]]
            titles.append(f'<div class="rc-cmp-title"><b>Answer {i + 1}</b> was <b>{letter}</b> · '
                          f'{html.escape(state["setups"][order[i]])}</div>' if state["blind"] else gr.skip())
        gr.Info("Vote saved." if winner == "tie" else f"Vote saved: {'AB'['ab'.index(winner)]} is better.", duration=3)
        return (*titles, *self._vote_buttons(state, False), self.win_rate_table(request), state)

    def win_rate_table(self, request: gr.Request = None):
        """The set-ups' win rates: the user's own votes; an admin's (or the one user's without login): everyone's."""
        user = user_of(request)
        admin = user is None or is_admin(self.engine.catalog, user)
        rows = self.engine.catalog.win_rates(ALL if admin else user)
        label = ("Win rates: everyone's votes" if user is None else
                 "Win rates: the team's votes (you are an admin)" if admin else "Win rates: your votes")
        values = [[r["setup"], r["votes"], r["wins"], r["ties"], r["losses"], f"{r['win_rate']:.0%}"] for r in rows]
        return gr.update(value=values, label=label)


def build_compare_tab(app, scope) -> None:
    """The "Side by side" tab and its events, inside ``build_blocks``'s Tabs; ``scope``: the chat's
    "Search in" choice, which both set-ups search in."""
    mode = app.settings.retrieval.mode
    with gr.Tab("Side by side", id="compare") as tab:
        pickers = []
        with gr.Row(equal_height=False):
            for side in "ab":
                with gr.Column(min_width=320):
                    pickers.append(gr.Dropdown(label=f"Set-up {side.upper()}: model", choices=[("Automatic", AUTO)],
                                               value=AUTO, allow_custom_value=True, elem_id=f"rc-cmp-model-{side}"))
                    with gr.Row():
                        pickers.append(gr.Radio(list(MODES), value=mode, label="Search", elem_id=f"rc-cmp-mode-{side}"))
                        pickers.append(gr.Slider(0, 12, value=0, step=1, label="Sources (0: automatic)",
                                                 elem_id=f"rc-cmp-topk-{side}"))
        with gr.Row(equal_height=True):
            question = gr.Textbox(placeholder="One question for both set-ups…", show_label=False, scale=8, lines=1,
                                  container=False, elem_id="rc-cmp-question")
            blind = gr.Checkbox(label="Blind", value=False, scale=0, min_width=100, elem_id="rc-cmp-blind")
            go = gr.Button("Compare", variant="primary", scale=0, min_width=110, elem_id="rc-cmp-go")
        notice = gr.Markdown(visible=False, elem_id="rc-cmp-notice")
        shown = []
        with gr.Row(equal_height=False):
            for n in (1, 2):
                with gr.Column(min_width=320, elem_id=f"rc-cmp-col-{n}"):
                    shown += [gr.HTML("", elem_id=f"rc-cmp-title-{n}", js_on_load=None),
                              gr.Markdown("", elem_id=f"rc-cmp-answer-{n}", sanitize_html=True,
                                          min_height=120, container=True),
                              gr.HTML("", elem_id=f"rc-cmp-details-{n}", js_on_load=None)]
        with gr.Row():
            votes = [gr.Button("A is better", interactive=False, elem_id="rc-cmp-vote-1"),
                     gr.Button("Tie", interactive=False, elem_id="rc-cmp-vote-tie"),
                     gr.Button("B is better", interactive=False, elem_id="rc-cmp-vote-2")]
        wins = gr.Dataframe(headers=WIN_HEADERS, value=[], interactive=False, label="Win rates",
                            elem_id="rc-cmp-wins")
        state = gr.State({})

    inputs = [question, *pickers, blind, scope]
    outputs = [notice, *shown, *votes, state]
    kw = dict(concurrency_limit=COMPARE_CONCURRENCY, concurrency_id="compare", show_progress="hidden")
    go.click(app.compare, inputs, outputs, api_name="compare", **kw)
    question.submit(app.compare, inputs, outputs, api_visibility="private", **kw)
    vote_outputs = [shown[0], shown[3], *votes, wins, state]
    for button, choice in zip(votes, ("1", "tie", "2")):
        button.click(_voter(app, choice), [state], vote_outputs, api_name=f"vote_{choice}")
    tab.select(app.compare_pickers, [pickers[0], pickers[3]], [pickers[0], pickers[3]], api_visibility="private")
    tab.select(app.win_rate_table, None, wins, api_name="win_rates")


def _voter(app, choice: str):
    def vote(state: dict, request: gr.Request):
        return app.vote(choice, state, request)
    return vote
