"""The "Retrieval test" tab: a query's ranked passages with their scores, while the weights change.

The passages come from ``Retriever.search``, the function chat and ``POST /api/v1/search`` call,
under the same filters (``engine.filters_for``: only documents this person may read). The view's
fusion weight, top-k and mode are kept per browser session and re-run the search at once; "Save as
my settings" copies them to the chat's settings of this session (the Settings tab's number of
sources, and ``state["retrieval"]``). The query's terms are marked in each passage with the lexical
index's own analyser (``core.text.analyze``: stemmed English words, jieba's Chinese words).
"""

from __future__ import annotations

import html
import re

import gradio as gr

from ragchat.core.text import CJK_RANGE, analyze, question_terms
from ragchat.retrieve.search import Hit
from ragchat.ui.session import ALL, new_state, user_of

MODES = [("Hybrid", "hybrid"), ("Dense only", "dense"), ("Lexical only", "lexical")]
MAX_SOURCES = 12  # the Settings tab's "Number of sources" goes to 12
_RUN = re.compile(f"[{CJK_RANGE}]+|[^\\W_{CJK_RANGE}]+")  # core.text.analyze's runs: Chinese, or other letters
_CJK = re.compile(f"[{CJK_RANGE}]")

CSS = """
.rc-rt-summary { font-size: 0.9rem; color: var(--body-text-color-subdued); margin: 4px 0 8px; }
.rc-rt-table { width: 100%; border-collapse: collapse; font-size: 0.88rem; }
.rc-rt-table, .rc-rt-table th, .rc-rt-table td { border-left: 0; border-right: 0; border-top: 0; }
.rc-rt-table th { text-align: left; font-weight: 600; padding: 6px;
                  border-bottom: 2px solid var(--border-color-primary); }
.rc-rt-table td { vertical-align: top; border-bottom: 1px solid var(--border-color-primary); padding: 6px; }
.rc-rt-table td.rc-rt-num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.rc-rt-doc { font-weight: 600; min-width: 9em; overflow-wrap: anywhere; }
.rc-rt-col { color: var(--body-text-color-subdued); font-size: 0.8rem; }
.rc-rt-passage { line-height: 1.45; white-space: pre-wrap; }
.rc-rt-passage mark { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
.rc-rt-yes { color: #15803d; font-weight: 600; white-space: nowrap; }
.rc-rt-no { color: #b91c1c; white-space: nowrap; }
"""


def term_spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    """Where text holds one of terms (index terms of ``analyze``): each Latin word whose term is one of
    them, and each occurrence of a Chinese term inside a run of Chinese characters. Sorted, merged."""
    spans: list[tuple[int, int]] = []
    cjk_terms = [t for t in terms if _CJK.search(t)]
    for m in _RUN.finditer(text):
        if _CJK.match(m.group()):
            for t in cjk_terms:
                spans += [(m.start() + i.start(), m.start() + i.end()) for i in re.finditer(re.escape(t), m.group())]
        elif terms & set(analyze(m.group())):
            spans.append(m.span())
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, query: str) -> str:
    """text as HTML, escaped, with the query's terms in <mark>."""
    out, last = [], 0
    for start, end in term_spans(text, question_terms(query)):
        out += [html.escape(text[last:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        last = end
    out.append(html.escape(text[last:]))
    return "".join(out)


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def results_html(query: str, hits: list[Hit], summary: str) -> str:
    """The ranked passages as a table; each row carries its chunk id (``data-chunk``)."""
    if not query.strip():
        return '<div class="rc-rt-summary">Type a query to see the passages search finds for it.</div>'
    head = f'<div class="rc-rt-summary">{html.escape(summary)}</div>'
    if not hits:
        return head + '<div class="rc-rt-summary">No passage found.</div>'
    rows = []
    for rank, h in enumerate(hits, 1):
        verdict = ('<span class="rc-rt-yes" title="Chat uses this passage">✓ passes</span>' if h.relevant else
                   '<span class="rc-rt-no" title="Chat treats this passage as not relevant">✗ below</span>')
        rows.append(
            f'<tr class="rc-rt-row" data-chunk="{html.escape(h.chunk_id)}"><td class="rc-rt-num">{rank}</td>'
            f'<td><div class="rc-rt-doc">{html.escape(h.source)}</div>'
            f'<div class="rc-rt-col">{html.escape(h.collection)}</div></td>'
            f'<td class="rc-rt-num">{"–" if h.page is None else h.page}</td>'
            f'<td class="rc-rt-num">{_score(h.dense)}</td><td class="rc-rt-num">{_score(h.lexical)}</td>'
            f'<td class="rc-rt-num"><b>{_score(h.score)}</b></td><td>{verdict}</td>'
            f'<td class="rc-rt-passage">{highlight(h.text, query)}</td></tr>')
    return (head + '<table class="rc-rt-table"><thead><tr><th>#</th><th>Document</th><th>Page</th><th>Dense</th>'
            '<th>Lexical (BM25)</th><th>Fused</th><th>Relevance bar</th><th>Passage</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


class RetrievalCallbacks:
    """The retrieval test tab; part of ``WebApp`` (``engine``, ``settings``, ``visible``,
    ``scope_choices`` and ``_filters`` from the library and chat callbacks)."""

    def retrieval_scope(self, scope, request: gr.Request | None = None):
        """The "Search in" choices, as the chat's scope lists them."""
        choices = self.scope_choices(self.visible(request))
        values = {v for _, v in choices}
        return gr.update(choices=choices, value=[s for s in (scope or []) if s in values] or [ALL])

    def retrieval_test(self, query: str, scope, weight, top_k, mode: str, request: gr.Request | None = None) -> str:
        """The ranked passages for query under this view's settings, as HTML. weight: the dense
        ranking's share (0 to 1), or None for the settings' own weights."""
        query = (query or "").strip()
        if not query:
            return results_html("", [], "")
        k = int(top_k) if top_k else None
        weight = None if weight is None else float(weight)
        filters = self._filters(scope, request)  # what chat searches: the scope, narrowed to what this person may read
        hits = self.engine.retriever.search(query, filters, k=k, mode=mode or None, weight=weight)
        parts = [f"{len(hits)} passage{'s' if len(hits) != 1 else ''}, {sum(h.relevant for h in hits)} over "
                 f"the relevance bar", f"mode: {mode}"]
        if mode == "hybrid":
            parts.append("fusion: the settings' weights, as in chat" if weight is None else
                         f"fusion: dense {weight:.2f}, lexical {1 - weight:.2f} (this view only)")
        if user_of(request):
            parts.append(f"documents {user_of(request)} may read")
        return results_html(query, hits, " · ".join(parts))

    def retrieval_weight(self, weight, query: str, scope, top_k, mode: str, request: gr.Request | None = None):
        """The slider moved: this view's weight is now the person's. Outputs: the weight kept, the results."""
        return float(weight), self.retrieval_test(query, scope, weight, top_k, mode, request)

    def save_retrieval(self, weight, top_k, mode: str, state: dict):
        """Outputs: the Settings tab's number of sources, and the chat's state with this view's mode and
        fusion weight under "retrieval" (ChatOptions.mode and .weight of this session's questions)."""
        state = dict(state or new_state())
        state["retrieval"] = {"mode": mode, "weight": weight}
        sources = min(int(top_k), MAX_SOURCES) if top_k else 0
        fusion = "the settings' fusion weights" if weight is None else f"dense weight {float(weight):.2f}"
        gr.Info(f"Chat in this session now searches in {mode} mode with {fusion} and "
                f"{sources or 'the automatic number of'} sources.")
        return sources, state


def default_weight(settings) -> float:
    """The dense ranking's share under the settings' own weights, rounded to the slider's step."""
    r, e = settings.retrieval, settings.embedding
    lexical = r.lexical_weight_for(f"{e.provider}:{e.model}")  # the embedder's model_id
    return round(r.dense_weight / (r.dense_weight + lexical) * 20) / 20 if r.dense_weight + lexical else 0.5


def build_retrieval_tab(app, sources: gr.Slider, state: gr.State) -> None:
    """The tab and its events. sources: the Settings tab's number of sources; state: the chat's state.
    Call it inside ``gr.Tabs``."""
    r = app.settings.retrieval
    with gr.Tab("Retrieval test", id="retrieval") as tab:
        kept = gr.State(None)  # this view's fusion weight once the person moves the slider; None: the settings'
        with gr.Row(equal_height=True):
            query = gr.Textbox(label="Query", placeholder="What to search for…", scale=5, max_lines=2,
                               elem_id="rc-rt-query")
            scope = gr.Dropdown(label="Search in", choices=[("Search in all documents", ALL)], value=[ALL],
                                multiselect=True, allow_custom_value=True, scale=3, elem_id="rc-rt-scope")
            search_btn = gr.Button("Search", variant="primary", scale=0, min_width=100, elem_id="rc-rt-search")
        with gr.Row(equal_height=True):
            weight = gr.Slider(0.0, 1.0, value=default_weight(app.settings), step=0.05, scale=3,
                               label="Fusion weight: 0 = lexical only, 1 = dense only", elem_id="rc-rt-weight")
            top_k = gr.Slider(1, 50, value=r.top_k, step=1, label="Top-k", scale=2, elem_id="rc-rt-topk")
            mode = gr.Radio(MODES, value=r.mode, label="Mode", scale=2, elem_id="rc-rt-mode")
            save_btn = gr.Button("Save as my settings", scale=0, min_width=170, elem_id="rc-rt-save")
        results = gr.HTML(results_html("", [], ""), css_template=CSS, js_on_load=None, elem_id="rc-rt-results")

    inputs = [query, scope, kept, top_k, mode]
    kw = dict(outputs=results, show_progress="hidden", trigger_mode="always_last")
    search_btn.click(app.retrieval_test, inputs, api_name="retrieval_test", **kw)
    query.submit(app.retrieval_test, inputs, api_visibility="private", **kw)
    for box in (scope, top_k, mode):
        box.change(app.retrieval_test, inputs, api_visibility="private", **kw)
    weight.change(app.retrieval_weight, [weight, query, scope, top_k, mode], [kept, results], api_visibility="private",
                  show_progress="hidden", trigger_mode="always_last")
    save_btn.click(app.save_retrieval, [kept, top_k, mode, state], [sources, state], api_visibility="private")
    tab.select(app.retrieval_scope, scope, scope, api_visibility="private", show_progress="hidden")
