"""PDF -> one page of text per PDF page, from its text layer (pypdf), with OCR for the pages that need it.

Steps of ``load_pdf``: open the file and unlock it (``_open``: an empty user password first, for
copy-protected files); read each page's text layer (``_read_text_layer``: ruled tables as Markdown
when asked, ``ragchat.ingest.formats.pdf_tables``) and pick the pages OCR should read; render and
OCR those (``_ocr``: PDFium through ``ragchat.ingest.rendering``, Tesseract through
``ragchat.ingest.ocr``); then say what happened in warnings, or why nothing could be read.

Which pages get OCR: under ``ocr="auto"``, pages whose text layer is garbage (``garbage_reason``)
or nearly empty; under ``"force"``, every page; under ``"off"``, none. A page OCR finds no text on
keeps its text layer, unless that layer was garbage (garbage is worse than nothing in an index).

Left out: layout analysis (columns come out in pypdf's reading order, and so do tables without
rules).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ragchat.core.errors import LoadError
from ragchat.ingest import ocr as tesseract
from ragchat.ingest.decode import clean
from ragchat.ingest.document import LoadedDocument, Page, Progress
from ragchat.ingest.formats.pdf_tables import PdfTables
from ragchat.ingest.rendering import PdfPages

_FEW_CHARS = 10  # a page with fewer non-space characters than this has no real text layer (a page number, a stamp)


@dataclass
class _TextLayer:
    """What the text layers of the pages read say, and which pages OCR should read."""

    texts: dict[int, str] = field(default_factory=dict)  # page number -> cleaned text
    candidates: list[int] = field(default_factory=list)  # pages to OCR
    garbage: dict[int, str] = field(default_factory=dict)  # page number -> garbage_reason
    unreadable: list[int] = field(default_factory=list)
    first_error: Exception | None = None


def load_pdf(path: Path, password: str | None, max_pages: int, ocr: str = "off", timeout_s: float | None = None,
             progress: Progress | None = None, tables: bool = False) -> LoadedDocument:
    reader, total = _open(path, password)
    # Ruled tables as Markdown rows; OCR replaces every page's text under "force", so not then.
    finder = PdfTables(path, password) if tables and ocr != "force" else None
    layer = _read_text_layer(reader, min(total, max_pages), ocr, finder)

    warnings = []
    if layer.unreadable:
        shown = ", ".join(map(str, layer.unreadable[:10])) + (", ..." if len(layer.unreadable) > 10 else "")
        warnings.append(f"{len(layer.unreadable)} page(s) could not be read and were skipped: {shown}")
    if total > max_pages:
        warnings.append(f"only the first {max_pages} of {total} pages were read (ingest.max_pages)")

    pages = {n: Page(number=n, text=t) for n, t in layer.texts.items()}
    ocr_done: list[int] = []
    unrendered: list[int] = []
    ocr_missing: LoadError | None = None
    if layer.candidates:
        try:
            tesseract.languages()
        except tesseract.OcrUnavailable as exc:
            ocr_missing = exc
        if ocr_missing is None:
            ocr_done, unrendered = _ocr(path, password, layer, pages, warnings, timeout_s, progress)
        elif layer.garbage and ocr == "auto":
            warnings.append(f"{len(layer.garbage)} page(s) have a garbage text layer and need OCR: {ocr_missing}")
    if layer.garbage:
        first = min(layer.garbage)
        warnings.append(f"{len(layer.garbage)} page(s) had a garbage text layer (page {first}: {layer.garbage[first]})")
    if ocr_done:
        warnings.append(f"{len(ocr_done)} page(s) were read with OCR")

    if not pages:
        raise _nothing_read(layer, ocr, ocr_missing, unrendered)
    if ocr_missing is not None and ocr == "force":
        raise ocr_missing
    return LoadedDocument(kind="pdf", pages=[pages[n] for n in sorted(pages)], warnings=warnings, ocr_pages=ocr_done)


def _open(path: Path, password: str | None):
    """(pypdf reader, number of pages), unlocked; LoadError when the file cannot be opened."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            _unlock(reader, password)
        return reader, len(reader.pages)
    except (LoadError, MemoryError):
        raise
    except Exception as exc:
        raise _corrupt(exc) from None


def _read_text_layer(reader, count: int, ocr: str, finder: PdfTables | None) -> _TextLayer:
    """The text layers of the first `count` pages, and which of them OCR should read."""
    layer = _TextLayer()
    for index in range(count):
        number = index + 1
        try:
            raw = reader.pages[index].extract_text() or ""
        except MemoryError:
            raise
        except Exception as exc:  # one broken page should not cost the whole document
            layer.unreadable.append(number)
            layer.first_error = layer.first_error or exc
            continue
        text = clean_pdf_text(finder.page_text(reader.pages[index], number, raw) if finder else raw)
        if text:
            layer.texts[number] = text
        if ocr == "force":
            layer.candidates.append(number)
        elif ocr == "auto":
            if reason := garbage_reason(raw):
                layer.garbage[number] = reason
                layer.candidates.append(number)
            elif sum(1 for c in text if not c.isspace()) < _FEW_CHARS:
                layer.candidates.append(number)
    if finder is not None:
        finder.close()
    return layer


def _ocr(path: Path, password: str | None, layer: _TextLayer, pages: dict[int, Page], warnings: list[str],
         timeout_s: float | None, progress: Progress | None) -> tuple[list[int], list[int]]:
    """OCR the candidate pages into `pages`, in place; returns (pages read with OCR, pages PDFium could not render)."""
    try:
        rendered = PdfPages(path, password)
    except LoadError as exc:  # PDFium cannot open what pypdf could: keep the text layer
        if not pages:
            raise
        warnings.append(f"{len(layer.candidates)} page(s) could not be read with OCR: {exc}")
        return [], []

    ocr_done: list[int] = []
    unrendered: list[int] = []

    def render(number: int):
        try:
            return rendered.render(number)
        except LoadError:  # one page PDFium cannot draw: the others still get OCR
            unrendered.append(number)
            return None

    pictures = ((n, functools.partial(render, n)) for n in layer.candidates)
    try:
        for number, result in tesseract.ocr_pages(pictures, len(layer.candidates), timeout_s, progress):
            if result.text.strip():
                pages[number] = Page(number=number, text=result.text, boxes=result.boxes)
                ocr_done.append(number)
            elif number in layer.garbage:  # garbage is worse than nothing in an index
                pages.pop(number, None)
    finally:
        rendered.close()
    if unrendered:
        warnings.append(f"{len(unrendered)} page(s) could not be rendered for OCR: {', '.join(map(str, unrendered[:10]))}")
    return ocr_done, unrendered


def _nothing_read(layer: _TextLayer, ocr: str, ocr_missing: LoadError | None, unrendered: list[int]) -> LoadError:
    """Why no page of the PDF has text."""
    if layer.first_error is not None:
        return _corrupt(layer.first_error, "no page could be read")
    if ocr_missing is not None:
        return LoadError(f"no text layer: looks scanned, and {ocr_missing}", reason="scanned")
    if unrendered:
        return LoadError("corrupt PDF: no page has a text layer, and PDFium could not render them for OCR", reason="corrupt")
    if ocr == "off":
        return LoadError('no text layer: looks scanned; set ingest.ocr = "auto" to read it with OCR, '
                         "or OCR it first (e.g. ocrmypdf) and add it again", reason="scanned")
    return LoadError("no text: the pages have no text layer and OCR found no text on them", reason="empty")


def _unlock(reader, password: str | None) -> None:
    from pypdf.errors import DependencyError

    try:
        # Copy-protected files have only an owner password and open with an empty user password.
        if reader.decrypt(""):
            return
        if password is None:
            raise LoadError("encrypted: a password is needed (ragchat ingest --password ...)", reason="encrypted")
        if reader.decrypt(password):
            return
    except DependencyError:
        raise LoadError(
            "encrypted with AES, which needs the 'cryptography' package: pip install cryptography", reason="encrypted"
        ) from None
    except NotImplementedError as exc:  # certificate-based or unknown security handlers
        raise LoadError(f"encrypted with a method ragchat cannot open ({exc}); save an unprotected copy", reason="encrypted") from None
    raise LoadError("encrypted: the password is wrong; try again with the right one (--password ...)", reason="encrypted")


def _corrupt(exc: Exception, what: str = "") -> LoadError:
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(detail) > 120:
        detail = detail[:117] + "..."
    return LoadError(f"corrupt PDF: {what} ({detail})" if what else f"corrupt PDF: {detail}", reason="corrupt")


# --- the text layer ----------------------------------------------------------------------------

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st", "\xad": None})


def clean_pdf_text(text: str) -> str:
    """Light whitespace normalisation for text that came out of a PDF's layout.

    Spaces inside lines are collapsed and lines trimmed (PDF indentation is layout, not meaning), a
    word hyphenated across a line break is joined, and at most one blank line is kept, so paragraph
    breaks survive.
    """
    text = clean(text).translate(_LIGATURES)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    # "exam-\nple" -> "example"; only lowercase on both sides, so "COVID-\n19" and "Jean-\nPaul" stay.
    text = re.sub(r"([a-z])-\n([a-z])", r"\1\2", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_UNMAPPED = {"Co", "Cs", "Cn", "Cc"}  # private use, surrogates, unassigned, controls
_LEADERS = re.compile(r"([^\w\s])\1{2,}")
_NEUTRAL = set(".,;:()[]%/|-–—'\"·•、，。：；（）")  # punctuation of numbers, tables and lists: neither letters nor junk


def garbage_reason(raw: str) -> str | None:
    """Why a PDF page's extracted text looks like garbage, or None when it looks like text.

    Broken fonts (no ToUnicode map, custom encodings) come out of pypdf in three ways, each checked
    on the page's non-space characters, and only on pages with at least 20 of them:
    - unmapped characters: U+FFFD, private-use, unassigned or control characters are over 10 %;
    - symbol soup: letters and digits (any script) are under half of the characters that are not
      common punctuation (. , ; : brackets % / | dashes quotes), as when glyph numbers land on symbols;
    - mojibake: Latin-1 accented letters (U+00C0-U+00FF) are over 30 % of the letters, as when
      GBK or Big5 bytes are read one byte at a time (French or German text has about 3 %).
    Runs of one repeated mark (the dot leaders of a table of contents) count as one character.
    None of the text pages of the shared PDFs (English, Chinese, bilingual, tables) trips them.
    """
    chars = [c for c in _LEADERS.sub(r"\1", raw) if not c.isspace()]
    n = len(chars)
    if n < 20:
        return None
    unmapped = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in _UNMAPPED)
    if unmapped > 0.1 * n:
        return f"{unmapped / n:.0%} of its characters are unmapped (replacement, private-use or control characters)"
    letters = sum(1 for c in chars if unicodedata.category(c)[0] in "LN")
    neutral = sum(1 for c in chars if c in _NEUTRAL)
    if letters < 0.5 * (n - neutral):
        return f"only {letters / n:.0%} of its characters are letters or digits"
    accented = sum(1 for c in chars if "\u00c0" <= c <= "\u00ff")
    if accented > 0.3 * letters:
        return f"{accented / letters:.0%} of its letters are Latin-1 accented letters (mojibake)"
    return None
