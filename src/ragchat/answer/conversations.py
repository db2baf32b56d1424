"""Saved conversations: what the web page keeps of each question and its answer, in the catalog.

A question is saved when it is asked, and its answer when it is done, when it failed, or when the
person stopped it (what was said so far, marked partial). The engine holds one ``Conversations``
(``engine.conversations``); the page's callbacks only call it.
"""

from __future__ import annotations

from ragchat.answer.citations import cite
from ragchat.answer.events import Answer
from ragchat.store.catalog import Catalog


class Conversations:
    """The web page's saved conversations: a question is saved when it is asked, and its answer when
    it is done, when it failed, or when the person stopped it (what was said so far, marked partial)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def ask(self, cid: str | None, question: str, owner: str | None) -> tuple[str, list[tuple[str, str]]]:
        """(conversation id, its history before this question): ``cid``'s conversation when this user
        owns it, else a new one titled after the question."""
        if not cid or self.catalog.conversation(cid, owner=owner) is None:
            cid = self.catalog.create_conversation(_title(question), owner=owner)
        return cid, [(m.role, m.content) for m in self.catalog.messages(cid)]

    def save_question(self, cid: str, question: str) -> None:
        self.catalog.add_message(cid, "user", question)

    def save_answer(self, cid: str, answer: Answer) -> tuple[list[dict], list[dict]]:
        """Save a finished answer; returns (cited, retrieved) sources as dicts."""
        cited = [s.as_dict() for s in answer.sources]
        retrieved = [s.as_dict() for s in answer.retrieved]
        meta = {"provider": answer.provider, "model": answer.model, "partial": answer.partial, "error": answer.error,
                "notice": answer.notice, "question": answer.question, "retrieved": retrieved}
        self.catalog.add_message(cid, "assistant", answer.text, sources=cited, meta=meta)
        return cited, retrieved

    def save_failure(self, cid: str, text: str, reason: str) -> None:
        """An answer that failed: the text said before the failure, or the reason."""
        self.catalog.add_message(cid, "assistant", text or reason, sources=[], meta={"partial": bool(text), "error": reason})

    def save_stopped(self, cid: str, text: str, answer: Answer | None, question: str) -> None:
        """An answer the person stopped: ``text`` as far as it came, with the sources it cites."""
        retrieved = list(answer.retrieved) if answer is not None else []
        text, cited = cite(text, retrieved)
        self.catalog.add_message(cid, "assistant", text, sources=[s.as_dict() for s in cited],
                                 meta={"partial": True, "retrieved": [s.as_dict() for s in retrieved],
                                       "provider": getattr(answer, "provider", ""), "model": getattr(answer, "model", ""),
                                       "question": getattr(answer, "question", question)})


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= 60 else text[:59].rstrip() + "…"
