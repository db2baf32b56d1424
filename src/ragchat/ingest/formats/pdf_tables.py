"""Ruled tables in PDF pages -> Markdown rows, spliced into the page's text layer.

pypdf reads a table cell by cell in content order, so a table comes out as loose lines of values
with nothing to say which column a value is in, and the chunker cannot repeat its header. This
module finds tables drawn with rules (lines or rectangles around the cells) with pdfplumber, and
writes each one as a Markdown table (first row as the header) in place of its text, so that every
chunk of a table carries the header's column names (``ragchat.ingest.chunking``).

How the table takes the place of its text: the page's text is extracted by pypdf as before, but with
a visitor that gives the position of every piece of text. Pieces whose position falls inside an
accepted table are dropped, and the table's Markdown goes where its first piece was, so the rest of
the page keeps pypdf's reading order (columns stay columns). The page text the catalog stores is
that spliced text, and chunk offsets point into it as into any page text.

Which pages are searched: only those where PDFium finds at least 2 horizontal and 2 vertical drawn
segments (``has_rules``, about 2 ms a page). pdfminer, under pdfplumber, reads such a page again
in pure Python (about 0.2 s); over the shared PDFs parsing took 3.3 times as long, and retrieval of
table questions did not improve (docs/PERFORMANCE.md, section 10; docs/RETRIEVAL.md), which is why
``ingest.pdf_tables`` can turn it off.

A table is accepted only when it looks like one and the splice is exact enough:
- at least 2 rows and 2 columns with text, after empty rows and columns are dropped, and not a
  header over one "row" whose every cell holds 3 or more lines (a table whose rows are not ruled);
- not inside another accepted table (a table drawn inside a cell stays part of that cell);
- the characters of its cells match, within 10 %, the characters of the pypdf text inside its box.
  Page frames and layout boxes whose "cells" overlap (a box around a column of text that holds
  boxes of its own) repeat text and fail this, as does any page where the two libraries disagree
  on positions. A page whose tables all fail keeps pypdf's text unchanged.

Any error of pdfplumber on a page (a broken or hostile page) leaves that page's text as pypdf read
it; an error opening the document turns tables off for the whole document. Pages with more drawn
edges than ``MAX_EDGES`` are not searched (finding a grid costs time that grows with their
square). Left out: tables without rules (aligned by whitespace only, as in most academic papers),
rotated pages, tables that continue on the next page (each page's part is its own table, and a
part that starts without the header row uses its first row as one), and merged cells (a cell that
spans several rows or columns is written once, the others stay empty).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ragchat.core.text import CJK_RANGE
from ragchat.ingest.formats.table import markdown_table

MIN_ROWS = 2
MIN_COLUMNS = 2
MAX_EDGES = 5000  # drawn line segments on a page; past this the page is not searched for tables
CHAR_TOLERANCE = 0.10  # cells' characters vs. the text layer's inside the table's box
_EDGE_TOLERANCE = 2.0  # points: text drawn on a rule still counts as inside

_CJK = re.compile(f"[\u3000-\u303f{CJK_RANGE}\uff00-\uffef]")  # Han, with CJK punctuation and full-width forms
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class FoundTable:
    bbox: tuple[float, float, float, float]  # x0, top, x1, bottom in points, from the page's top left
    rows: tuple[tuple[str, ...], ...]  # cell texts on one line each, empty rows and columns dropped

    @property
    def chars(self) -> int:
        return sum(len(_WS.sub("", cell)) for row in self.rows for cell in row)

    def markdown(self) -> str:
        return markdown_table(self.rows)


def join_lines(text: str | None) -> str:
    """A cell's lines on one line: no space between two CJK characters, one space otherwise."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    out = ""
    for line in lines:
        if out and not (_CJK.match(out[-1]) and _CJK.match(line[0])):
            out += " "
        out += line
    return _WS.sub(" ", out)


def clean_rows(rows: list[list[str | None]]) -> tuple[tuple[str, ...], ...]:
    """Cell texts joined to one line each; rows and columns without any text dropped."""
    cells = [[join_lines(c) for c in row] for row in rows]
    cells = [r for r in cells if any(r)]
    if not cells:
        return ()
    width = max(len(r) for r in cells)
    cells = [r + [""] * (width - len(r)) for r in cells]
    keep = [i for i in range(width) if any(r[i] for r in cells)]
    return tuple(tuple(r[i] for i in keep) for r in cells)


def _unruled_rows(raw: list[list[str | None]]) -> bool:
    """A header and one "row" whose every cell holds 3 or more lines: the rows of a table ruled only
    around its columns (or only above and below), which pypdf reads row by row better."""
    body = [r for r in raw[1:] if any((c or "").strip() for c in r)]
    if len(body) != 1:
        return False
    cells = [c for c in body[0] if (c or "").strip()]
    return all(len((c or "").strip().splitlines()) >= 3 for c in cells)


def _inside(inner: tuple[float, ...], outer: tuple[float, ...], tol: float = _EDGE_TOLERANCE) -> bool:
    return (inner[0] >= outer[0] - tol and inner[1] >= outer[1] - tol
            and inner[2] <= outer[2] + tol and inner[3] <= outer[3] + tol)


def has_rules(pdfium_page, max_segments: int = 20_000) -> bool:
    """Whether PDFium finds at least 2 horizontal and 2 vertical straight segments drawn on the page.

    pdfplumber's "lines" strategy needs both to make a cell; reading a page with pdfminer costs 10-50
    times more than this look at PDFium's path objects, so pages without them are not read twice."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    x, y = ctypes.c_float(), ctypes.c_float()
    horizontal = vertical = seen = 0
    for obj in pdfium_page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH], max_depth=4):
        previous = None
        for i in range(pdfium_c.FPDFPath_CountSegments(obj.raw)):
            seen += 1
            if seen > max_segments:  # a drawing, not a table; let pdfplumber decide
                return True
            segment = pdfium_c.FPDFPath_GetPathSegment(obj.raw, i)
            if not pdfium_c.FPDFPathSegment_GetPoint(segment, x, y):
                continue
            point = (x.value, y.value)
            if previous is not None and pdfium_c.FPDFPathSegment_GetType(segment) == pdfium_c.FPDF_SEGMENT_LINETO:
                dx, dy = abs(point[0] - previous[0]), abs(point[1] - previous[1])
                horizontal += dy < 1 and dx > 5
                vertical += dx < 1 and dy > 5
                if horizontal >= 2 and vertical >= 2:
                    return True
            previous = point
    return False


def find_tables(plumber_page) -> list[FoundTable]:
    """Ruled tables on one pdfplumber page that pass the shape checks (not yet the text check)."""
    if plumber_page.rotation:
        return []
    if len(plumber_page.edges) > MAX_EDGES:
        return []
    found = []
    for table in plumber_page.find_tables():
        raw = table.extract()
        rows = clean_rows(raw)
        if len(rows) >= MIN_ROWS and len(rows[0]) >= MIN_COLUMNS and not _unruled_rows(raw):
            found.append(FoundTable(tuple(table.bbox), rows))
    # Largest first, so that a table drawn inside another's cell is the one dropped.
    found.sort(key=lambda t: -(t.bbox[2] - t.bbox[0]) * (t.bbox[3] - t.bbox[1]))
    kept: list[FoundTable] = []
    for table in found:
        if not any(_inside(table.bbox, other.bbox) for other in kept):
            kept.append(table)
    return kept


def splice(pypdf_page, page_height: float, tables: list[FoundTable]) -> str | None:
    """The page's pypdf text with each table that passes the text check in place of its text, or
    None when no table passes (then the caller keeps the text it has)."""
    pieces: list[tuple[str, float, float]] = []

    def visit(text, cm, tm, font_dict, font_size):
        # The text's origin in user space: the text matrix's translation through the CTM.
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        pieces.append((text, x, page_height - y))

    text = pypdf_page.extract_text(visitor_text=visit) or ""
    if "".join(p[0] for p in pieces) != text:  # the visitor did not see everything: do not guess
        return None

    labels: list[int | None] = []
    layer_chars = [0] * len(tables)
    for piece, x, top in pieces:
        label = None
        if piece.strip():
            for k, t in enumerate(tables):
                x0, t0, x1, t1 = t.bbox
                if x0 - _EDGE_TOLERANCE <= x <= x1 + _EDGE_TOLERANCE and t0 - _EDGE_TOLERANCE <= top <= t1 + _EDGE_TOLERANCE:
                    label = k
                    layer_chars[k] += len(_WS.sub("", piece))
                    break
        labels.append(label)
    accepted = {
        k for k, t in enumerate(tables)
        if layer_chars[k] and abs(t.chars - layer_chars[k]) <= CHAR_TOLERANCE * max(t.chars, layer_chars[k])
    }
    if not accepted:
        return None

    out: list[str] = []
    placed: set[int] = set()
    in_table = False
    for (piece, _, _), label in zip(pieces, labels):
        if label in accepted:
            if label not in placed:
                out.append("\n\n" + tables[label].markdown() + "\n\n")
                placed.add(label)
            in_table = True
            continue
        if not piece.strip():
            if not in_table:  # the spacing inside a table's run is the table's own
                out.append(piece)
            continue
        if in_table:
            out.append("\n\n")
            in_table = False
        out.append(piece)
    return "".join(out)


class PdfTables:
    """Tables of one PDF, page by page, opened on first use. Use as a context manager."""

    def __init__(self, path: Path, password: str | None = None):
        self._path = path
        self._password = password
        self._pdfium = None
        self._plumber = None
        self._broken = False
        self.pages_with_tables: list[int] = []

    def page_text(self, pypdf_page, number: int, text: str) -> str:
        """``text`` (pypdf's text of page ``number``, 1-based) with its ruled tables as Markdown;
        ``text`` itself when the page has none, or when anything goes wrong."""
        try:
            pdfium_doc = self._open_pdfium()
            if pdfium_doc is None:
                return text
            page = pdfium_doc[number - 1]
            try:
                if not has_rules(page):
                    return text
            finally:
                page.close()
            plumber = self._open_plumber()
            if plumber is None:
                return text
            plumber_page = plumber.pages[number - 1]
            try:
                tables = find_tables(plumber_page)
                spliced = splice(pypdf_page, float(plumber_page.height), tables) if tables else None
            finally:
                plumber_page.close()
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - a page the table finder cannot read keeps pypdf's text
            return text
        if spliced is None:
            return text
        self.pages_with_tables.append(number)
        return spliced

    def _open_pdfium(self):
        if self._pdfium is None and not self._broken:
            try:
                import pypdfium2 as pdfium

                self._pdfium = pdfium.PdfDocument(str(self._path), password=self._password or None)
            except Exception:  # noqa: BLE001 - the document does not open here: no tables from it
                self._broken = True
        return self._pdfium

    def _open_plumber(self):
        if self._plumber is None and not self._broken:
            try:
                import logging

                import pdfplumber

                # pdfminer logs a warning for every font it cannot fully parse; pypdf reads the text.
                logging.getLogger("pdfminer").setLevel(logging.ERROR)
                self._plumber = pdfplumber.open(self._path, password=self._password or "")
            except Exception:  # noqa: BLE001
                self._broken = True
        return self._plumber

    def close(self) -> None:
        for doc in (self._plumber, self._pdfium):
            if doc is not None:
                with contextlib.suppress(Exception):  # closing a broken file must not fail a load
                    doc.close()
        self._plumber = self._pdfium = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
