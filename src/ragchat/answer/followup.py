"""Does a question in a conversation lean on the one before it? And which earlier turns may the model see?

People ask several questions in one chat, most of them about something new. Joining every question
to the previous one (the old "concat" rule) made an unrelated next question search with a mixed
query, and the model then copied an earlier refusal out of the history. So a question is taken on
its own unless it shows that it needs the previous turn:

- it opens like a continuation ("and ...", "what about ...", "also", "那 ...", "还有 ...") or ends
  with a bare "呢";
- it points back with a pronoun or a word like "it", "former", "the same", "它", "其", "该", "上述". In
  English, a pronoun after ``ANTECEDENT`` terms of the question's own points inside the question ("how
  did Jessica Jones get her powers?"), and "they/them/their" in a question with ``SELF_CONTAINED``
  terms is the generic "they" ("how many passages did they end up with after splitting Wikipedia?");
- it has almost nothing of its own to search with: one content term at most ("and 2023?").

``history_for_prompt`` keeps only exchanges worth showing the model: never a refusal or one of the
app's fixed replies (a small model copies them), and without the quoted passages and [n] markers of
earlier answers, whose numbers belonged to other sources.

It leaves out any model-based judgement: the rules are word lists, in English and Chinese.
"""

from __future__ import annotations

import re
from typing import Sequence

from ragchat.core.text import CITATION, analyze, cjk_share, question_terms
from ragchat.answer.refusal import is_refusal

_EN_OPENERS = re.compile(
    r"^\s*(and|also|then|so|but|or|plus|what about|how about|what of|same for|and what|and how|why not|"
    r"what else|anything else|tell me more|more on|go on|continue|explain (it|that|this)|elaborate)\b", re.I)
_EN_POINTERS = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|these|those|he|him|his|she|her|hers|former|latter|"
    r"the same|aforementioned)\b"
    # "that" points back after a verb or a preposition, or at the end ("what does that mean?", "why is
    # that?"), not as a relative pronoun ("the method that reaches 30 fps")
    r"|\b(is|was|are|were|does|did|do|about|of|for|in|on|with|from|to|like|than|mean|means)\s+that\b"
    r"|\bthat\s*[?.!]*\s*$", re.I)
# "this paper", "this report", "this method" name the document under discussion: standalone enough
_EN_DEMONSTRATIVE_NOUN = re.compile(
    r"\b(this|that|these|those)\s+(paper|papers|article|report|document|documents|study|work|book|manual|"
    r"guide|file|pdf|datasheet|company|method|model|approach|system)\b", re.I)
_ZH_OPENERS = re.compile(r"^\s*(那么|那|还有|另外|此外|然后|并且|而且|以及|同时|再|那它|它)")
_ZH_POINTERS = re.compile(  # not the 其 of 尤其/其他/其中, the 该 of 应该, the 此 of 因此/如此/彼此
    r"它|(?<![尤极与及])其(?![他它中实余次])|(?<!应)该|(?<![因如彼])此|上述|前者|后者|这个|那个|这些|那些|这家|那家|这种|那种|同样|刚才|上面")
_ZH_TRAILING = re.compile(r"呢\s*[？?]?\s*$")
_EN_THEY = re.compile(r"they|them|their|theirs", re.I)
ANTECEDENT = 2  # terms before an English pronoun that it can point to instead of the previous turn
SELF_CONTAINED = 4  # terms that make an English "they" generic
_MARKER = re.compile(r"\s*" + CITATION)
_QUOTE_LINE = re.compile(r"^\s*>.*$", re.M)


def depends_on_previous(question: str) -> bool:
    """True when the question needs the previous turn to be understood."""
    q = question.strip()
    if not q:
        return False
    if cjk_share(q) >= 0.3:
        if _ZH_OPENERS.match(q) or _ZH_TRAILING.search(q):
            return True
        if _ZH_POINTERS.search(q) and not re.search(r"(这|该|此)(篇|份|本)", q):
            return True
    else:
        if _EN_OPENERS.match(q):
            return True
        named = _EN_DEMONSTRATIVE_NOUN.sub(" ", q)
        if any(_points_back(named, m) for m in _EN_POINTERS.finditer(named)):
            return True
    return len(set(analyze(q))) <= 1


def _points_back(question: str, pointer: re.Match) -> bool:
    """Whether an English pointer word refers to the previous turn rather than to words before it."""
    if _EN_THEY.fullmatch(pointer.group(1) or "") and len(question_terms(question)) >= SELF_CONTAINED:
        return False
    return len(question_terms(question[:pointer.start()])) < ANTECEDENT


def strip_markers(text: str) -> str:
    """The text without citation markers ([1], [1, 2], 【3】)."""
    return _MARKER.sub("", text)


def without_quotes(text: str) -> str:
    """The text without its quoted lines (the passage quoted under an answer)."""
    return _QUOTE_LINE.sub("", text).strip()


def clean_answer(text: str) -> str:
    """An earlier answer as the model may see it again: no quoted passage, no [n] markers."""
    return re.sub(r"\n{3,}", "\n\n", strip_markers(without_quotes(text))).strip()


def history_for_prompt(history: Sequence[tuple[str, str]], turns: int) -> list[tuple[str, str]]:
    """The last ``turns`` exchanges worth showing the model, oldest first: an answer that refused (or
    a fixed reply) is left out with its question, and answers lose their quotes and markers."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for role, content in history:
        if role == "user":
            question = content
        elif role == "assistant" and question is not None:
            answer = clean_answer(content)
            if answer and not is_refusal(answer):
                pairs.append((question, answer))
            question = None
    kept = pairs[-turns:] if turns else []
    return [turn for q, a in kept for turn in (("user", q), ("assistant", a))]


def previous_question(history: Sequence[tuple[str, str]]) -> str | None:
    """The last question the person asked before this one."""
    return next((c for r, c in reversed(list(history)) if r == "user"), None)
