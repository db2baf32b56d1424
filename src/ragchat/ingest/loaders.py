"""File type -> pages of text: PDF, Word, PowerPoint, Excel, CSV, EPUB, e-mail, images, text, Markdown, HTML.

``load(path)`` decides the type from the file's first bytes (``ragchat.ingest.detect``: for a ZIP
container, from the names of its members; the file name only breaks ties between text-like kinds),
hands the file to the reader of that type (``ragchat.ingest.formats``) and returns cleaned text in
pages a viewer can show: one ``Page`` per PDF page, slide, sheet, book chapter or image page,
numbered from 1, and a single unnumbered page for text-like files, Word documents, CSV files and
e-mails. Structure stays in the text: headings as ``#`` lines and tables as Markdown tables (the
chunker repeats a table's header row in every chunk of it). Whatever cannot be read becomes a
``LoadError`` whose message says why and what to do, with a short ``reason`` tag (empty,
unsupported, encrypted, scanned, corrupt, too-large, timeout, ...).

OCR (``ocr="auto"``, the default): images, and PDF pages whose text layer is missing or garbage
(``formats.pdf.garbage_reason``), are read by Tesseract (``ragchat.ingest.ocr``), page by page, with
a progress callback ("OCR page 3/8"). ``"force"`` reads every PDF page with OCR; ``"off"`` never runs it.

To add a file format: add a module in formats/ that reads it, a branch for its kind in ``load``
(``_load_container`` for a ZIP container), its magic bytes or ZIP member names in
``detect.detect_kind``, its suffix in ``EXTENSION_KINDS`` below, and its name in ``detect.SUPPORTED``.

Left out on purpose:
- Layout analysis: columns come out in pypdf's reading order, and so do PDF tables, except ruled
  ones, which ``formats.pdf_tables`` writes as Markdown tables in their place.
- Old binary Office files (.doc, .xls, .ppt), OpenDocument, RTF: refused with a message that names
  what the file looks like.
- Protection from hostile files beyond ZIP bombs and image bombs (endless loops, memory blow-ups):
  ``load`` runs in-process with no limits. The app reads files through ``ragchat.ingest.isolation``,
  which adds them.
"""

from __future__ import annotations

from pathlib import Path

from ragchat.core.errors import LoadError
from ragchat.ingest.decode import clean, decode_text
from ragchat.ingest.detect import HTML_EXTENSIONS, MARKDOWN_EXTENSIONS, detect_kind
from ragchat.ingest.document import LoadedDocument, Page, Progress
from ragchat.ingest.formats.csv import csv_text
from ragchat.ingest.formats.epub import epub_pages
from ragchat.ingest.formats.html import html_to_text
from ragchat.ingest.formats.image import load_image
from ragchat.ingest.formats.mail import eml_text
from ragchat.ingest.formats.office import docx_text, pptx_pages, xlsx_pages
from ragchat.ingest.formats.pdf import load_pdf

HEAD_BYTES = 8192  # how much of a file detect_kind looks at
OCR_MODES = ("auto", "off", "force")
# The kind a file's suffix promises; a file whose content says otherwise is read as its content and
# gets a warning.
EXTENSION_KINDS = {
    ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".epub": "epub", ".eml": "eml",
    ".csv": "csv", ".tsv": "csv", ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image",
    ".tiff": "image", ".webp": "image",
    **{ext: "html" for ext in HTML_EXTENSIONS}, **{ext: "md" for ext in MARKDOWN_EXTENSIONS},
}  # fmt: skip
_ZIP_KINDS = {"docx": "Word document", "xlsx": "Excel workbook", "pptx": "PowerPoint file", "epub": "EPUB book"}


def load(
    path: Path,
    password: str | None = None,
    max_pages: int = 5000,
    *,
    ocr: str = "auto",
    ocr_timeout_s: float | None = None,
    progress: Progress | None = None,
    pdf_tables: bool = False,
) -> LoadedDocument:
    """Read one file into pages of text, or raise LoadError saying why it cannot be read.

    ocr: "auto" | "off" | "force" (see the module's docstring). ocr_timeout_s: the longest time for
    one OCR'd page, None for no limit. progress(message, done, total) is called before each OCR'd page.
    pdf_tables: write the ruled tables of PDF pages as Markdown tables (``ragchat.ingest.formats.pdf_tables``).
    """
    if ocr not in OCR_MODES:
        raise ValueError(f"ocr must be one of {OCR_MODES}, not {ocr!r}")
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except FileNotFoundError:
        raise LoadError("file not found: it may have been moved or deleted", reason="missing") from None
    except IsADirectoryError:
        raise LoadError("this is a folder, not a file", reason="unsupported") from None
    except OSError as exc:
        raise LoadError(f"cannot open the file: {exc.strerror or exc}", reason="unreadable") from None

    kind = detect_kind(path, head)
    if kind == "pdf":
        doc = load_pdf(path, password, max_pages, ocr, ocr_timeout_s, progress, tables=pdf_tables)
    elif kind == "image":
        doc = load_image(path, max_pages, ocr, ocr_timeout_s, progress)
    elif kind in ("docx", "pptx", "xlsx", "epub"):
        doc = _load_container(path, kind, max_pages)
    else:
        doc = _load_single_page(path, kind)

    ext = path.suffix.lower()
    named = EXTENSION_KINDS.get(ext)
    if named is not None and named != kind and not (named in ("md", "csv", "eml") and kind == "txt"):
        doc.warnings.append(f"the file is named {ext} but holds {kind.upper()}; it was read as {kind.upper()}")
    return doc


def _load_single_page(path: Path, kind: str) -> LoadedDocument:
    """html, csv, eml, md and txt: the whole file as one unnumbered page."""
    data = path.read_bytes()
    warnings: list[str] = []
    if kind == "html":
        text = html_to_text(data)
    elif kind == "csv":
        text, warnings = csv_text(data, path.suffix.lower())
    elif kind == "eml":
        text = eml_text(data)
    else:
        text = clean(decode_text(data))
    if not text.strip():
        raise LoadError("empty file: it has no text in it", reason="empty")
    doc = LoadedDocument(kind=kind, pages=[Page(number=None, text=text)])
    if "\ufffd" in text:
        doc.warnings.append("some bytes could not be decoded and were replaced by \ufffd")
    doc.warnings += warnings
    return doc


def _load_container(path: Path, kind: str, max_pages: int) -> LoadedDocument:
    """docx, pptx, xlsx and epub: ZIP containers whose directory detect_kind has already checked."""
    warnings: list[str] = []
    if kind == "docx":
        text = docx_text(path)
        numbered: list[tuple[int | None, str]] = [(None, text)] if text else []
    elif kind == "pptx":
        numbered = list(pptx_pages(path))
    elif kind == "xlsx":
        sheets, warnings = xlsx_pages(path)
        numbered = list(sheets)
    else:
        numbered = list(epub_pages(path))
    if len(numbered) > max_pages:
        warnings.append(f"only the first {max_pages} of {len(numbered)} pages were read (ingest.max_pages)")
        numbered = numbered[:max_pages]
    pages = [Page(number=n, text=clean(t)) for n, t in numbered if t.strip()]
    if not pages:
        raise LoadError(f"empty file: this {_ZIP_KINDS[kind]} has no text in it", reason="empty")
    return LoadedDocument(kind=kind, pages=pages, warnings=warnings)
