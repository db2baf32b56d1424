"""A chunk's character span on its page -> rectangles on the page image, for the passage viewer.

A chunk is ``page_text[start:end]`` of its page (ragchat.ingest.chunking). Two kinds of page know
where their characters are:

- **OCR'd pages** (scans, images): Tesseract's word boxes are kept at ingestion, because they cannot
  be had again without reading the page again (seconds of OCR). Each box holds a word's span in
  exactly the text the chunker saw and its rectangle as fractions of the page (ragchat.ingest.ocr),
  so ``word_rects`` only picks the words that overlap the span. They are stored in the catalog's
  ``page_boxes`` table.
- **Pages with a text layer**: their boxes are found when the page is shown, not stored. The text
  the chunker saw comes from pypdf, while character boxes come from PDFium (``rendering.page_chars``),
  and the two read the same page differently (spaces, line breaks, ligatures, sometimes the order of
  columns), so offsets cannot be carried over; ``aligned_rects`` finds the passage's characters among
  PDFium's instead. Doing that at view time costs about 0.1 s for one page, in the parsing worker,
  where storing boxes for every character of every page would cost every text PDF ingestion time
  and some 100 KB of catalog per page, for the few pages anyone opens; and documents ingested before
  this existed get highlights too.

Rectangles are (x0, y0, x1, y1) fractions of the page's width and height, from its top left, so they
fit a rendering of any size. Boxes of consecutive characters or words on one line are merged into
one rectangle per line. Left out: text in reading orders PDFium and pypdf disagree on beyond what a
diff can line up (the unmatched part is simply not highlighted).
"""

from __future__ import annotations

import difflib
import unicodedata
from typing import Sequence

Rect = tuple[float, float, float, float]
LINE_GAP = 0.08  # a horizontal gap wider than this (of the page's width) starts a new rectangle
MIN_MATCH = 4  # diff blocks shorter than this are chance matches, not the passage
MAX_DIFF = 20_000  # characters of a page's layer; past this, lining up (quadratic at worst) is not tried


def word_rects(boxes: Sequence[Sequence[float]], start: int, end: int) -> list[Rect]:
    """OCR word boxes (start, end, x0, y0, x1, y1) -> line rectangles of the words that overlap [start, end)."""
    return merge_lines([(b[2], b[3], b[4], b[5]) for b in boxes if b[0] < end and b[1] > start])


# Hyphens: PDFium marks a line-end hyphen as its own character (U+FFFE, dropped with the other
# control and unassigned characters), pypdf keeps it as "-" or not at all. "|": the cell borders of
# tables that the loader writes as Markdown, which the page does not show as characters.
_SKIP = frozenset("-|\u00ad\u2010\u2011")


def _compact(text: str) -> tuple[str, list[int]]:
    """text without whitespace, hyphens and control characters, in NFKC lower case (a ligature
    becomes its letters), with the index in text of every character kept."""
    chars: list[str] = []
    where: list[int] = []
    for i, c in enumerate(text):
        if c.isspace() or c in _SKIP or unicodedata.category(c)[0] == "C":
            continue
        for d in unicodedata.normalize("NFKC", c).lower():
            if not d.isspace() and d not in _SKIP:
                chars.append(d)
                where.append(i)
    return "".join(chars), where


def aligned_rects(page_text: str, start: int, end: int, layer_text: str, layer_boxes: Sequence[Rect]) -> list[Rect]:
    """Rectangles of page_text[start:end] found in a text layer read another way (layer_text, with one
    box per character). Exact when the passage's characters appear in the layer in the same order
    (whitespace aside); otherwise the longest runs they share, found with difflib."""
    passage, _ = _compact(page_text[start:end])
    layer, layer_at = _compact(layer_text)
    if not passage or not layer:
        return []
    hits: list[int] = []
    found = layer.find(passage)
    if found >= 0 and layer.find(passage, found + 1) < 0:
        hits = list(range(found, found + len(passage)))
    elif len(layer) <= MAX_DIFF and len(page_text) <= 2 * MAX_DIFF:
        # Line the whole page up with the layer, then keep the layer characters that line up with the passage.
        page, page_at = _compact(page_text)
        first = next((k for k, i in enumerate(page_at) if i >= start), len(page_at))
        last = next((k for k, i in enumerate(page_at) if i >= end), len(page_at))
        matcher = difflib.SequenceMatcher(None, page, layer, autojunk=False)
        for a, b, size in matcher.get_matching_blocks():
            if size < MIN_MATCH:
                continue
            lo, hi = max(a, first), min(a + size, last)
            hits += [b + k - a for k in range(lo, hi)]
    rects = []
    for k in sorted(set(hits)):
        box = layer_boxes[layer_at[k]]
        if box[2] > box[0] and box[3] > box[1]:
            rects.append(tuple(box))
    return merge_lines(rects)


def merge_lines(rects: Sequence[Rect]) -> list[Rect]:
    """Boxes in reading order -> one rectangle per run of boxes on the same line."""
    out: list[list[float]] = []
    for x0, y0, x1, y1 in rects:
        if out:
            last = out[-1]
            overlap = min(last[3], y1) - max(last[1], y0)
            same_line = overlap > 0.5 * min(last[3] - last[1], y1 - y0)
            if same_line and last[0] - LINE_GAP <= x0 <= last[2] + LINE_GAP:
                last[0], last[1], last[2], last[3] = min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)
                continue
        out.append([x0, y0, x1, y1])
    return [tuple(r) for r in out]
