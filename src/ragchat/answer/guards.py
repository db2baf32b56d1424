"""What a streaming reply is watched for: the system prompt's secrets, a loop, and the refusal sentence."""

from __future__ import annotations

import re

from ragchat.answer.replies import REFUSAL_EN, REFUSAL_ZH


class SecretFilter:
    """Redacts the system prompt's secret-looking strings (a canary, a key: 8+ characters mixing
    letters and digits) from a stream of text pieces, holding back only as many characters as the
    longest secret could straddle. With no such string in the prompt it passes pieces through."""

    REDACTED = "[redacted]"

    def __init__(self, system_prompt: str):
        found = {w for w in re.findall(r"[A-Za-z0-9_\-]{8,}", system_prompt or "")
                 if re.search(r"\d", w) and re.search(r"[A-Za-z]", w)}
        self._pattern = re.compile("|".join(re.escape(w) for w in sorted(found, key=len, reverse=True)), re.I) if found else None
        self._keep = max((len(w) for w in found), default=1) - 1
        self._buf = ""

    def redact(self, text: str) -> str:
        return self._pattern.sub(self.REDACTED, text) if self._pattern else text

    def feed(self, piece: str) -> str:
        if self._pattern is None:
            return piece
        self._buf = self.redact(self._buf + piece)
        cut = len(self._buf) - self._keep
        if cut <= 0:
            return ""
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out

    def flush(self) -> str:
        out, self._buf = self.redact(self._buf), ""
        return out


def repeated_tail(text: str, times: int = 3, span: int = 30, longest: int = 120) -> int:
    """How many characters at the end of ``text`` repeat what comes before them: when the text ends
    with one phrase holding a letter or digit (up to ``longest`` characters) said ``times`` times in
    a row, over at least ``span`` characters, the length of the copies after the first; else 0.
    ("[57.9 24 5.55] [57.9 24 5.55] [57.9 24 5.55]"; a table's "| --- | --- |" is not a loop.)"""
    for period in range(1, min(longest, len(text) // times) + 1):
        unit, reps = text[-period:], max(times, -(-span // period))
        if any(c.isalnum() for c in unit) and text.endswith(unit * reps):
            return period * (reps - 1)
    return 0


def may_be_refusal(text: str) -> bool:
    """The reply so far is the start of the refusal sentence the instruction asks for, or that sentence."""
    said = " ".join(text.split()).casefold()
    return any(r.casefold().startswith(said) or said.startswith(r.casefold()) for r in (REFUSAL_EN, REFUSAL_ZH))
