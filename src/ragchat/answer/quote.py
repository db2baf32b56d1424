"""The passage an answer rests on, quoted verbatim under it, so the reader sees the documents' own words.

A small model's answer is short and sometimes wrong or thin. Under it, ragchat quotes the part of
one cited source that best matches the question: whole consecutive sentences of the chunk, at most
``budget`` words (a Chinese character counts as a word), chosen by how many distinct question terms
they hold (``analyze``, as BM25 sees them), then by how many answer terms, then the run that starts
at the single best matching sentence (an answer usually goes on after it), then the nearest one. The
source quoted is the best-ranked retrieved one, unless the best-ranked source the answer cites holds
more of the question's distinct terms (``source``: a small model often cites a source that merely
shares a word with the question); when no sentence of the answer is supported (grounding.check), the
quote is the fallback answer.

No quote is added to a refusal, nor when the answer already holds nearly all of the quote's terms
(the model copied it). Measured in docs/ANSWERS.md; ``chat.quote_words = 0`` turns it off.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence, TypeVar

from ragchat.core.text import CITATION_RE, CLAUSE_END, WORD, analyze, sentences

T = TypeVar("T")
REDUNDANT = 0.8  # share of the quote's terms already in the answer above which the quote adds nothing


def words(text: str) -> int:
    return len(WORD.findall(text))


def _units(text: str, budget: int) -> list[str]:
    """The text's sentences; one longer than the budget is split at clause marks, else cut by words."""
    out: list[str] = []
    for sentence in sentences(text):
        if words(sentence) <= budget:
            out.append(sentence)
            continue
        piece = ""
        for part in re.split(f"(?<={CLAUSE_END.pattern})", sentence):
            if piece and words(piece + part) > budget:
                out.append(piece.strip())
                piece = ""
            piece += part
        if piece.strip():
            out.append(piece.strip())
    return [u if words(u) <= budget else _first_words(u, budget - 1) + " …" for u in out]


def _first_words(text: str, n: int) -> str:
    ends = [m.end() for m in WORD.finditer(text)]
    return text[: ends[n - 1]] if 0 < n <= len(ends) else text


def source(question: str, cited: Sequence[T], retrieved: Sequence[T], text: Callable[[T], str]) -> T:
    """The source to quote: the best-ranked retrieved one, unless the best-ranked one the answer cites
    holds more of the question's distinct terms: search is right more often than the small model's
    marker. (On ClapNQ the 0.5B model cited a passage on Segovia's name for "where did the name sweet
    frog come from", while search ranked the Sweet Frog passage first; docs/ANSWERS.md, step 8.)"""
    top = retrieved[0]
    first = cited[0] if cited else top
    wanted = set(analyze(question))
    return first if len(wanted & set(analyze(text(first)))) > len(wanted & set(analyze(text(top)))) else top


def passage(text: str, question: str, answer: str, budget: int) -> str:
    """The run of consecutive sentences of ``text``, at most ``budget`` words, that best matches the question."""
    units = _units(text, budget)
    if not units:
        return ""
    wanted, said = set(analyze(question)), set(analyze(answer))
    terms = [set(analyze(u)) for u in units]
    top = max(range(len(units)), key=lambda i: (len(wanted & terms[i]), len(said & terms[i]), -i))
    best, best_key = "", None
    for i in range(len(units)):
        j, n, held = i, 0, set()
        while j < len(units) and (j == i or n + words(units[j]) <= budget):
            n += words(units[j])
            held |= terms[j]
            j += 1
        key = (len(wanted & held), len(said & held), i == top, -abs(i - top))
        if best_key is None or key > best_key:
            best, best_key = _join(units[i:j]), key
    return best


def _join(units: Sequence[str]) -> str:
    out = ""
    for u in units:  # no space between Chinese sentences
        out += u if not out or out[-1] in "。！？；" else " " + u
    return out


def redundant(quote: str, answer: str) -> bool:
    """The answer already says (nearly) everything the quote would."""
    q = set(analyze(quote))
    return not q or len(q & set(analyze(answer))) / len(q) >= REDUNDANT


def markdown(quote: str, source_id: int) -> str:
    """The quote as a Markdown block quote that cites its source. The document's own bracketed
    numbers ("[12]" in a paper) become "(12)", so they are never taken for ragchat's citations."""
    text = " ".join(CITATION_RE.sub(lambda m: "(" + m.group()[1:-1].strip() + ")", quote).split())
    return f"> {text} [{source_id}]"
