"""Rows of cells -> a Markdown table: how every reader writes a table (CSV files, sheets, Word and
slide tables, ruled PDF tables), so that the chunker can repeat its header row in every chunk of it."""

from __future__ import annotations

import re
from typing import Sequence


def _cell(value: str) -> str:
    """One line, pipes escaped: a cell must not break its row."""
    return re.sub(r"\s+", " ", value).strip().replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cell texts as a Markdown table; the first row is the header. Empty rows and columns are dropped."""
    rows = [[_cell(c) for c in row] for row in rows]
    rows = [r for r in rows if any(r)]
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    keep = [i for i in range(width) if any(r[i] for r in rows)]
    rows = [[r[i] for i in keep] for r in rows]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(keep))
    return "\n".join(lines)
