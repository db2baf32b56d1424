"""`ragchat eval DIR --answers`: how good the answers are, asked through the very chat code the web app uses.

The BEIR folder's corpus is ingested as `ragchat eval` does (evaluate.py), or, with ``--files DIR``,
the files its questions name (``metadata.file``) are ingested from DIR as an upload would be. Then
each question goes through ``engine.chat.stream`` (retrieval, prompt, LLM, citations), each in a new
chat, or with ``--conversation`` all in one chat, in an order shuffled with a fixed seed, so that the
questions jump between documents as people's do. A question whose ``metadata.follows`` names another
is always asked right after it, in the same chat (a two-turn follow-up). Questions are scored from
their ``metadata`` in queries.jsonl:

- ``answers``: a list of groups (each a list of alternatives, or one string); the reply is right
  when every group appears in it, any one alternative, case-insensitive (RGB's rule);
- ``reference``: right when the ROUGE-L recall of the reference in the reply is at least 0.5 and
  the reply is not a refusal. Tokens: one per Chinese character, lowercased words otherwise;
- ``answer``: one string (the table questions of bench/data/tables), as one group;
- ``answerable: false``: right when the reply is a refusal (``refusal.is_refusal``).

Each reply is scored twice: as shown (everything on the screen) and the model alone: the model's
text without the quoted passage under it; the closest-passage reply (which replaces a refusal)
counts as the model's refusal.

Citation markers like [1] are taken out of the reply before it is scored. Citations are checked
against qrels/<split>.tsv (a source's name is its corpus ``_id``, or with --files the file's name,
and ``FILE#pN`` in the qrels names its page N): the share of cited sources that
are the question's own passages, and the share of answers that cite at least one, over answerable
questions with qrels. Latency: time to the sources, to the first token and to the whole answer,
after one untimed warm-up question (the first one again) has loaded the models.

It leaves out LLM-as-judge scoring and any tuning: it only measures.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragchat.answer.engine import ChatOptions
from ragchat.answer.followup import strip_markers, without_quotes
from ragchat.answer.refusal import is_refusal
from ragchat.answer.replies import CLOSEST_PASSAGE, CLOSEST_PASSAGE_ZH, REFUSAL_EN
from ragchat.core.errors import RagchatError
from ragchat.core.settings import Settings
from ragchat.core.text import CJK_RANGE
from ragchat.engine import Engine
from ragchat.eval.report import print_table
from ragchat.eval.retrieval import EVAL_COLLECTION, iter_corpus, load_qrels
from ragchat.eval.stats import percentile
from ragchat.ingest.pipeline import collect
from ragchat.retrieve.search import Filters

ROUGE_THRESHOLD = 0.5
SEED = 0

_TOKEN = re.compile(f"[{CJK_RANGE}]|[^\\W{CJK_RANGE}]+")


# ---- scoring: pure functions ----------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """One token per Chinese character, else lowercased runs of letters and digits."""
    return _TOKEN.findall(text.lower())


def rouge_l_recall(reference: str, reply: str) -> float:
    """Share of the reference's tokens found, in order, in the reply (longest common subsequence)."""
    ref, hyp = tokens(reference), tokens(reply)
    if not ref or not hyp:
        return 0.0
    prev = [0] * (len(hyp) + 1)
    for r in ref:
        row = [0]
        for j, h in enumerate(hyp):
            row.append(prev[j] + 1 if r == h else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1] / len(ref)


def answer_groups(answers) -> list[list[str]]:
    """metadata ``answers`` as groups of alternatives: "x" and ["x", "y"] inside the list both work."""
    if isinstance(answers, str):
        answers = [answers]
    groups = [[g] if isinstance(g, str) else [str(a) for a in g] for g in answers or []]
    return [[a for a in g if a.strip()] for g in groups if any(a.strip() for a in g)]


def groups_found(groups: list[list[str]], reply: str) -> bool:
    """Every group has at least one alternative in the reply, case-insensitive."""
    folded = reply.casefold()
    return bool(groups) and all(any(a.casefold() in folded for a in g) for g in groups)


strip_citations = strip_markers


def model_text(reply: str) -> str:
    """The model's own words in a reply: without the quoted passage; the closest-passage reply, which
    stands in for the model's refusal, is that refusal."""
    if reply.startswith((CLOSEST_PASSAGE, CLOSEST_PASSAGE_ZH)):
        return REFUSAL_EN
    return without_quotes(reply)


# ---- the questions ---------------------------------------------------------------------------------


@dataclass
class Question:
    id: str
    text: str
    answerable: bool
    groups: list[list[str]] = field(default_factory=list)
    reference: str = ""
    gold: list[str] = field(default_factory=list)  # qrels passages with a positive score
    follows: str | None = None  # asked right after this question, in the same chat
    file: str | None = None  # the document it is about (--files)
    lang: str | None = None

    @property
    def kind(self) -> str:
        if not self.answerable:
            return "unanswerable"
        return "answers" if self.groups else "reference"


def load_questions(beir_dir: Path, split: str = "test", files: bool = False) -> list[Question]:
    """The scorable questions, in file order. Raises RagchatError (one line) for a folder that is not a
    QA set. ``files``: the corpus is files (--files), so no corpus.jsonl is needed."""
    qrels_path = beir_dir / "qrels" / f"{split}.tsv"
    needed = [beir_dir / "queries.jsonl", qrels_path] + ([] if files else [beir_dir / "corpus.jsonl"])
    for p in needed:
        if not p.is_file():
            raise RagchatError(f"{p} is missing: DIR must hold corpus.jsonl, queries.jsonl and qrels/{split}.tsv")
    qrels = load_qrels(qrels_path)
    out = []
    with open(beir_dir / "queries.jsonl", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
                qid, text, meta = str(q["_id"]), q["text"], q.get("metadata") or {}
            except (ValueError, KeyError, TypeError) as exc:
                raise RagchatError(f"{beir_dir / 'queries.jsonl'} line {n} is not a BEIR query ({exc})") from None
            answers = meta.get("answers") or ([meta["answer"]] if meta.get("answer") else None)
            question = Question(qid, text, meta.get("answerable", True) is not False, answer_groups(answers),
                                (meta.get("reference") or "").strip(),
                                sorted(d for d, r in qrels.get(qid, {}).items() if r > 0),
                                meta.get("follows"), meta.get("file"), meta.get("lang"))
            if not question.answerable or question.groups or question.reference:
                out.append(question)
    if not out:
        raise RagchatError(f"no question in {beir_dir / 'queries.jsonl'} has metadata answers, reference or answerable: "
                           "false, so there is nothing to score (run `ragchat eval DIR` without --answers for retrieval)")
    return out


def sample(questions: list[Question], limit: int | None) -> list[Question]:
    """``limit`` questions drawn with a fixed seed, kept in file order; all of them without a limit.
    A drawn follow-up brings the question it follows."""
    if not limit or limit >= len(questions):
        return questions
    keep = set(random.Random(SEED).sample(range(len(questions)), limit))
    by_id = {q.id: i for i, q in enumerate(questions)}
    for i in sorted(keep):
        while questions[i].follows in by_id and by_id[questions[i].follows] not in keep:
            i = by_id[questions[i].follows]
            keep.add(i)
    return [q for i, q in enumerate(questions) if i in keep]


def chains(questions: list[Question]) -> list[list[Question]]:
    """The questions grouped into the chats they need: a follow-up joins the chain of the question it follows."""
    out: list[list[Question]] = []
    where: dict[str, list[Question]] = {}
    for q in questions:
        chain = where.get(q.follows) if q.follows else None
        if chain is None:
            chain = []
            out.append(chain)
        chain.append(q)
        where[q.id] = chain
    return out


def conversation_order(questions: list[Question]) -> list[Question]:
    """One chat's order: the chains shuffled with a fixed seed (questions jump between documents), each
    follow-up right after the question it follows."""
    groups = chains(questions)
    random.Random(SEED).shuffle(groups)
    return [q for chain in groups for q in chain]


# ---- one reply -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One question's outcome: a line of --details."""

    id: str
    question: str
    kind: str
    expected: object
    reply: str
    correct: bool
    refused: bool
    rouge_l_recall: float | None
    cited: list[str]
    gold: list[str]
    retrieved: list[str]
    error: str | None
    sources_s: float | None
    first_token_s: float | None
    answer_s: float
    model_correct: bool = False  # the model alone (model_text)
    model_refused: bool = False
    turn: int = 1  # the question's place in its chat
    lang: str | None = None


def score(q: Question, reply: str, cited: list[str], retrieved: list[str], error: str | None = None,
          sources_s: float | None = None, first_token_s: float | None = None, answer_s: float = 0.0) -> Row:
    correct, refused, rouge = judge(q, strip_citations(reply))
    model_correct, model_refused, _ = judge(q, strip_citations(model_text(reply)))
    expected = {"unanswerable": "a refusal", "answers": q.groups}.get(q.kind, q.reference)
    return Row(q.id, q.text, q.kind, expected, reply, correct, refused, rouge, cited, q.gold, retrieved, error,
               sources_s, first_token_s, answer_s, model_correct, model_refused, lang=q.lang)


def judge(q: Question, text: str) -> tuple[bool, bool, float | None]:
    """(right, a refusal, ROUGE-L recall of the reference) for a reply without citation markers."""
    refused = is_refusal(text)
    rouge = round(rouge_l_recall(q.reference, text), 4) if q.kind == "reference" else None
    if q.kind == "unanswerable":
        return refused, refused, rouge
    if q.kind == "answers":
        return groups_found(q.groups, text), refused, rouge
    return rouge >= ROUGE_THRESHOLD and not refused, refused, rouge


def ask(chat, q: Question, filters, history: list[tuple[str, str]] | None = None,
        label=lambda s: s.source, options: ChatOptions | None = None) -> tuple[Row, object]:
    """Ask through the chat engine (in a chat holding ``history``), timing the sources, the first token
    and the end. ``label``: a source's name as the qrels write it; ``options``: the model and sources."""
    t0 = time.perf_counter()
    sources_s = first_s = None
    answer = None
    for ev in chat.stream(q.text, history or (), filters=filters, options=options or ChatOptions()):
        if ev.kind == "sources" and sources_s is None:
            sources_s = time.perf_counter() - t0
        elif ev.kind == "token" and first_s is None and ev.text.strip():
            first_s = time.perf_counter() - t0
        elif ev.kind == "done":
            answer = ev.answer
    total = time.perf_counter() - t0
    row = score(q, answer.text, [label(s) for s in answer.sources], [label(s) for s in answer.retrieved], answer.error,
                _r(sources_s, 4), _r(first_s, 4), round(total, 4))
    row.turn = len(history or ()) // 2 + 1
    return row, answer


def warm_up(chat, question: Question, filters, options: ChatOptions | None = None) -> float:
    """Ask one question untimed and unscored: it loads the embedder, jieba and the LLM, as a running
    web app has them. Its seconds; RagchatError when there is no LLM at all (every question would fail alike)."""
    t0 = time.perf_counter()
    warm = ask(chat, question, filters, options=options)[1]
    if warm.error and not warm.provider:
        raise RagchatError(warm.error)
    return time.perf_counter() - t0


@dataclass
class Asked:
    rows: list[Row]
    provider: str = ""
    model: str = ""
    stopped: bool = False  # the stop event ended it before the last question


def ask_all(chat, questions: list[Question], filters, *, label=lambda s: s.source, conversation: bool = False,
            options: ChatOptions | None = None, on_row=None, stop=None) -> Asked:
    """Every question through ``chat``: each chain in a chat of its own, or with ``conversation`` all in
    one chat (``conversation_order``). ``on_row(n, row, answer)`` after the n-th; ``stop`` (an Event)
    ends it between two questions. The CLI and the web app's evaluations (``runs``) both ask this way."""
    asked = Asked([])
    for chat_questions in [conversation_order(questions)] if conversation else chains(questions):
        history: list[tuple[str, str]] = []
        for q in chat_questions:
            if stop is not None and stop.is_set():
                asked.stopped = True
                return asked
            row, answer = ask(chat, q, filters, history, label, options)
            history += [("user", q.text), ("assistant", answer.text)]
            asked.provider, asked.model = asked.provider or answer.provider, asked.model or answer.model
            asked.rows.append(row)
            if on_row is not None:
                on_row(len(asked.rows), row, answer)
    return asked


def page_label(source) -> str:
    """A source as FILE#pN, so that qrels may name a file (any page) or one page of it."""
    return f"{source.source}#p{source.page}" if source.page else source.source


def is_gold(label: str, gold: set[str]) -> bool:
    return label in gold or label.split("#p")[0] in gold


# ---- figures ---------------------------------------------------------------------------------------


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def summarise(rows: list[Row]) -> dict:
    answerable = [r for r in rows if r.kind != "unanswerable"]
    unanswerable = [r for r in rows if r.kind == "unanswerable"]
    rouge = [r.rouge_l_recall for r in rows if r.rouge_l_recall is not None]
    judged = [r for r in answerable if r.gold]  # citations can be checked only against qrels
    gold_of = [(r, set(r.gold)) for r in judged]
    cited = sum(len(r.cited) for r in judged)
    later = [r for r in answerable if r.turn > 1]
    out = {
        "questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "with_answers": sum(r.kind == "answers" for r in rows), "with_reference": len(rouge),
        "accuracy": _share(sum(r.correct for r in answerable), len(answerable)),
        "model_accuracy": _share(sum(r.model_correct for r in answerable), len(answerable)),
        "model_refusal_accuracy": _share(sum(r.model_refused for r in unanswerable), len(unanswerable)),
        "model_false_refusals": _share(sum(r.model_refused for r in answerable), len(answerable)),
        "later_turns": len(later), "later_turns_accuracy": _share(sum(r.correct for r in later), len(later)),
        "rouge_l_recall": round(statistics.fmean(rouge), 4) if rouge else None,
        "refusal_accuracy": _share(sum(r.refused for r in unanswerable), len(unanswerable)),
        "false_refusals": _share(sum(r.refused for r in answerable), len(answerable)),
        "citation_precision": _share(sum(is_gold(s, g) for r, g in gold_of for s in r.cited), cited),
        "gold_cited": _share(sum(any(is_gold(s, g) for s in r.cited) for r, g in gold_of), len(judged)),
        "gold_retrieved": _share(sum(any(is_gold(s, g) for s in r.retrieved) for r, g in gold_of), len(judged)),
        "cited_sources": cited, "with_qrels": len(judged),
        "errors": sum(r.error is not None for r in rows),
    }
    for name in ("sources_s", "first_token_s", "answer_s"):
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        out[f"{name}_p50"], out[f"{name}_p95"] = _r(percentile(values, 50)), _r(percentile(values, 95))
    langs = sorted({r.lang for r in rows if r.lang})
    if langs:
        out["by_lang"] = {lang: {"questions": len(group := [r for r in rows if r.lang == lang]),
                                 "accuracy": _share(sum(r.correct for r in group), len(group)),
                                 "model_accuracy": _share(sum(r.model_correct for r in group), len(group)),
                                 "refused": _share(sum(r.refused for r in group), len(group))}
                          for lang in langs}
    return out


# ---- the command -----------------------------------------------------------------------------------


def run_answer_eval(settings: Settings, beir_dir: Path, split: str = "test", as_json: bool = False,
                    store: Path | None = None, limit: int | None = None, details: Path | None = None,
                    conversation: bool = False, files: Path | None = None) -> int:
    questions = sample(load_questions(beir_dir, split, files=files is not None), limit)
    filters = Filters(collections=[EVAL_COLLECTION])
    label = page_label if files is not None else (lambda s: s.source)
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ragchat-eval-")
        settings = settings.model_copy(update={"store": Path(tmp.name), "catalog_url": ""})
    out = open(details, "w", encoding="utf-8") if details else None
    try:
        with Engine(settings) as eng:
            t0 = time.perf_counter()
            if files is not None:
                names = sorted({q.file for q in questions if q.file} | {g.split("#p")[0] for q in questions for g in q.gold})
                missing = [n for n in names if not (files / n).is_file()]
                if missing:
                    raise RagchatError(f"--files {files} lacks {', '.join(missing[:3])}: give the folder that holds the set's documents")
                eng.ingestor.ingest(collect([files / n for n in names]), EVAL_COLLECTION)
            else:
                eng.ingestor.ingest_texts(iter_corpus(beir_dir / "corpus.jsonl"), EVAL_COLLECTION)
            ingest_s = time.perf_counter() - t0
            docs = len(eng.catalog.documents(collections=[EVAL_COLLECTION], status="done"))
            warmup_s = warm_up(eng.chat, questions[0], filters)

            def on_row(n: int, row: Row, _answer) -> None:
                if out:
                    out.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
                    out.flush()
                verdict = "right" if row.correct else "wrong"
                print(f"[{n}/{len(questions)}] {row.id}: {verdict}{', refused' if row.refused else ''} "
                      f"(model alone {'right' if row.model_correct else 'wrong'}) in {row.answer_s:.1f} s"
                      f"{' (error)' if row.error else ''}", file=sys.stderr, flush=True)

            asked = ask_all(eng.chat, questions, filters, label=label, conversation=conversation, on_row=on_row)
    finally:
        if out:
            out.close()
        if tmp is not None:
            tmp.cleanup()

    result = {"set": beir_dir.resolve().name, "split": split, **summarise(asked.rows), "provider": asked.provider,
              "model": asked.model, "docs": docs, "ingest_s": round(ingest_s, 2), "warmup_s": round(warmup_s, 2), "limit": limit,
              "seed": SEED if limit or conversation else None, "conversation": conversation}
    print_table(result)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    return 0
