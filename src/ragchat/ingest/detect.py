"""A file's first bytes -> its kind (pdf, docx, xlsx, pptx, epub, image, html, md, csv, eml, txt), or a
LoadError naming what the file looks like; and the ZIP bomb check every ZIP container passes first.

The content decides, the file name only breaks ties between text-like kinds (see ``detect_kind``).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ragchat.core.errors import LoadError
from ragchat.ingest.decode import BOMS, bomless_utf16

SUPPORTED = (
    "ragchat reads PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), CSV, EPUB, e-mail (.eml), "
    "images (.png, .jpg, .tiff, .webp), .txt, .md and .html"
)
# A ZIP member is a bomb when it unpacks to more than this and far more than it takes in the file
# (media such as video is stored nearly uncompressed, XML compresses 5-20x, a bomb 1000x).
ZIP_MAX_MEMBER = 256 * 1024 * 1024
ZIP_MAX_TOTAL = 1024 * 1024 * 1024
ZIP_MAX_RATIO = 20
ZIP_MAX_MEMBERS = 10_000

# Formats people drop in by mistake. Checked after %PDF, so a PDF is never refused here.
_MAGIC: list[tuple[bytes, str]] = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc, .xls or .ppt; save it as .docx, .xlsx or .pptx)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"AT&TFORM", "a DjVu document"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
]
_IMAGE_MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*"]
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# ZIP is the container of many document formats; the extension says which one it probably is.
_ZIP_FORMATS = {
    ".docx": "a Word document (.docx)",
    ".xlsx": "an Excel workbook (.xlsx)",
    ".pptx": "a PowerPoint file (.pptx)",
    ".odt": "an OpenDocument text (.odt)",
    ".epub": "an EPUB book (.epub)",
}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
MARKDOWN_EXTENSIONS = {".md", ".markdown"}
_CSV_EXTENSIONS = {".csv", ".tsv"}


def detect_kind(path: Path, head: bytes) -> str:
    """Return the kind of a file whose first bytes are ``head`` (see LoadedDocument.kind).

    The content decides first, so a ZIP named .pdf is refused, an HTML page named .pdf is read as
    HTML and a Word file named .pdf as Word. For ZIP containers the member names decide (the ZIP
    directory is read, and checked for bombs). The extension only chooses among text-like kinds.
    """
    if not head:
        raise LoadError("empty file: it has 0 bytes, so there is nothing to read", reason="empty")
    # Readers accept the header anywhere in the first 1024 bytes, after junk from mail gateways.
    if b"%PDF-" in head[:1024]:
        return "pdf"
    ext = path.suffix.lower()
    if head.startswith(_ZIP_MAGIC):
        return _zip_kind(path, ext)
    if any(head.startswith(magic) for magic in _IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise _unsupported(what)
    text = _sniff_text(head)
    if text is None:
        raise _unsupported("a binary file")
    if ext in HTML_EXTENSIONS or (ext not in _CSV_EXTENSIONS and ext != ".eml" and _looks_like_html(text)):
        return "html"
    if ext in MARKDOWN_EXTENSIONS:
        return "md"
    if ext in _CSV_EXTENSIONS:
        return "csv"
    if ext == ".eml":
        return "eml"
    return "txt"


def _unsupported(what: str) -> LoadError:
    return LoadError(f"unsupported file type: looks like {what}; {SUPPORTED}", reason="unsupported")


def _zip_kind(path: Path, ext: str) -> str:
    """docx, xlsx, pptx or epub from the names inside the ZIP, after checking its directory for bombs."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            check_zip(infos)
            names = {info.filename for info in infos}
            mimetype = archive.read("mimetype")[:64].strip() if "mimetype" in names else b""
    except zipfile.BadZipFile as exc:
        if ext in _ZIP_FORMATS:
            what = re.sub(r"^an? ", "", _ZIP_FORMATS[ext])
            raise LoadError(f"corrupt {what}: not a readable ZIP container ({exc})", reason="corrupt") from None
        raise _unsupported("a ZIP archive") from None
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise LoadError(f"corrupt ZIP container: {exc}", reason="corrupt") from None
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    if mimetype == b"application/epub+zip" or ("META-INF/container.xml" in names and ext == ".epub"):
        return "epub"
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        raise _unsupported("an OpenDocument file (save it as .docx, .xlsx or .pptx)")
    raise _unsupported(_ZIP_FORMATS.get(ext, "a ZIP archive"))


def check_zip(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a ZIP bomb from the sizes its directory declares, before anything is unpacked.

    Python's zipfile never unpacks more than a member's declared size, so the declared sizes bound
    what parsing can cost."""
    if len(infos) > ZIP_MAX_MEMBERS:
        raise LoadError(f"too many parts: {len(infos):,} files inside the ZIP container (at most {ZIP_MAX_MEMBERS:,})",
                        reason="too-large")
    total = packed = 0
    for info in infos:
        total += info.file_size
        packed += info.compress_size
        if info.file_size > ZIP_MAX_MEMBER and info.file_size > ZIP_MAX_RATIO * max(1, info.compress_size):
            raise _zip_bomb(f"{info.filename} would unpack to {info.file_size / 2**20:,.0f} MB "
                            f"from {info.compress_size / 2**20:,.1f} MB")
    if total > ZIP_MAX_TOTAL and total > ZIP_MAX_RATIO * max(1, packed):
        raise _zip_bomb(f"its parts would unpack to {total / 2**20:,.0f} MB from {packed / 2**20:,.1f} MB")


def _zip_bomb(detail: str) -> LoadError:
    return LoadError(f"looks like a ZIP bomb: {detail}; refused before unpacking", reason="too-large")


def _sniff_text(head: bytes) -> str | None:
    """The head decoded well enough to look for HTML tags, or None when it looks binary."""
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, errors="replace")
    if encoding := bomless_utf16(head):
        return head.decode(encoding, errors="replace")
    # Binary formats are full of NULs and other control bytes; text has at most a stray one.
    controls = sum(1 for b in head if b < 0x20 and b not in b"\t\n\r\x0c\x1b")
    if head.count(0) > max(1, len(head) // 100) or controls > len(head) * 0.05:
        return None
    # Only ASCII tags matter for sniffing; latin-1 never fails.
    return head.decode("latin-1")


def _looks_like_html(text: str) -> bool:
    start = text.lstrip("\ufeff \t\r\n").lower()[:1024]
    if start.startswith(("<!doctype html", "<html")):
        return True
    return start.startswith("<") and any(tag in start for tag in ("<html", "<head", "<body"))


