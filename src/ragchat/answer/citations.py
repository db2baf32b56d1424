"""The sources an answer cites as [n], with markers added where a small model left them out.

A sentence of an answer without any marker is attributed to the source it overlaps most (its
content terms, ``analyze``), when it overlaps enough (half of its terms, at least three), and the
marker is added. Attribution is against the whole chunk, not the excerpt the model read.
"""

from __future__ import annotations

import re
from typing import Sequence

from ragchat.answer.events import Source
from ragchat.core.text import CITATION_RE, analyze, sentence_spans

_NUMBER = re.compile(r"\d{1,3}")


def cite(text: str, sources: Sequence[Source]) -> tuple[str, list[Source]]:
    """The answer (with markers added where the model left them out) and the sources it cites."""
    cited = cited_ids(text, sources)
    if not cited and text:
        text, cited = _attribute(text, sources)
    return text, [s for s in sources if s.id in cited]


def cited_ids(text: str, sources: Sequence[Source]) -> set[int]:
    """The numbers of the given sources that the text's markers name."""
    valid = {s.id for s in sources}
    return {int(n) for m in CITATION_RE.finditer(text) for n in _NUMBER.findall(m.group()) if int(n) in valid}


def _attribute(text: str, sources: Sequence[Source]) -> tuple[str, set[int]]:
    # Against the whole chunk, not the excerpt the LLM read: the excerpt's terms are a subset of
    # the chunk's, a [n] sends the reader to the whole chunk, and the web app's "stop" path, which
    # only has the stored sources, attributes the same way. A sentence ends at every run of end
    # marks ("7.0" excepted) and at every line break.
    src_terms = {s.id: set(analyze(s.text)) for s in sources}
    out, cited, pos = [], set(), 0
    for start, end in sentence_spans(text, space_after=False, lower_continues=False, cjk_ends="。！？", lines="any"):
        terms = set(analyze(text[start:end]))
        best, best_id = 0.0, None
        if len(terms) >= 3:
            for sid, st in src_terms.items():
                overlap = len(terms & st) / len(terms)
                if overlap > best:
                    best, best_id = overlap, sid
        out.append(text[pos:end])
        pos = end
        if best_id is not None and best >= 0.5:
            stripped = out[-1].rstrip()
            out[-1] = stripped + f" [{best_id}]" + out[-1][len(stripped):]
            cited.add(best_id)
    out.append(text[pos:])
    return "".join(out), cited
