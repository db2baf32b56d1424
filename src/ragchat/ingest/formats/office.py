"""Office Open XML files -> pages of Markdown-flavoured text: Word (.docx), PowerPoint (.pptx), Excel (.xlsx).

Each reader goes through its library (python-docx, python-pptx, openpyxl), which share lxml and the
OOXML package format, so they live together here. Structure is kept in the text that is chunked:
Word headings become ``#`` lines, list items ``-`` lines and tables Markdown tables; a slide is a page
(title, text, tables, then its speaker notes); a sheet is a page holding one Markdown table whose
first non-empty row is the header.

Type detection (``ragchat.ingest.detect``) has already checked the ZIP directory for bombs. Left
out: text in text boxes, headers, footers, footnotes and comments of Word files; charts, SmartArt
and pictures on slides (no OCR of pictures inside documents); formulas (the value Excel last
computed is read) and cell formatting in sheets.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Iterable

from ragchat.core.errors import LoadError
from ragchat.ingest.formats.table import markdown_table

MAX_SHEET_CELLS = 2_000_000  # per workbook; a hostile sheet can claim a million rows of nothing


def _join(blocks: Iterable[str]) -> str:
    return "\n\n".join(b for b in (b.strip() for b in blocks) if b)


# --- Word ---------------------------------------------------------------------------------------

_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)


def docx_text(path: Path) -> str:
    """The body of a Word document in reading order: headings, paragraphs, list items, tables."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        blocks = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks.append(markdown_table([[c.text for c in row.cells] for row in block.rows]))
            else:
                blocks.append(_docx_paragraph(block))
    except (LoadError, MemoryError, RecursionError):
        raise
    except Exception as exc:
        raise corrupt("Word document", exc) from None
    return _join(blocks)


def _docx_paragraph(paragraph) -> str:
    text = paragraph.text.strip()
    if not text:
        return ""
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style.lower() == "title":
        return f"# {text}"
    if m := _HEADING.match(style):
        return "#" * max(1, int(m.group(1))) + " " + text
    if style.lower().startswith("list"):
        return f"- {text}"
    return text


# --- PowerPoint ---------------------------------------------------------------------------------


def pptx_pages(path: Path) -> list[tuple[int, str]]:
    """(slide number, text) for every slide with text: title, shapes from top to bottom, speaker notes."""
    from pptx import Presentation

    try:
        presentation = Presentation(str(path))
        pages = []
        for number, slide in enumerate(presentation.slides, 1):
            title_shape = slide.shapes.title
            blocks = [f"# {title_shape.text_frame.text.strip()}"] if title_shape is not None and title_shape.text_frame.text.strip() else []
            others = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
            blocks += _pptx_shapes(others)
            if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None and notes.text.strip():
                blocks.append("Speaker notes:\n" + notes.text.strip())
            text = _join(blocks)
            if text:
                pages.append((number, text))
    except (LoadError, MemoryError, RecursionError):
        raise
    except Exception as exc:
        raise corrupt("PowerPoint file", exc) from None
    return pages


def _pptx_shapes(shapes) -> list[str]:
    from pptx.shapes.group import GroupShape

    blocks = []
    # Reading order is top to bottom, then left to right; the XML order is the drawing (z) order.
    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if isinstance(shape, GroupShape):
            blocks += _pptx_shapes(shape.shapes)
        elif getattr(shape, "has_table", False):
            blocks.append(markdown_table([[c.text for c in row.cells] for row in shape.table.rows]))
        elif shape.has_text_frame:
            lines = []
            for paragraph in shape.text_frame.paragraphs:
                line = paragraph.text.replace("\v", " ").strip()  # \v is a line break inside a paragraph
                if line:
                    lines.append("  " * paragraph.level + line)
            blocks.append("\n".join(lines))
    return blocks


# --- Excel --------------------------------------------------------------------------------------


def xlsx_pages(path: Path) -> tuple[list[tuple[int, str]], list[str]]:
    """(sheet number, "# name" + Markdown table) for every worksheet with data, and warnings."""
    import openpyxl

    warnings: list[str] = []
    pages = []
    # A file object, not the path: openpyxl refuses names that do not end in .xlsx (a misnamed file).
    with open(path, "rb") as fh:
        try:
            workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except (LoadError, MemoryError, RecursionError):
            raise
        except Exception as exc:
            raise corrupt("Excel workbook", exc) from None
        try:
            budget = MAX_SHEET_CELLS
            for number, sheet in enumerate(workbook.worksheets, 1):
                if budget <= 0:
                    warnings.append(f"only the first {MAX_SHEET_CELLS:,} cells were read; sheet {number} and later were skipped")
                    break
                # The stored dimension can claim a million empty rows; read the rows that are there.
                sheet.reset_dimensions()
                rows: list[list[str]] = []
                for values in sheet.iter_rows(values_only=True):
                    budget -= len(values)
                    if budget < 0:
                        warnings.append(f"only the first {MAX_SHEET_CELLS:,} cells were read; sheet '{sheet.title}' was cut short")
                        break
                    row = [_xlsx_value(v) for v in values]
                    if any(row):
                        rows.append(row)
                table = markdown_table(rows)
                if table:
                    pages.append((number, f"# {sheet.title}\n\n{table}"))
        except (LoadError, MemoryError, RecursionError):
            raise
        except Exception as exc:
            raise corrupt("Excel workbook", exc) from None
        finally:
            workbook.close()
    return pages, warnings


def _xlsx_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, _dt.datetime):
        return value.date().isoformat() if value.time() == _dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    return str(value)


def corrupt(what: str, exc: Exception) -> LoadError:
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(detail) > 120:
        detail = detail[:117] + "..."
    return LoadError(f"corrupt {what}: {detail}", reason="corrupt")
