"""Thumbs up or down on answers, and a team's feedback turned into its own test set.

- ``rate_message``: the page's thumbs on a saved answer of a conversation; the question, the answer,
  its cited sources and the model come from the conversation, so nothing the browser sends is
  taken for them.
- ``rate_answer``: the API's (``POST /api/v1/feedback``): the client sends what ``/ask`` gave it;
  a source whose document the user may not read is refused (AccessError), so feedback cannot be
  used to reach another user's passages.
- ``export``: the rated answers as a BEIR folder that ``ragchat eval DIR --answers`` reads as it is:
  ``corpus.jsonl`` (one entry per document the answers cite, its whole text, named by its file
  name), ``queries.jsonl`` and ``qrels/test.tsv`` (the cited documents). A thumbs-up answer becomes
  the question's reference (its words without citation markers or quoted lines); a thumbs-down one
  with a correction takes the correction; a thumbs-down one without stays a retrieval-only question
  (its qrels, no reference: ``ragchat eval DIR`` uses it, ``--answers`` skips it). Only documents
  the exporting user may read are written; a question whose cited documents are all gone or
  unreadable is left out and counted.

Each row keeps the set-up that made the answer: provider and model, and the retrieval settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ragchat.answer.followup import strip_markers, without_quotes
from ragchat.core.access import AccessError, can_read
from ragchat.core.errors import RagchatError
from ragchat.core.settings import Settings
from ragchat.store.catalog import Catalog
from ragchat.store.feedback import ALL

MAX_TEXT = 20000  # characters kept of a question, answer, note or correction sent through the API
SPLIT = "test"


@dataclass
class ExportResult:
    questions: int = 0
    with_reference: int = 0
    retrieval_only: int = 0
    documents: int = 0
    left_out: int = 0  # their cited documents are gone, or not readable by the exporter

    def line(self) -> str:
        return (f"{self.questions} questions ({self.with_reference} with a reference answer, {self.retrieval_only} "
                f"retrieval-only) over {self.documents} documents; {self.left_out} left out (their documents are gone)")


class FeedbackBook:
    def __init__(self, catalog: Catalog, settings: Settings):
        self.catalog = catalog
        self.settings = settings

    def setup(self, provider: str = "", model: str = "") -> dict:
        r = self.settings.retrieval
        return {"provider": provider, "model": model, "mode": r.mode, "top_k": r.top_k, "fusion": r.fusion,
                "dense_weight": r.dense_weight, "lexical_weight": r.lexical_weight}

    def rate_message(self, owner: str | None, cid: str, index: int, rating: int, note: str = "",
                     correction: str = "") -> str:
        """Rate the answer at ``index`` of conversation ``cid`` (its position in the chat)."""
        if self.catalog.conversation(cid, owner=owner) is None:
            raise RagchatError("no such conversation")
        messages = self.catalog.messages(cid)
        if index == len(messages) and messages and messages[-1].role == "user":
            raise RagchatError("the answer is still being written: rate it once it is done")
        if not 0 <= index < len(messages) or messages[index].role != "assistant":
            raise RagchatError("only an answer can be rated")
        answer, meta = messages[index], messages[index].meta or {}
        asked = [m.content for m in messages[:index] if m.role == "user"]
        question = meta.get("question") or (asked[-1] if asked else "")
        return self.catalog.add_feedback(
            owner=owner, rating=rating, question=question, answer=answer.content, sources=answer.sources or [],
            setup=self.setup(meta.get("provider", ""), meta.get("model", "")), note=note[:MAX_TEXT],
            correction=correction[:MAX_TEXT], conversation_id=cid)

    def rate_answer(self, owner: str | None, *, rating: int, question: str, answer: str, sources: Sequence[dict],
                    note: str = "", correction: str = "", model: str = "") -> str:
        kept = []
        for s in sources:
            info = self.catalog.get(str(s.get("doc_id") or ""))
            if info is None or not can_read(info, owner):
                raise AccessError(f"source {s.get('id') or '?'} names a document you cannot read")
            kept.append({k: s.get(k) for k in ("id", "source", "page", "text", "doc_id", "chunk_id", "collection")})
        return self.catalog.add_feedback(
            owner=owner, rating=rating, question=question[:MAX_TEXT], answer=answer[:MAX_TEXT], sources=kept,
            setup=self.setup("", model), note=note[:MAX_TEXT], correction=correction[:MAX_TEXT])

    def rows(self, owner: str | None, everyone: bool = False) -> list[dict]:
        return [{"id": r.id, "owner": r.owner, "rating": r.rating, "question": r.question, "answer": r.answer,
                 "note": r.note, "correction": r.correction, "sources": r.sources, "setup": r.setup,
                 "created_at": r.created_at.isoformat()} for r in self.catalog.feedback(ALL if everyone else owner)]

    def export(self, out: Path, reader, everyone: bool = False) -> ExportResult:
        """Write the feedback of ``reader`` (or, with everyone, of every user) to ``out`` as a BEIR
        folder, with only the documents ``reader`` may read (``ALL``: the store's operator, any)."""
        result, names, queries, qrels = ExportResult(), {}, [], []
        for row in self.catalog.feedback(ALL if everyone else reader):
            docs = self._readable_docs(row.sources, reader)
            if not docs:
                result.left_out += 1
                continue
            for info in docs:
                names.setdefault(info.id, _distinct(info.source, names.values()))
            reference = (row.correction or "").strip() if row.rating < 0 else _own_words(row.answer)
            meta = {"feedback": "up" if row.rating > 0 else "down", "note": row.note, "setup": row.setup}
            if reference:
                meta["reference"] = reference
                result.with_reference += 1
            else:
                result.retrieval_only += 1
            queries.append({"_id": row.id, "text": row.question, "metadata": meta})
            qrels += [(row.id, names[info.id]) for info in docs]
        out.mkdir(parents=True, exist_ok=True)
        (out / "qrels").mkdir(exist_ok=True)
        with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
            for doc_id, name in names.items():
                text = "\n\n".join(t for _, t in self.catalog.pages_of(doc_id) if t)
                f.write(json.dumps({"_id": name, "title": "", "text": text}, ensure_ascii=False) + "\n")
        with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in queries:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        with open(out / "qrels" / f"{SPLIT}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, name in dict.fromkeys(qrels):
                f.write(f"{qid}\t{name}\t1\n")
        result.questions, result.documents = len(queries), len(names)
        return result

    def _readable_docs(self, sources: Sequence[dict], reader: str | None) -> list:
        found = {}
        for s in sources or []:
            info = self.catalog.get(str(s.get("doc_id") or ""))
            if info is not None and info.status == "done" and (reader is ALL or can_read(info, reader)):
                found[info.id] = info
        return list(found.values())


def _own_words(answer: str) -> str:
    """The answer as the model said it: no quoted passage lines, no [n] markers."""
    return strip_markers(without_quotes(answer)).strip()


def _distinct(name: str, taken) -> str:
    taken, candidate, n = set(taken), name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate
