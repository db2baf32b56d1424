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

_CJK_RANGE = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(f"[{_CJK_RANGE}]+|[^\\W_{_CJK_RANGE}]+")
_CJK = re.compile(f"[{_CJK_RANGE}]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")

# Splitting text for the reader (excerpts, quotes), not for the index. Sentence ends: . ! ? before a
# space and a word that does not start in lower case ("e.g. the" stays whole), Chinese ones anywhere,
# and blank lines. Clause ends split a sentence too long to keep whole. A word: one Chinese
# character, or a run of anything else but spaces.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z])|(?<=[。！？；])\s*|\n\s*\n")
CLAUSE_END = re.compile(r"[,;:](?=\s)|[，：、]")
WORD = re.compile(f"[{_CJK_RANGE}]|[^\\s{_CJK_RANGE}]+")

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
