"""What the chat engine hands out: the answer, its sources, and the events of a streamed answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ragchat.retrieve.search import Hit


@dataclass
class Source:
    id: int  # the n in [n]
    source: str
    page: int | None
    text: str
    score: float
    doc_id: str
    chunk_id: str
    collection: str
    start: int
    end: int

    def as_dict(self) -> dict:
        return asdict(self)


def source_of(n: int, h: Hit) -> Source:
    """A search hit as source number n."""
    return Source(n, h.source, h.page, h.text, round(h.score, 6), h.doc_id, h.chunk_id, h.collection, h.start, h.end)


@dataclass
class Answer:
    text: str = ""
    sources: list[Source] = field(default_factory=list)  # the ones the answer cites
    retrieved: list[Source] = field(default_factory=list)  # everything given to the model
    provider: str = ""
    model: str = ""
    question: str = ""  # the standalone question used for retrieval
    partial: bool = False
    error: str | None = None
    notice: str | None = None
    unsupported: list[str] = field(default_factory=list)  # sentences no source supports (grounding.check)
    busy: bool = False  # the error is "too many questions waiting", not a failing model


@dataclass
class ChatEvent:
    kind: str  # status | sources | token | done
    text: str = ""
    answer: Answer | None = None
