"""File type -> pages of text, for PDF, plain text, Markdown and HTML.

``load(path)`` decides the type from the file's first bytes (the name only breaks ties), reads the
file and returns cleaned text: one ``Page`` per PDF page, numbered from 1, and a single unnumbered
page for text-like files. Whatever cannot be read becomes a ``LoadError`` whose message says why and
what to do, with a short ``reason`` tag (empty, unsupported, encrypted, scanned, corrupt, ...).

Left out on purpose:
- OCR: scanned PDFs are refused with a hint to run ocrmypdf first.
- Office, EPUB and image formats: refused with a message that names what the file looks like.
- Layout analysis: columns and tables come out in pypdf's reading order.
- Protection from hostile files (decompression bombs, endless loops): ``load`` runs in-process with
  no limits. The app reads files through ``ragchat.ingest.isolation``, which adds them.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from ragchat.errors import LoadError

SUPPORTED = "ragchat reads PDF, .txt, .md and .html"
HEAD_BYTES = 8192  # how much of a file detect_kind looks at


@dataclass(frozen=True)
class Page:
    number: int | None  # 1-based page number for PDFs, None for text-like files
    text: str


@dataclass
class LoadedDocument:
    kind: str  # "pdf" | "txt" | "md" | "html"
    pages: list[Page]
    warnings: list[str] = field(default_factory=list)


# --- type detection --------------------------------------------------------------------------

# Formats people drop in by mistake. Checked after %PDF, so a PDF is never refused here.
_MAGIC: list[tuple[bytes, str]] = [
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc, .xls or .ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"AT&TFORM", "a DjVu document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
]
# ZIP is the container of many document formats; the extension says which one it probably is.
_ZIP_FORMATS = {
    ".docx": "a Word document (.docx)",
    ".xlsx": "an Excel workbook (.xlsx)",
    ".pptx": "a PowerPoint file (.pptx)",
    ".odt": "an OpenDocument text (.odt)",
    ".epub": "an EPUB book (.epub)",
}
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


def detect_kind(path: Path, head: bytes) -> str:
    """Return "pdf", "html", "md" or "txt" for a file whose first bytes are ``head``.

    The content decides first, so a ZIP named .pdf is refused and an HTML page named .pdf is read as
    HTML. The extension only chooses among text-like kinds.
    """
    if not head:
        raise LoadError("empty file: it has 0 bytes, so there is nothing to read", reason="empty")
    # Readers accept the header anywhere in the first 1024 bytes, after junk from mail gateways.
    if b"%PDF-" in head[:1024]:
        return "pdf"
    ext = path.suffix.lower()
    for magic, what in _MAGIC:
        if head.startswith(magic):
            if what == "a ZIP archive":
                what = _ZIP_FORMATS.get(ext, what)
            raise _unsupported(what)
    text = _sniff_text(head)
    if text is None:
        raise _unsupported("a binary file")
    if ext in _HTML_EXTENSIONS or _looks_like_html(text):
        return "html"
    if ext in _MARKDOWN_EXTENSIONS:
        return "md"
    return "txt"


def _unsupported(what: str) -> LoadError:
    return LoadError(f"unsupported file type: looks like {what}; {SUPPORTED}", reason="unsupported")


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


# --- loading -----------------------------------------------------------------------------------


def load(path: Path, password: str | None = None, max_pages: int = 5000) -> LoadedDocument:
    """Read one file into pages of text, or raise LoadError saying why it cannot be read."""
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
        doc = _load_pdf(path, password, max_pages)
    else:
        data = path.read_bytes()
        text = _html_to_text(data) if kind == "html" else _clean(decode_text(data))
        if not text.strip():
            raise LoadError("empty file: it has no text in it", reason="empty")
        doc = LoadedDocument(kind=kind, pages=[Page(number=None, text=text)])
        if "\ufffd" in text:
            doc.warnings.append("some bytes could not be decoded and were replaced by \ufffd")

    ext = path.suffix.lower()
    if ext in {".pdf", *_HTML_EXTENSIONS, *_MARKDOWN_EXTENSIONS} and _kind_of_extension(ext) != kind:
        doc.warnings.append(f"the file is named {ext} but holds {kind.upper()}; it was read as {kind.upper()}")
    return doc


def _kind_of_extension(ext: str) -> str:
    if ext in _HTML_EXTENSIONS:
        return "html"
    if ext in _MARKDOWN_EXTENSIONS:
        return "md"
    return ext.lstrip(".")


# --- PDF -------------------------------------------------------------------------------------


def _load_pdf(path: Path, password: str | None, max_pages: int) -> LoadedDocument:
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            _unlock(reader, password)
        total = len(reader.pages)
    except (LoadError, MemoryError):
        raise
    except Exception as exc:
        raise _corrupt(exc) from None

    pages: list[Page] = []
    unreadable: list[int] = []
    first_error: Exception | None = None
    for index in range(min(total, max_pages)):
        try:
            raw = reader.pages[index].extract_text()
        except MemoryError:
            raise
        except Exception as exc:  # one broken page should not cost the whole document
            unreadable.append(index + 1)
            first_error = first_error or exc
            continue
        text = _clean_pdf_text(raw or "")
        if text:
            pages.append(Page(number=index + 1, text=text))

    warnings = []
    if unreadable:
        shown = ", ".join(map(str, unreadable[:10])) + (", ..." if len(unreadable) > 10 else "")
        warnings.append(f"{len(unreadable)} page(s) could not be read and were skipped: {shown}")
    if total > max_pages:
        warnings.append(f"only the first {max_pages} of {total} pages were read (ingest.max_pages)")
    if not pages:
        if first_error is not None:
            raise _corrupt(first_error, "no page could be read")
        raise LoadError("no text layer: looks scanned; OCR it first (e.g. ocrmypdf) and add it again", reason="scanned")
    return LoadedDocument(kind="pdf", pages=pages, warnings=warnings)


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


def _html_to_text(data: bytes) -> str:
    """Visible text of a page: title first, one line per block, a blank line between paragraphs."""
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
    if title and not text.startswith(title):
        text = f"{title}\n\n{text}" if text else title
    return text
