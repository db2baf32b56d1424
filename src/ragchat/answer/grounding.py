"""Checks a finished answer, sentence by sentence, against the sources it cites.

A sentence is *supported* by a source when most of its content terms (``analyze``: stemmed English
words, jieba-segmented Chinese words) occur in that source, and every number it states occurs
there too (a small model often gets the words right and the figure wrong). The threshold was chosen
on a labelled sample made from the QA sets' passages (``bench/grounding.py``; figures in
docs/ANSWERS.md).

Then:
- a sentence whose cited source supports it keeps its citation;
- a sentence whose citation points elsewhere than the source that supports it is cited to that one;
- a sentence that no retrieved source supports loses its citations and is marked
  ``UNSUPPORTED`` for the reader (web app, CLI and JSON alike), in the sentence's language.

Sentences that say the documents do not answer, short ones (fewer than ``MIN_TERMS`` content
terms: "Yes.", a heading), and ones whose cited source is in the other language and that state no
number or name to compare with it are left as they are. It knows nothing of the LLM or of retrieval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ragchat.answer.refusal import is_refusal
from ragchat.answer.replies import chinese
from ragchat.core.text import CITATION, analyze, sentence_spans

UNSUPPORTED = "[not supported by the documents]"
UNSUPPORTED_ZH = "[资料中没有依据]"  # the mark of a Chinese sentence
UNSUPPORTED_RE = re.compile(r"\s*(?:" + re.escape(UNSUPPORTED) + "|" + re.escape(UNSUPPORTED_ZH) + ")")
THRESHOLD = 0.6  # share of a sentence's content terms found in a source (bench/grounding.py)
MIN_TERMS = 3

_CITE = re.compile(r"\s*" + CITATION)
_IDS = re.compile(r"\d{1,3}")
_END = re.compile(r"[.!?。！？；:：]*$")
_MARKS_AFTER_END = re.compile(r"([.!?。！？])[ \t]*(" + CITATION + r"(?:[ \t]*" + CITATION + r")*)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass
class Verdict:
    sentence: str  # as written, markers included
    cited: list[int]  # the source numbers it cited
    supported_by: int | None  # the source that supports it, if any
    score: float  # best support among the sources tried
    checked: bool  # False for refusals and short sentences


def content_terms(text: str) -> set[str]:
    return set(analyze(_CITE.sub(" ", text)))


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(_CITE.sub(" ", text))}


def support(sentence: str, source_text: str, source_terms: set[str] | None = None,
            given: frozenset[str] = frozenset()) -> float | None:
    """How well source_text supports sentence: the share of the sentence's content terms found in
    it, or 0 when the sentence states a number the source does not hold. Numbers in ``given`` (the
    question's: "net profit in 2021-22") are the question's words repeated, not claims.

    A sentence in one language over a source in the other (a Chinese answer from an English paper)
    shares no words with it: only its numbers, and in a Chinese sentence its Latin names
    (TableFormer), can be compared; None when it has neither (it cannot be checked)."""
    terms = content_terms(sentence)
    if not terms:
        return 0.0
    src = source_terms if source_terms is not None else set(analyze(source_text))
    digits = re.sub(r"(?<=\d),(?=\d)", "", source_text)
    numbers = _numbers(sentence) - given
    if any(n not in digits for n in numbers):
        return 0.0
    if chinese(sentence) != chinese(source_text):
        names = {t for t in terms if t.isascii() and t.isalpha()} if chinese(sentence) else set()
        if not numbers and not names:
            return None
        return len(names & src) / len(names) if names else 1.0
    return len(terms & src) / len(terms)


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of an answer, with the citation markers that follow it: it ends at
    . ! ? before a space and a word that does not start in lower case ("e.g. the" stays whole), at a
    Chinese end mark (the space after it begins the next sentence), and at every line break."""
    return sentence_spans(text, cites_follow=True, cjk_space=False, lines="any")


def check(text: str, sources: Sequence, threshold: float = THRESHOLD, question: str = "") -> tuple[str, list[Verdict]]:
    """The answer with its citations checked (moved, removed, or the sentence marked UNSUPPORTED),
    and a verdict for each sentence. ``sources``: objects with ``id`` and ``text``; the numbers of
    ``question`` need not be in a source."""
    text = _MARKS_AFTER_END.sub(lambda m: " " + m.group(2) + m.group(1), text)  # "end. [1]" -> "end [1]."
    by_id = {s.id: s for s in sources}
    terms = {s.id: set(analyze(s.text)) for s in sources}
    given = frozenset(_numbers(question))
    out, verdicts, pos = [], [], 0
    for start, end in sentences(text):
        out.append(text[pos:start])
        pos = end
        sentence = text[start:end]
        cited = [int(n) for m in _CITE.finditer(sentence) for n in _IDS.findall(m.group()) if int(n) in by_id]
        if len(content_terms(sentence)) < MIN_TERMS or is_refusal(sentence):
            verdicts.append(Verdict(sentence, cited, None, 0.0, False))
            out.append(sentence)
            continue
        judged = {sid: support(sentence, by_id[sid].text, terms[sid], given) for sid in by_id}
        scores = {sid: v for sid, v in judged.items() if v is not None}
        best = max(scores, key=lambda sid: (scores[sid], sid in cited, -sid)) if scores else None
        good = [sid for sid in cited if scores.get(sid, 0.0) >= threshold]
        if good and set(good) == set(cited):  # right as written: left exactly as the model wrote it
            verdicts.append(Verdict(sentence, cited, good[0], scores[good[0]], True))
            out.append(sentence)
            continue
        if good:
            verdict = Verdict(sentence, cited, good[0], scores[good[0]], True)
            mark = "".join(f" [{sid}]" for sid in good)
        elif best is not None and scores[best] >= threshold:
            verdict = Verdict(sentence, cited, best, scores[best], True)
            mark = f" [{best}]"
        elif not scores or any(judged[sid] is None for sid in cited):  # its source is in another language
            verdicts.append(Verdict(sentence, cited, None, 0.0, False))
            out.append(sentence)
            continue
        else:
            verdict = Verdict(sentence, cited, None, scores[best], True)
            mark = " " + (UNSUPPORTED_ZH if chinese(sentence) else UNSUPPORTED)
        verdicts.append(verdict)
        out.append(_remark(sentence, mark))
    out.append(text[pos:])
    return "".join(out), verdicts


def _remark(sentence: str, mark: str) -> str:
    """The sentence with its citation markers replaced by mark, before its final punctuation."""
    body = _CITE.sub("", sentence).rstrip()
    end = _END.search(body).group()
    return body[: len(body) - len(end)] + mark + end + sentence[len(sentence.rstrip()):]
