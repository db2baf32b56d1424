"""What a reader returns: a ``LoadedDocument`` of numbered ``Page``s, and the OCR progress callback type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Progress = Callable[[str, int, int], None]  # (message, done, total)


@dataclass(frozen=True)
class Page:
    number: int | None  # 1-based page, slide, sheet or chapter number; None for single-page kinds
    text: str
    # OCR'd pages: (start, end, x0, y0, x1, y1) for every word, its span in text and its rectangle as
    # fractions of the page's width and height (see ragchat.ingest.ocr). Empty for text layers.
    boxes: tuple = ()


@dataclass
class LoadedDocument:
    kind: str  # pdf | txt | md | html | docx | pptx | xlsx | csv | epub | eml | image
    pages: list[Page]
    warnings: list[str] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)  # numbers of the pages whose text came from OCR
