"""The "Evaluation" tab: how right the answers are on a QA set, per set-up, measured in the background.

The person picks the questions (their own rated answers, or a BEIR folder uploaded as .zip) and the
set-ups: each model picked times each search mode picked, with one number of sources (the
side-by-side view's choices, ``compare.setup_of``). ``eval.runs.EvalRuns`` runs them one after
the other in a worker thread; a timer reads the progress from the catalog each second. A finished
set-up shows as a row of the table (beside the accuracy of the last run on the same set), as a point
of the chart (accuracy against first-token time, Gradio's own ScatterPlot) and with the questions
it got wrong. Only admins (or the one user of an app without login) start runs; a user sees their
own runs, an admin the team's. There is no retrieval, prompting or LLM logic here.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import gradio as gr
import pandas as pd

from ragchat.answer.setups import MODES
from ragchat.core.errors import RagchatError
from ragchat.eval.runs import LIVE, EvalRuns
from ragchat.ui.compare import setup_of
from ragchat.ui.session import AUTO, user_of

HEADERS = ["Set-up", "Accuracy", "Last run", "Model alone", "Refusals right", "False refusals", "Gold cited",
           "First token p50", "First token p95"]
X, Y = "First token p50 (s)", "Accuracy"
SOURCES = [("My feedback (rated answers)", "mine"), ("The team's feedback (admins)", "team"),
           ("A BEIR folder as .zip", "zip")]
_EVALS_LOCK = threading.Lock()


class EvaluationCallbacks:
    """Part of ``WebApp`` (``engine``, ``settings``, ``model_choices``)."""

    @property
    def evals(self) -> EvalRuns:
        """The app's evaluations, made on first use (it marks runs a stop cut short as failed)."""
        with _EVALS_LOCK:
            if "_evals" not in self.__dict__:
                self._evals = EvalRuns(self.engine)
        return self._evals

    def eval_open(self, models, run_id, request: gr.Request):
        """On opening the tab. Outputs: model picker, Run button, note, runs picker, then ``eval_show``'s."""
        user = user_of(request)
        choices = self.model_choices()
        values = {v for _, v in choices}
        picked = [m for m in (models or []) if m in values] or [AUTO]
        allowed = self.evals.may_start(user)
        note = "" if allowed else "Only an admin starts evaluations. Here are the runs you started."
        run_id = run_id if self.evals.get(run_id, user) else None
        runs = self._runs_picker(user, run_id)
        return (gr.update(choices=choices, value=picked), gr.update(interactive=allowed),
                gr.update(value=note, visible=bool(note)), runs, *self.eval_show(runs["value"], request))

    def eval_start(self, source, upload, models, modes, top_k, request: gr.Request):
        """Start a run. Outputs: runs picker, then ``eval_show``'s."""
        user = user_of(request)
        default = self.settings.retrieval.mode
        setups = list(dict.fromkeys(setup_of(m, mode, top_k, default) for m in (models or [AUTO])
                                    for mode in (modes or [default])))
        try:
            if source == "zip":
                if not upload:
                    raise RagchatError("choose the .zip that holds the BEIR folder first")
                run_id = self.evals.start_zip(user, Path(upload), setups, name=Path(upload).stem)
            else:
                run_id = self.evals.start_feedback(user, setups, team=source == "team")
        except RagchatError as exc:
            gr.Warning(f"The evaluation did not start: {exc}")
            return (gr.skip(),) * 6
        return (self._runs_picker(user, run_id), *self.eval_show(run_id, request))

    def eval_stop(self, run_id, request: gr.Request):
        if not self.evals.stop(run_id or "", user_of(request)):
            gr.Info("That run is not running.")
        else:
            gr.Info("The run stops after the question it is asking.")

    def eval_show(self, run_id, request: gr.Request):
        """One run as the tab shows it. Outputs: progress, table, chart, wrong questions, timer."""
        row = self.evals.get(run_id or "", user_of(request))
        if row is None:
            return "", [], _chart([]), "", gr.Timer(active=False)
        before = self.evals.previous(row)
        last = {r["setup"]: r.get("accuracy") for r in (before.results if before else [])}
        table = [[r["setup"], _pct(r.get("accuracy")), _pct(last.get(r["setup"])) if before else "no earlier run",
                  _pct(r.get("model_accuracy")), _pct(r.get("refusal_accuracy")), _pct(r.get("false_refusals")),
                  _pct(r.get("gold_cited")), _secs(r.get("first_token_s_p50")), _secs(r.get("first_token_s_p95"))]
                 for r in row.results]
        return (progress_html(row), table, _chart(row.results), wrong_html(row.results),
                gr.Timer(active=row.status in LIVE))

    def eval_tick(self, run_id, request: gr.Request):
        """The timer while a run is live. Outputs: ``eval_show``'s, then the runs picker, relabelled
        once the run has ended (its label carries the status)."""
        shown = self.eval_show(run_id, request)
        row = self.evals.get(run_id or "", user_of(request))
        ended = row is None or row.status not in LIVE
        return (*shown, self._runs_picker(user_of(request), run_id) if ended else gr.skip())

    def _runs_picker(self, user, run_id=None):
        runs = self.evals.runs(user)
        choices = [(run_label(r, show_owner=user is not None and r.owner != user), r.id) for r in runs]
        return gr.update(choices=choices, value=run_id or (runs[0].id if runs else None))


def run_label(row, show_owner: bool) -> str:
    when = row.created_at.strftime("%Y-%m-%d %H:%M")
    who = f" · {row.owner}" if show_owner else ""
    n = len(row.setups)
    return f"{when} · {row.set_name} · {n} set-up{'s' if n != 1 else ''} · {row.status}{who}"


def progress_html(row) -> str:
    total = max(row.total, 1)
    what = {"queued": "Waiting for the run before it", "running": "Asking", "done": "Done",
            "stopped": "Stopped", "failed": "Failed"}.get(row.status, row.status)
    error = f'<div class="rc-eval-error">{html.escape(row.error)}</div>' if row.error else ""
    return (f'<div class="rc-eval-progress" data-status="{html.escape(row.status)}">'
            f'<progress value="{row.done}" max="{total}"></progress> '
            f'<span>{what}: {row.done} of {row.total} answers ({html.escape(row.set_name)})</span>{error}</div>')


def wrong_html(results: list[dict]) -> str:
    parts = []
    for r in results:
        wrong = r.get("wrong") or []
        parts.append(f"<h4>{html.escape(r['setup'])}: {len(wrong)} wrong</h4>")
        for w in wrong:
            expected = w["expected"] if isinstance(w["expected"], str) else " and ".join(
                " or ".join(g) for g in w["expected"])
            sources = "".join(_source_item(s) for s in w.get("sources") or [])
            parts.append(
                f'<details class="rc-eval-wrong-q"><summary>{html.escape(w["question"])}</summary>'
                f"<p><b>Expected:</b> {html.escape(str(expected))}</p>"
                f"<p><b>Reply:</b> {html.escape(w.get('error') or w['reply'])}</p>"
                f"<p><b>Sources cited:</b></p><ul>{sources or '<li>none</li>'}</ul></details>")
    return "".join(parts)


def _source_item(s: dict) -> str:
    page = f" p. {s['page']}" if s.get("page") else ""
    return f"<li><b>{html.escape(s['source'])}{page}</b>: {html.escape(s['text'])}</li>"


def _chart(results: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"Set-up": r["setup"], X: r.get("first_token_s_p50"), Y: r.get("accuracy")}
                         for r in results if r.get("accuracy") is not None and r.get("first_token_s_p50") is not None],
                        columns=["Set-up", X, Y])


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _secs(x) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def build_evaluation_tab(app) -> None:
    """The "Evaluation" tab and its events, inside ``build_blocks``'s Tabs."""
    mode = app.settings.retrieval.mode
    with gr.Tab("Evaluation", id="evaluation") as tab:
        note = gr.Markdown(visible=False, elem_id="rc-eval-note")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                source = gr.Radio(SOURCES, value="mine", label="Questions", elem_id="rc-eval-source")
                upload = gr.File(label="QA set: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) as .zip",
                                 file_types=[".zip"], type="filepath", height=90, visible=False, elem_id="rc-eval-zip")
            with gr.Column(min_width=320):
                models = gr.Dropdown(label="Models", choices=[("Automatic", AUTO)], value=[AUTO], multiselect=True,
                                     allow_custom_value=True, elem_id="rc-eval-models")
                with gr.Row():
                    modes = gr.CheckboxGroup(list(MODES), value=[mode], label="Search", elem_id="rc-eval-modes")
                    top_k = gr.Slider(0, 12, value=0, step=1, label="Sources (0: automatic)", elem_id="rc-eval-topk")
        with gr.Row(equal_height=True):
            run = gr.Button("Run evaluation", variant="primary", scale=0, min_width=160, elem_id="rc-eval-run")
            stop = gr.Button("Stop", scale=0, min_width=90, elem_id="rc-eval-stop")
            runs = gr.Dropdown(label="Run", choices=[], value=None, scale=4, elem_id="rc-eval-runs")
        progress = gr.HTML("", elem_id="rc-eval-progress")
        table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, wrap=True, label="Results per set-up",
                             elem_id="rc-eval-table")
        chart = gr.ScatterPlot(_chart([]), x=X, y=Y, color="Set-up", label="Accuracy against first-token time",
                               y_lim=[0, 1], height=320, elem_id="rc-eval-chart")
        wrong = gr.HTML("", elem_id="rc-eval-wrong", label="Questions answered wrong")
        timer = gr.Timer(1.0, active=False)

    shown = [progress, table, chart, wrong, timer]
    kw = dict(api_visibility="private", show_progress="hidden")
    tab.select(app.eval_open, [models, runs], [models, run, note, runs, *shown], **kw)
    source.change(lambda s: gr.update(visible=s == "zip"), source, upload, queue=False, **kw)
    run.click(app.eval_start, [source, upload, models, modes, top_k], [runs, *shown], **kw)
    stop.click(app.eval_stop, [runs], None, **kw)
    runs.input(app.eval_show, [runs], shown, **kw)
    timer.tick(app.eval_tick, [runs], [*shown, runs], concurrency_limit=None, **kw)
