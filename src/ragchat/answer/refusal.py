"""Is a reply a refusal ("the documents do not say")? One function, for the evaluation and for chat.

A reply is a refusal when it is one of the app's own fixed replies (``replies.FIXED``: nothing
found, not answered, no documents, in English and Chinese) or when it holds one of the phrases below, in English
or Chinese. The phrases are matched as plain substrings, case-insensitively, with typographic
apostrophes made straight. That is a heuristic: a long answer that says in passing "the report does not mention
the date" counts as a refusal too. It leaves out any model-based judgement and other languages.
"""

from __future__ import annotations

from ragchat.answer.replies import FIXED

REFUSAL_PHRASES_EN = (
    "not find", "couldn't find", "can't find", "cannot find", "unable to find",
    "no information", "no relevant information", "not enough information", "insufficient information",
    "not mention", "doesn't mention", "don't mention",
    "not contain", "doesn't contain", "don't contain", "do not say", "does not say", "doesn't say", "don't say",
    "not provide any", "doesn't provide any", "don't provide any",
    "cannot answer", "can't answer", "unable to answer", "not able to answer", "cannot be answered",
    "i do not know", "i don't know",
)
REFUSAL_PHRASES_ZH = (
    "未找到", "没有找到", "找不到", "无法找到", "无法回答", "不能回答", "无法确定", "无法得知",
    "没有提到", "未提到", "没有提及", "未提及", "没有相关信息", "没有关于", "未包含", "没有包含",
    "没有说明", "未说明", "我不知道",
)
REFUSAL_PHRASES = REFUSAL_PHRASES_EN + REFUSAL_PHRASES_ZH


def is_refusal(text: str) -> bool:
    """True when the reply says the documents do not hold the answer instead of giving one."""
    reply = (text or "").strip()
    if reply in FIXED:
        return True
    folded = reply.replace("\u2019", "'").replace("\u2018", "'").casefold()
    return any(p in folded for p in REFUSAL_PHRASES)
