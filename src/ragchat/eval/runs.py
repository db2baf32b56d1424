"""The web app's evaluations: `ragchat eval DIR --answers` run over the app's own engine, in the background.

A run is (its starter, a QA set, one or more set-ups, ``answer.setups.Setup``). The QA set is the
starter's rated answers (``FeedbackBook.export``) or an uploaded BEIR .zip (``qaset.extract_zip``),
written to ``store/evals/<run id>/set``. Both are checked when the run is started, so a bad set
is refused at once, with its reason.

What a run may read is what its starter may read:

- when every corpus ``_id`` names a document the starter may read (an exported set does), the
  questions search only those documents (``Filters(doc_ids=...)`` through ``engine.filters_for``);
- otherwise the corpus is ingested into a collection of the starter's own, ``eval-<run id>``
  (``~user/eval-<run id>`` in team mode, ``access.owned_collection``), searched alone and removed
  when the run ends, fails or is stopped (and, for a run the app's stop cut short, at the next start).

Each set-up asks every question as ``--answers`` does (``answers.warm_up`` then ``answers.ask_all``,
the same code), with its model (``ChatOptions.model``) and retrieval settings. One run at a time, in
a worker thread, in the order they were started; ``done``/``total`` in the catalog say how far it
is. A set-up's results: ``answers.summarise``'s figures, the questions it got wrong, with reply and
sources, and the ids of the documents its answers were given (``documents``). Runs stay in the
catalog: a user reads their own, an admin the team's; only admins (or the one user of an app
without login) start them.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ragchat.answer.setups import Setup
from ragchat.auth.users import is_admin
from ragchat.core.access import AccessError, owned_collection
from ragchat.core.errors import RagchatError
from ragchat.eval.answers import Row, ask_all, load_questions, summarise, warm_up
from ragchat.eval.qaset import extract_zip, store_documents
from ragchat.eval.retrieval import iter_corpus
from ragchat.retrieve.search import Filters
from ragchat.store.feedback import ALL

log = logging.getLogger(__name__)

FEEDBACK_SET = "My feedback"
TEAM_SET = "The team's feedback"
LIVE = ("queued", "running")
MAX_SETUPS = 8
_SNIPPET = 300  # characters of a cited passage kept with a wrong answer


class EvalRuns:
    """The evaluations of one engine (the web app's): start, follow, stop and read them."""

    def __init__(self, engine):
        self.engine = engine
        self.catalog = engine.catalog
        self.root = engine.store / "evals"
        self._queue: queue.Queue[str] = queue.Queue()
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        if not engine.shared:  # one process owns this store: a run still "live" was cut short by a stop
            for row in self.catalog.eval_runs(ALL, status=LIVE):
                self._remove_temporary(row.id, row.owner)
                self.catalog.update_eval_run(row.id, status="failed", error="the app stopped during the run",
                                             finished_at=_now())

    # ---- who may do what ----------------------------------------------------------------------

    def may_start(self, user: str | None) -> bool:
        return user is None or is_admin(self.catalog, user)

    def sees_all(self, user: str | None) -> bool:
        return user is None or is_admin(self.catalog, user)

    def runs(self, viewer: str | None, limit: int = 50) -> list:
        """Newest first: the viewer's own runs, or the team's to an admin."""
        return self.catalog.eval_runs(ALL if self.sees_all(viewer) else viewer, limit=limit)

    def get(self, run_id: str, viewer: str | None):
        row = self.catalog.eval_run(run_id or "")
        if row is None or not (self.sees_all(viewer) or row.owner == viewer):
            return None
        return row

    def previous(self, row):
        """The run before ``row`` on the same QA set by the same starter that finished, or None."""
        for other in self.catalog.eval_runs(row.owner, status=("done",)):
            if other.set_name == row.set_name and other.created_at < row.created_at:
                return other
        return None

    # ---- starting -----------------------------------------------------------------------------

    def start_feedback(self, owner: str | None, setups: list[Setup], team: bool = False) -> str:
        """A run on the owner's rated answers (an admin's ``team``: everyone's), with only the
        documents the owner may read."""
        team = team and owner is not None
        if team and not is_admin(self.catalog, owner):
            raise AccessError("only an admin evaluates the team's feedback")
        run_id, folder = self._prepare(owner, setups)
        exported = self.engine.feedback.export(folder, owner, everyone=team)
        if not exported.with_reference:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise RagchatError("no rated answer can be scored yet: give answers a thumbs up, or a thumbs down with "
                               "the right answer in its note form")
        return self._queue_run(run_id, owner, TEAM_SET if team else FEEDBACK_SET, folder, setups)

    def start_zip(self, owner: str | None, zip_path: Path, setups: list[Setup], name: str | None = None) -> str:
        """A run on an uploaded BEIR folder, zipped."""
        run_id, folder = self._prepare(owner, setups)
        try:
            extract_zip(Path(zip_path), folder)
        except RagchatError:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise
        return self._queue_run(run_id, owner, name or Path(zip_path).stem, folder, setups)

    def _prepare(self, owner: str | None, setups: list[Setup]) -> tuple[str, Path]:
        if not self.may_start(owner):
            raise AccessError("only an admin starts evaluations")
        if not setups or len(setups) > MAX_SETUPS:
            raise RagchatError(f"pick 1 to {MAX_SETUPS} set-ups to evaluate")
        run_id = uuid.uuid4().hex
        return run_id, self.root / run_id / "set"

    def _queue_run(self, run_id: str, owner: str | None, name: str, folder: Path, setups: list[Setup]) -> str:
        try:
            questions = load_questions(folder)
        except RagchatError as exc:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise RagchatError(str(exc).replace(str(folder) + "/", "")) from None
        self.catalog.add_eval_run(run_id=run_id, owner=owner, set_name=name, setups=[asdict(s) for s in setups],
                                  total=len(questions) * len(setups))
        with self._lock:
            self._stops[run_id] = threading.Event()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="ragchat-evals", daemon=True)
                self._worker.start()
        self._queue.put(run_id)
        return run_id

    def stop(self, run_id: str, viewer: str | None) -> bool:
        """Stop a queued or running run (its starter's or an admin's): after the question being asked."""
        row = self.get(run_id, viewer)
        event = self._stops.get(run_id)
        if row is None or row.status not in LIVE or event is None:
            return False
        event.set()
        return True

    # ---- running ------------------------------------------------------------------------------

    def _work(self) -> None:
        """Runs one after the other; a run's end is written once its temporary documents are gone."""
        while True:
            run_id = self._queue.get()
            error = None
            try:
                status = self._run(run_id)
            except Exception as exc:  # a failed run says why; the worker goes on with the next one
                log.exception("evaluation %s failed", run_id)
                status, error = "failed", _reason(exc)
            self._stops.pop(run_id, None)
            self._remove_temporary(run_id, self.catalog.eval_run(run_id).owner)
            self.catalog.update_eval_run(run_id, status=status, error=error, finished_at=_now())

    def _run(self, run_id: str) -> str:
        """Ask every set-up; "done", or "stopped" when the stop event ended it."""
        row = self.catalog.eval_run(run_id)
        stop = self._stops[run_id]
        if stop.is_set():
            return "stopped"
        self.catalog.update_eval_run(run_id, status="running")
        folder = self.root / run_id / "set"
        questions = load_questions(folder)
        filters = self._corpus(run_id, row.owner, folder)
        results: list[dict] = []
        done = 0
        for spec in row.setups:
            setup = Setup(**spec)
            chat, options = self.engine.chat, setup.options()
            wrong: list[dict] = []
            read: set[str] = set()

            def on_row(n: int, r: Row, answer) -> None:
                read.update(s.doc_id for s in answer.retrieved)
                if not r.correct:
                    wrong.append(_wrong(r, answer))
                self.catalog.update_eval_run(run_id, done=done + n)

            warm_up(chat, questions[0], filters, options)
            asked = ask_all(chat, questions, filters, options=options, on_row=on_row, stop=stop)
            done += len(asked.rows)
            if asked.stopped:
                break
            resolved = self.engine.describe_llm(setup.model, asked.provider, asked.model)[0] if asked.provider else ""
            results.append({"setup": setup.key(resolved), **summarise(asked.rows), "provider": asked.provider,
                            "model": asked.model, "wrong": wrong, "documents": sorted(read)})
            self.catalog.update_eval_run(run_id, results=results)
        return "stopped" if stop.is_set() else "done"

    def _corpus(self, run_id: str, owner: str | None, folder: Path) -> Filters:
        """What the run's questions search: the starter's own documents the set names, or its corpus
        ingested into a temporary collection of the starter."""
        doc_ids = store_documents(self.catalog, folder / "corpus.jsonl", owner)
        if doc_ids:
            return self.engine.filters_for(owner, Filters(doc_ids=doc_ids))
        name = temporary_collection(run_id)
        self.engine.ingestor.ingest_texts(iter_corpus(folder / "corpus.jsonl"), name, owner=owner)
        return self.engine.filters_for(owner, Filters(collections=[owned_collection(name, owner)[0]]))

    def _remove_temporary(self, run_id: str, owner: str | None) -> None:
        """The run's temporary collection (if it made one) and its set folder."""
        try:
            collection = owned_collection(temporary_collection(run_id), owner)[0]
            for doc in self.catalog.documents(collections=[collection]):
                self.engine.ingestor.remove(doc.id)
        except Exception:  # cleaning up must not hide what the run did; the next start tries again
            log.exception("could not remove the temporary documents of evaluation %s", run_id)
        shutil.rmtree(self.root / run_id, ignore_errors=True)


def temporary_collection(run_id: str) -> str:
    return f"eval-{run_id[:12]}"


def _wrong(row: Row, answer) -> dict:
    sources = [{"source": s.source, "page": s.page, "text": (s.text or "")[:_SNIPPET]} for s in answer.sources]
    return {"id": row.id, "question": row.question, "expected": row.expected, "reply": row.reply,
            "refused": row.refused, "error": row.error, "sources": sources}


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, RagchatError) else f"{type(exc).__name__}: {exc}"


def _now() -> datetime:
    return datetime.now(timezone.utc)
