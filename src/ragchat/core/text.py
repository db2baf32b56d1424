"""Text -> index terms for BM25, in English, Chinese and mixed text.

English (and other Latin-script) words are lower-cased, stop words dropped, and Snowball-stemmed.
Chinese runs are segmented into words with jieba's search mode (which also emits the shorter words
inside long compounds, so a query for 学习 finds 机器学习). Other scripts fall back to characters.
Also: `cjk_share`, the language signal retrieval uses to weight the dense ranking.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

# Han characters, the one range every module uses: CJK Extension A, Unified Ideographs, Compatibility
# Ideographs, and the supplementary planes' Extensions B to H and Compatibility Supplement (rare names
# and characters in Chinese documents; a regex class needs no escapes for them).
CJK_RANGE = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f\U00030000-\U000323af"
_RUN = re.compile(f"[{CJK_RANGE}]+|[^\\W_{CJK_RANGE}]+")
_CJK = re.compile(f"[{CJK_RANGE}]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")

# Splitting text for the reader (excerpts, quotes, chunks, answer sentences), not for the index.
# Clause ends split a sentence too long to keep whole. A word: one Chinese character, or a run of
# anything else but spaces.
CLAUSE_END = re.compile(r"[,;:](?=\s)|[，：、]")
WORD = re.compile(f"[{CJK_RANGE}]|[^\\s{CJK_RANGE}]+")

# A citation marker: [1], [1, 2], 【3】 (numbers of at most three digits).
CITATION = r"[\[【]\s*\d{1,3}(?:\s*[,，;]\s*\d{1,3})*\s*[\]】]"
CITATION_RE = re.compile(CITATION)
_CITATION_START = r"[\[【]\s*\d"
_CLOSERS_LATIN = "[\"'”’)\\]]*"
_CLOSERS_CJK = "[”’」』）)]*"

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves""".split()
)
CHINESE_STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 等 也 就 都 而 被 把 对 于 之 其 这 那 些 个 一个 我 你 他 她 它 我们 你们 他们 吗 呢 吧 啊 么 什么 哪些 哪个 如何 怎么 怎样 为什么 是否 有 没有 中 上 下 将 从 向 并 但 还 又 很 更 最 以 为 所 由 让 给 到 说".split()
)

# What a question asks for rather than what it is about ("how many", "多少", "现在"): a passage that
# answers "现在的单价降到多少" says "目前 ... 降低到 0.55 元", so these terms are left out when counting
# how much of a question a passage covers (``question_terms``). Index forms: "many" is stemmed to "mani".
QUESTION_WORDS = frozenset(
    "mani much 多少 几 现在 目前 如今 请问 哪里 哪儿 哪 何时 什么时候 哪年 哪一年 多久 多大 多长 多高 为何 怎么样 介绍 一下 "
    "告诉 具体 主要 分别 大概 大约".split()
)

@lru_cache(maxsize=None)
def _sentence_end(space_after: bool, lower_continues: bool, closers: bool, cjk_ends: str, cjk_space: bool,
                  cites_follow: bool, lines: str) -> re.Pattern[str]:
    """The break between two sentences, for ``sentence_spans``'s rules."""
    if not space_after:  # after every run of end marks, but not inside "7.0"
        ends = ".!?" + cjk_ends
        latin = f"(?<=[{ends}])(?![{ends}])(?!(?<=\\d\\.)\\d)"
        cjk = None
    else:
        latin = (r"(?<=[.!?])" + (_CLOSERS_LATIN if closers else "") + r"\s+"
                 + (f"(?!{_CITATION_START})" if cites_follow else "") + (r"(?=[^\sa-z])" if lower_continues else ""))
        cjk = (f"(?<=[{cjk_ends}])" + (_CLOSERS_CJK if closers else "") + (r"\s*" if cjk_space else "")
               + (f"(?!\\s*{_CITATION_START})" if cites_follow else ""))
    line = {"blank": r"\n\s*\n", "any": r"\n+"}[lines]
    return re.compile("|".join(p for p in (latin, cjk, line) if p))


def sentence_spans(text: str, start: int = 0, end: int | None = None, *, space_after: bool = True,
                   lower_continues: bool = True, closers: bool = False, cjk_ends: str = "。！？；",
                   cjk_space: bool = True, cites_follow: bool = False, lines: str = "blank",
                   keep_break: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text[start:end]``, blank ones left out. The one sentence rule,
    with what each reader needs as a keyword:

    - ``space_after``: . ! ? end a sentence only before white space (False: after every run of end
      marks, "7.0" excepted: the answer sentences that get a citation added);
    - ``lower_continues``: a word in lower case after the end continues the sentence ("e.g. the");
    - ``closers``: closing quotes and brackets after the end belong to the sentence (chunks);
    - ``cjk_ends``: marks that end a sentence with no space after them;
    - ``cjk_space``: white space after those marks is part of the break (False: it begins the next sentence);
    - ``cites_follow``: a citation marker after the end belongs to the sentence before it (grounding);
    - ``lines``: "blank" (a blank line ends a sentence) or "any" (every line break does);
    - ``keep_break``: each sentence runs to the end of the break after it (chunks: no text is lost).
    """
    end = len(text) if end is None else end
    pattern = _sentence_end(space_after, lower_continues, closers, cjk_ends, cjk_space, cites_follow, lines)
    spans, pos = [], start
    for m in pattern.finditer(text, start, end):
        if m.end() > pos:
            spans.append((pos, m.end() if keep_break else m.start()))
            pos = m.end()
    spans.append((pos, end))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def sentences(text: str) -> list[str]:
    """The sentences of a text, stripped, for excerpts and quotes."""
    return [text[a:b].strip() for a, b in sentence_spans(text)]


_jieba_lock = threading.Lock()


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba


def analyze(text: str) -> list[str]:
    """Index terms of text, in order (duplicates kept: BM25 needs term frequencies)."""
    stem = _stemmer().stemWord
    terms: list[str] = []
    for m in _RUN.finditer(text.lower()):
        run = m.group()
        if _CJK.match(run):
            terms += [w for w in _jieba().cut_for_search(run) if w not in CHINESE_STOPWORDS]
        elif run not in ENGLISH_STOPWORDS:
            terms.append(stem(run) if run.isascii() else run)
    return terms


_ASKS_NUMBER = re.compile(
    r"\b(how (many|much|long|far|fast|big|large|old|often|high|tall|heavy|wide|deep)|what (percentage|proportion|share|"
    r"number|amount|year|date|size|rate|speed|price|cost|value|temperature|voltage|capacity)|when|which year)\b"
    r"|多少|几[个年月天次种]|多大|多长|多久|多高|多重|多快|何时|什么时候|哪年|哪一年|比例|百分之|价格|金额|数量", re.I)
_DIGIT = re.compile(r"\d")


def asks_for_number(question: str) -> bool:
    """The question asks for a quantity, a date or a time ("how many", "when", "多少", "哪一年")."""
    return bool(_ASKS_NUMBER.search(question))


def has_number(text: str) -> bool:
    return bool(_DIGIT.search(text))


def question_terms(question: str) -> set[str]:
    """The distinct index terms of a question that say what it is about (``QUESTION_WORDS`` left out;
    all of them when nothing else is left)."""
    terms = set(analyze(question))
    return terms - QUESTION_WORDS or terms


def cjk_share(text: str) -> float:
    """Share of Chinese characters among the letters of text (a Latin word counts as one)."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN_WORD.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0
