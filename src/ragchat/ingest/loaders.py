"""File type -> pages of text: PDF, Word, PowerPoint, Excel, CSV, EPUB, e-mail, images, text, Markdown, HTML.

``load(path)`` decides the type from the file's first bytes (for a ZIP container, from the names of
its members; the file name only breaks ties between text-like kinds), reads the file and returns
cleaned text in pages a viewer can show: one ``Page`` per PDF page, slide, sheet, book chapter or
image page, numbered from 1, and a single unnumbered page for text-like files, Word documents, CSV
files and e-mails. Structure stays in the text: headings as ``#`` lines and tables as Markdown
tables (the chunker repeats a table's header row in every chunk of it). Whatever cannot be read
becomes a ``LoadError`` whose message says why and what to do, with a short ``reason`` tag (empty,
unsupported, encrypted, scanned, corrupt, too-large, timeout, ...).

OCR (``ocr="auto"``, the default): images, and PDF pages whose text layer is missing or garbage
(``garbage_reason``), are read by Tesseract (``ragchat.ingest.ocr``), page by page, with a progress
callback ("OCR page 3/8"). ``"force"`` reads every PDF page with OCR; ``"off"`` never runs it.

The readers of each outside library live in their own modules (office, epub, mail, ocr,
rendering); this one detects types, guards ZIP containers, and reads PDF, text and HTML itself.

Left out on purpose:
- Layout analysis: columns come out in pypdf's reading order, and so do PDF tables, except ruled
  ones, which ``ragchat.ingest.pdf_tables`` writes as Markdown tables in their place.
- Old binary Office files (.doc, .xls, .ppt), OpenDocument, RTF: refused with a message that names
  what the file looks like.
- Protection from hostile files beyond ZIP bombs and image bombs (endless loops, memory blow-ups):
  ``load`` runs in-process with no limits. The app reads files through ``ragchat.ingest.isolation``,
  which adds them.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ragchat.core.errors import LoadError

SUPPORTED = (
    "ragchat reads PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), CSV, EPUB, e-mail (.eml), "
    "images (.png, .jpg, .tiff, .webp), .txt, .md and .html"
)
HEAD_BYTES = 8192  # how much of a file detect_kind looks at
OCR_MODES = ("auto", "off", "force")
# A ZIP member is a bomb when it unpacks to more than this and far more than it takes in the file
# (media such as video is stored nearly uncompressed, XML compresses 5-20x, a bomb 1000x).
ZIP_MAX_MEMBER = 256 * 1024 * 1024
ZIP_MAX_TOTAL = 1024 * 1024 * 1024
ZIP_MAX_RATIO = 20
ZIP_MAX_MEMBERS = 10_000
MAX_TABLE_CELLS = 2_000_000  # a CSV file past this is cut, with a warning

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


# --- type detection --------------------------------------------------------------------------

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
_ZIP_KINDS = {"docx": "Word document", "xlsx": "Excel workbook", "pptx": "PowerPoint file", "epub": "EPUB book"}
# Checked longest first, because the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
_MARKDOWN_EXTENSIONS = {".md", ".markdown"}
_CSV_EXTENSIONS = {".csv", ".tsv"}
_EXTENSION_KINDS = {
    ".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".epub": "epub", ".eml": "eml",
    ".csv": "csv", ".tsv": "csv", ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image",
    ".tiff": "image", ".webp": "image",
    **{ext: "html" for ext in _HTML_EXTENSIONS}, **{ext: "md" for ext in _MARKDOWN_EXTENSIONS},
}  # fmt: skip


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
    if ext in _HTML_EXTENSIONS or (ext not in _CSV_EXTENSIONS and ext != ".eml" and _looks_like_html(text)):
        return "html"
    if ext in _MARKDOWN_EXTENSIONS:
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
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, errors="replace")
    if encoding := _bomless_utf16(head):
        return head.decode(encoding, errors="replace")
    # Binary formats are full of NULs and other control bytes; text has at most a stray one.
    controls = sum(1 for b in head if b < 0x20 and b not in b"\t\n\r\x0c\x1b")
    if head.count(0) > max(1, len(head) // 100) or controls > len(head) * 0.05:
        return None
    # Only ASCII tags matter for sniffing; latin-1 never fails.
    return head.decode("latin-1")


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a byte-order mark shows up as NULs in every other byte of mostly-ASCII text."""
    sample = data[:4096]
    half = len(sample) // 2
    if half < 2:
        return None
    even_nuls = sample[0::2].count(0) / half
    odd_nuls = sample[1::2].count(0) / half
    if odd_nuls > 0.3 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.3 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def _looks_like_html(text: str) -> bool:
    start = text.lstrip("\ufeff \t\r\n").lower()[:1024]
    if start.startswith(("<!doctype html", "<html")):
        return True
    return start.startswith("<") and any(tag in start for tag in ("<html", "<head", "<body"))


# --- decoding ----------------------------------------------------------------------------------

_SAMPLE_BYTES = 64 * 1024  # enough to judge an encoding; the whole file is decoded only once
# Tried in this order, so that a tie goes to the more common encoding. cp950 is Windows' Big5;
# big5hkscs adds Hong Kong characters.
_CANDIDATES = ("utf-8", "gb18030", "cp950", "big5hkscs")


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding without producing mojibake.

    A byte-order mark decides first, then strict UTF-8. Otherwise GB18030 and Big5 are both tried
    and the one whose characters are common Chinese characters wins: wrong guesses between the two
    decode "successfully" into rare characters and kana. Korean in EUC-KR is told apart by its
    spacing, Japanese by its kana. Everything else is left to charset-normalizer, with cp1252
    preferred among equally good guesses.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    # Before UTF-8: ASCII text in UTF-16 is valid UTF-8 too, with a NUL after every letter.
    if b"\x00" in data[:4096] and (encoding := _bomless_utf16(data)):
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass

    sample = data[:_SAMPLE_BYTES]
    decoded = {enc: sample.decode(enc, errors="replace") for enc in _CANDIDATES}
    scores = {enc: _plausibility(text) for enc, text in decoded.items()}
    best = max(_CANDIDATES, key=lambda enc: scores[enc])  # max keeps the first of equal scores
    # Kana sit at the same bytes in EUC-JP and GB2312, so Japanese can pass for Chinese with kana
    # in it; Chinese text has next to none.
    kana = len(re.findall("[\u3041-\u30ff]", decoded[best]))
    if scores[best] >= 0.8 and kana < 0.05 * len(decoded[best]):
        if best != "utf-8" and _looks_korean(sample):
            best = "cp949"
        return data.decode(best, errors="replace")

    from charset_normalizer import from_bytes

    results = from_bytes(sample)
    match = results.best()
    if match is None:
        return data.decode("cp1252", errors="replace")
    # Short Western text fits several code pages equally well; then the most common one wins.
    tied = {m.encoding for m in results if m.chaos <= match.chaos and m.coherence >= match.coherence}
    return data.decode("cp1252" if "cp1252" in tied else match.encoding, errors="replace")


def _looks_korean(sample: bytes) -> bool:
    """EUC-KR Hangul bytes are also valid GB2312 hanzi, so Korean "decodes" as plausible Chinese.

    What gives it away is spacing: Korean puts a space between words, Chinese writes none.
    """
    text = sample.decode("cp949", errors="replace")
    if text.count("\ufffd") > 1:  # one is allowed: the sample may end inside a character
        return False
    hangul = sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3")
    non_ascii = sum(1 for ch in text if ch >= "\x80")
    spaced = len(re.findall("[\uac00-\ud7a3] (?=[\uac00-\ud7a3])", text))
    return hangul > 0.8 * non_ascii and spaced > 0.1 * hangul


def _plausibility(text: str) -> float:
    """Share of non-ASCII characters that are common CJK characters or CJK punctuation."""
    common = _common_cjk()
    total = good = 0
    for ch in text:
        if ch < "\x80":
            continue
        total += 1
        if ch in common or "\u3000" <= ch <= "\u303f" or "\uff01" <= ch <= "\uff5e":
            good += 1
    return good / total if total else 0.0


@functools.cache
def _common_cjk() -> frozenset[str]:
    """The 3,755 level-1 characters of GB2312 (simplified) and the 5,401 of Big5 (traditional).

    Both standards list exactly the characters in everyday use, so the codecs themselves give a
    frequency list without shipping one.
    """
    chars = set()
    for lead in range(0xB0, 0xD8):
        for trail in range(0xA1, 0xFF):
            chars.add(bytes((lead, trail)).decode("gb2312", errors="ignore"))
    for lead in range(0xA4, 0xC7):
        for trail in [*range(0x40, 0x7F), *range(0xA1, 0xFF)]:
            chars.add(bytes((lead, trail)).decode("big5", errors="ignore"))
    chars.discard("")
    return frozenset(chars)


# --- text cleaning -----------------------------------------------------------------------------

# C0/C1 controls other than tab and newline, lone surrogates (they break UTF-8 encoding later) and
# the two noncharacters; NUL included.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st", "\xad": None})


def _clean(text: str) -> str:
    """Line ends to \\n and control characters out; nothing else, so Markdown and code keep their shape."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n\n").replace("\x0b", "\n")
    return _CONTROL.sub("", text)


def _clean_pdf_text(text: str) -> str:
    """Light whitespace normalisation for text that came out of a PDF's layout.

    Spaces inside lines are collapsed and lines trimmed (PDF indentation is layout, not meaning), a
    word hyphenated across a line break is joined, and at most one blank line is kept, so paragraph
    breaks survive.
    """
    text = _clean(text).translate(_LIGATURES)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    # "exam-\nple" -> "example"; only lowercase on both sides, so "COVID-\n19" and "Jean-\nPaul" stay.
    text = re.sub(r"([a-z])-\n([a-z])", r"\1\2", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def clean(text: str) -> str:
    """Line ends to \\n and control characters out (for the readers in other modules)."""
    return _clean(text)


# --- garbage text layers -----------------------------------------------------------------------

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


# --- loading -----------------------------------------------------------------------------------


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
    pdf_tables: write the ruled tables of PDF pages as Markdown tables (``ragchat.ingest.pdf_tables``).
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
        doc = _load_pdf(path, password, max_pages, ocr, ocr_timeout_s, progress, tables=pdf_tables)
    elif kind == "image":
        doc = _load_image(path, max_pages, ocr, ocr_timeout_s, progress)
    elif kind in ("docx", "pptx", "xlsx", "epub"):
        doc = _load_container(path, kind, max_pages)
    else:
        data = path.read_bytes()
        if kind == "html":
            text = html_to_text(data)
        elif kind == "csv":
            text, cut = _csv_text(data, path.suffix.lower())
        elif kind == "eml":
            from ragchat.ingest.mail import eml_text

            text = eml_text(data)
        else:
            text = _clean(decode_text(data))
        cut = cut if kind == "csv" else False
        if not text.strip():
            raise LoadError("empty file: it has no text in it", reason="empty")
        doc = LoadedDocument(kind=kind, pages=[Page(number=None, text=text)])
        if "\ufffd" in text:
            doc.warnings.append("some bytes could not be decoded and were replaced by \ufffd")
        if cut:
            doc.warnings.append(f"only the first {MAX_TABLE_CELLS:,} cells were read")

    ext = path.suffix.lower()
    named = _EXTENSION_KINDS.get(ext)
    if named is not None and named != kind and not (named in ("md", "csv", "eml") and kind == "txt"):
        doc.warnings.append(f"the file is named {ext} but holds {kind.upper()}; it was read as {kind.upper()}")
    return doc


def _load_container(path: Path, kind: str, max_pages: int) -> LoadedDocument:
    """docx, pptx, xlsx and epub: ZIP containers whose directory detect_kind has already checked."""
    warnings: list[str] = []
    if kind == "docx":
        from ragchat.ingest.office import docx_text

        text = docx_text(path)
        numbered: list[tuple[int | None, str]] = [(None, text)] if text else []
    elif kind == "pptx":
        from ragchat.ingest.office import pptx_pages

        numbered = list(pptx_pages(path))
    elif kind == "xlsx":
        from ragchat.ingest.office import xlsx_pages

        sheets, warnings = xlsx_pages(path)
        numbered = list(sheets)
    else:
        from ragchat.ingest.epub import epub_pages

        numbered = list(epub_pages(path))
    if len(numbered) > max_pages:
        warnings.append(f"only the first {max_pages} of {len(numbered)} pages were read (ingest.max_pages)")
        numbered = numbered[:max_pages]
    pages = [Page(number=n, text=_clean(t)) for n, t in numbered if t.strip()]
    if not pages:
        raise LoadError(f"empty file: this {_ZIP_KINDS[kind]} has no text in it", reason="empty")
    return LoadedDocument(kind=kind, pages=pages, warnings=warnings)


# --- CSV ---------------------------------------------------------------------------------------


def _csv_text(data: bytes, ext: str) -> tuple[str, bool]:
    """A CSV or TSV file as one Markdown table whose first row is the header, and whether it was cut short."""
    from ragchat.ingest.office import markdown_table

    text = _clean(decode_text(data))
    if ext == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:16384], delimiters=",;\t|").delimiter
        except csv.Error:  # one column, or too irregular to tell: commas, as most tools write
            delimiter = ","
    rows, cells, cut = [], 0, False
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for row in reader:
            cells += len(row)
            if cells > MAX_TABLE_CELLS:
                cut = True
                break
            rows.append(row)
    except csv.Error as exc:
        raise LoadError(f"malformed CSV near line {reader.line_num}: {exc}", reason="corrupt") from None
    return markdown_table(rows), cut


# --- images ------------------------------------------------------------------------------------


def _load_image(path: Path, max_pages: int, ocr: str, timeout_s: float | None, progress: Progress | None) -> LoadedDocument:
    from ragchat.ingest import ocr as tesseract

    if ocr == "off":
        raise LoadError('images are read with OCR, which is off (ingest.ocr = "off"); set it to "auto" to read them',
                        reason="unsupported")
    total, frames = tesseract.image_frames(path, max_pages)  # a bomb or a broken header is refused first
    try:
        tesseract.languages()  # OcrUnavailable says what to install
    except LoadError:
        frames.close()
        raise
    count = min(total, max_pages)
    pages = []
    pictures = ((number, (lambda frame=frame: frame)) for number, frame in enumerate(frames, 1))
    for number, result in tesseract.ocr_pages(pictures, count, timeout_s, progress):
        if result.text.strip():
            pages.append(Page(number=number, text=result.text, boxes=result.boxes))
    if not pages:
        raise LoadError("no text found: OCR read no text in this image", reason="empty")
    warnings = [f"only the first {max_pages} of {total} pages were read (ingest.max_pages)"] if total > max_pages else []
    return LoadedDocument(kind="image", pages=pages, warnings=warnings, ocr_pages=[p.number for p in pages])


# --- PDF -------------------------------------------------------------------------------------

_FEW_CHARS = 10  # a page with fewer non-space characters than this has no real text layer (a page number, a stamp)


def _load_pdf(path: Path, password: str | None, max_pages: int, ocr: str = "off", timeout_s: float | None = None,
              progress: Progress | None = None, tables: bool = False) -> LoadedDocument:
    from pypdf import PdfReader

    from ragchat.ingest.pdf_tables import PdfTables

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            _unlock(reader, password)
        total = len(reader.pages)
    except (LoadError, MemoryError):
        raise
    except Exception as exc:
        raise _corrupt(exc) from None

    texts: dict[int, str] = {}
    # Ruled tables as Markdown rows; OCR replaces every page's text under "force", so not then.
    finder = PdfTables(path, password) if tables and ocr != "force" else None
    candidates: list[int] = []  # pages to OCR
    garbage: dict[int, str] = {}
    unreadable: list[int] = []
    first_error: Exception | None = None
    for index in range(min(total, max_pages)):
        number = index + 1
        try:
            raw = reader.pages[index].extract_text() or ""
        except MemoryError:
            raise
        except Exception as exc:  # one broken page should not cost the whole document
            unreadable.append(number)
            first_error = first_error or exc
            continue
        text = _clean_pdf_text(finder.page_text(reader.pages[index], number, raw) if finder else raw)
        if text:
            texts[number] = text
        if ocr == "force":
            candidates.append(number)
        elif ocr == "auto":
            if reason := garbage_reason(raw):
                garbage[number] = reason
                candidates.append(number)
            elif sum(1 for c in text if not c.isspace()) < _FEW_CHARS:
                candidates.append(number)
    if finder is not None:
        finder.close()

    warnings = []
    if unreadable:
        shown = ", ".join(map(str, unreadable[:10])) + (", ..." if len(unreadable) > 10 else "")
        warnings.append(f"{len(unreadable)} page(s) could not be read and were skipped: {shown}")
    if total > max_pages:
        warnings.append(f"only the first {max_pages} of {total} pages were read (ingest.max_pages)")

    pages = {n: Page(number=n, text=t) for n, t in texts.items()}
    ocr_done: list[int] = []
    unrendered: list[int] = []
    ocr_missing: LoadError | None = None
    if candidates:
        from ragchat.ingest import ocr as tesseract

        try:
            tesseract.languages()
        except tesseract.OcrUnavailable as exc:
            ocr_missing = exc
        if ocr_missing is None:
            from ragchat.ingest.rendering import PdfPages

            try:
                rendered = PdfPages(path, password)
            except LoadError as exc:  # PDFium cannot open what pypdf could: keep the text layer
                if not pages:
                    raise
                warnings.append(f"{len(candidates)} page(s) could not be read with OCR: {exc}")
                candidates = []
                rendered = None

            def render(number: int):
                try:
                    return rendered.render(number)
                except LoadError:  # one page PDFium cannot draw: the others still get OCR
                    unrendered.append(number)
                    return None

            pictures = ((n, functools.partial(render, n)) for n in candidates)
            try:
                for number, result in tesseract.ocr_pages(pictures, len(candidates), timeout_s, progress):
                    if result.text.strip():
                        pages[number] = Page(number=number, text=result.text, boxes=result.boxes)
                        ocr_done.append(number)
                    elif number in garbage:  # garbage is worse than nothing in an index
                        pages.pop(number, None)
            finally:
                if rendered is not None:
                    rendered.close()
            if unrendered:
                warnings.append(f"{len(unrendered)} page(s) could not be rendered for OCR: {', '.join(map(str, unrendered[:10]))}")
        elif garbage and ocr == "auto":
            warnings.append(f"{len(garbage)} page(s) have a garbage text layer and need OCR: {ocr_missing}")
    if garbage:
        first = min(garbage)
        warnings.append(f"{len(garbage)} page(s) had a garbage text layer (page {first}: {garbage[first]})")
    if ocr_done:
        warnings.append(f"{len(ocr_done)} page(s) were read with OCR")

    if not pages:
        if first_error is not None:
            raise _corrupt(first_error, "no page could be read")
        if ocr_missing is not None:
            raise LoadError(f"no text layer: looks scanned, and {ocr_missing}", reason="scanned")
        if unrendered:
            raise LoadError("corrupt PDF: no page has a text layer, and PDFium could not render them for OCR", reason="corrupt")
        if ocr == "off":
            raise LoadError('no text layer: looks scanned; set ingest.ocr = "auto" to read it with OCR, '
                            "or OCR it first (e.g. ocrmypdf) and add it again", reason="scanned")
        raise LoadError("no text: the pages have no text layer and OCR found no text on them", reason="empty")
    if ocr_missing is not None and ocr == "force":
        raise ocr_missing
    return LoadedDocument(kind="pdf", pages=[pages[n] for n in sorted(pages)], warnings=warnings, ocr_pages=ocr_done)


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


# --- HTML ------------------------------------------------------------------------------------

_DROP_TAGS = ["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "embed"]
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "figure"}
_LINES = {
    "address", "article", "aside", "caption", "dd", "details", "div", "dt", "fieldset", "figcaption",
    "footer", "form", "header", "hr", "li", "main", "nav", "section", "summary", "tr",
}  # fmt: skip
_PARAGRAPH_MARK, _LINE_MARK = "\ue000", "\ue001"  # private-use characters, stand-ins until the end
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# What browsers actually use for these labels (WHATWG Encoding Standard).
_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs", "iso-8859-1": "cp1252", "us-ascii": "cp1252"}


def _decode_html(data: bytes) -> str:
    if not any(data.startswith(bom) for bom, _ in _BOMS) and b"\x00" not in data[:4096]:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        if match := _META_CHARSET.search(data[:4096]):
            label = match.group(1).decode("ascii").lower()
            try:
                return data.decode(_CHARSET_ALIASES.get(label, label), errors="replace")
            except LookupError:  # an unknown label: guess instead
                pass
    return decode_text(data)


def html_to_text(data: bytes, with_title: bool = True, headings: bool = False) -> str:
    """Visible text of a page: title first (unless with_title is False), one line per block, a blank line
    between paragraphs; with headings, <h1>-<h6> become Markdown "#" lines."""
    from bs4 import BeautifulSoup, NavigableString

    soup = BeautifulSoup(_decode_html(data), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""

    hidden = soup.find_all(_DROP_TAGS)
    hidden += soup.find_all(attrs={"hidden": True})
    hidden += soup.find_all(style=_HIDDEN_STYLE)
    for tag in hidden:
        if not tag.decomposed:  # a parent may already have taken it away
            tag.decompose()

    # HTML treats any run of whitespace as one space, except inside <pre>. Comments, doctypes and
    # the like are other NavigableString subclasses; get_text skips them, so leave them be.
    for string in list(soup.find_all(string=True)):
        if type(string) is NavigableString and string.find_parent("pre") is None:
            string.replace_with(re.sub(r"\s+", " ", string))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    if headings:
        for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
            if tag.get_text(strip=True):
                tag.insert(0, "#" * int(tag.name[1]) + " ")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" ")
    # Blocks get marks first and newlines later, so that nested blocks (<ul><li>) give one break,
    # not one per edge: a run of marks is a blank line if any of them is a paragraph, else a newline.
    for tag in soup.find_all(_PARAGRAPHS | _LINES):
        mark = _PARAGRAPH_MARK if tag.name in _PARAGRAPHS else _LINE_MARK
        tag.insert_before(mark)
        tag.insert_after(mark)

    text = re.sub(
        f"\\s*[{_PARAGRAPH_MARK}{_LINE_MARK}][\\s{_PARAGRAPH_MARK}{_LINE_MARK}]*",
        lambda m: "\n\n" if _PARAGRAPH_MARK in m.group() else "\n",
        soup.get_text(),
    )
    text = _clean(text)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if with_title and title and not text.startswith(title):
        text = f"{title}\n\n{text}" if text else title
    return text
