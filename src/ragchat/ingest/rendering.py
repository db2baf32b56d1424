"""PDF pages -> images, through pypdfium2 (PDFium, the PDF engine of Chromium).

For OCR, ``PdfPages`` renders a page with no usable text layer in grayscale at ``OCR_DPI``, scaled
down when that would exceed ``ocr.OCR_MAX_PIXELS``, so a page that claims to be 5 metres wide costs
no more memory than an A3 page. For showing a cited page as it looks, ``render_png`` draws a page of
a PDF (or a page of an image file) in colour at a given width, as PNG bytes; it is meant to run in
the isolated worker (``IsolatedLoader.render``), since a hostile PDF can hang or crash PDFium, and
``PngCache`` keeps the most recent renderings within a byte budget. ``page_chars`` reads the
characters of a page's text layer with their boxes, so that the viewer can find a passage on the
page (``ragchat.ingest.boxes``); it too runs in the worker.

Left out: annotations and form fields are drawn as PDFium draws them by default; highlights are
drawn by the viewer (``ragchat.ui.pageview``), not here; the web route that serves pages (and its
access checks) is not here.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from ragchat.core.errors import LoadError
from ragchat.ingest.ocr import OCR_MAX_PIXELS, image_frames

OCR_DPI = 300  # what Tesseract is trained for; 200 read the shared scanned pages the same, 12 % faster
MAX_VIEW_WIDTH = 2400  # pixels; wider requests are refused
MAX_VIEW_PIXELS = 2400 * 2400 * 4  # a page that is very tall for its width is scaled down to this


def open_pdf(path: Path, password: str | None, purpose: str = ""):
    """A pypdfium2 PdfDocument. Raises LoadError: "encrypted" when the PDF needs a password that was
    not given (or not the right one), "corrupt" when PDFium cannot read it."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        return pdfium.PdfDocument(str(path), password=password or None)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise LoadError("encrypted: the PDF cannot be opened without its password", reason="encrypted") from None
        raise LoadError(f"corrupt PDF: PDFium cannot open it {purpose}({exc})", reason="corrupt") from None


class PdfPages:
    """An open PDF whose pages can be rendered one at a time. Use as a context manager."""

    def __init__(self, path: Path, password: str | None = None):
        self._pdf = open_pdf(path, password, "for OCR ")

    def __len__(self) -> int:
        return len(self._pdf)

    def render(self, number: int, dpi: int = OCR_DPI, max_pixels: int = OCR_MAX_PIXELS):
        """Page `number` (1-based) as a grayscale Pillow image."""
        import pypdfium2 as pdfium

        try:
            page = self._pdf[number - 1]
            try:
                width, height = page.get_size()  # in points, 1/72 inch
                scale = dpi / 72
                if width * height * scale * scale > max_pixels:
                    scale = (max_pixels / max(1.0, width * height)) ** 0.5
                image = page.render(scale=scale, grayscale=True).to_pil()
                return image.convert("L")  # a copy that owns its pixels, so the page can close
            finally:
                page.close()
        except pdfium.PdfiumError as exc:
            raise LoadError(f"corrupt PDF: page {number} cannot be rendered for OCR ({exc})", reason="corrupt") from None

    def close(self) -> None:
        self._pdf.close()

    def __enter__(self) -> "PdfPages":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- page images for the viewer ----------------------------------------------------------------


def render_png(path: Path, page: int, width: int, password: str | None = None) -> bytes:
    """Page `page` (1-based) of a PDF, or of an image file (a TIFF's n-th page), as PNG bytes `width`
    pixels wide (the height follows the page). Raises LoadError: a page that does not exist is "missing"."""
    if not 16 <= width <= MAX_VIEW_WIDTH:
        raise LoadError(f"page width must be between 16 and {MAX_VIEW_WIDTH} pixels, not {width}", reason="unsupported")
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"%PDF-" in head:
        image = _pdf_page(path, page, width, password)
    else:
        image = _image_page(path, page, width)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _pdf_page(path: Path, page: int, width: int, password: str | None):
    import pypdfium2 as pdfium

    pdf = open_pdf(path, password)
    try:
        if not 1 <= page <= len(pdf):
            raise LoadError(f"no page {page}: the PDF has {len(pdf)} pages", reason="missing")
        handle = pdf[page - 1]
        try:
            w, h = handle.get_size()
            scale = width / max(1.0, w)
            if w * h * scale * scale > MAX_VIEW_PIXELS:
                scale = (MAX_VIEW_PIXELS / max(1.0, w * h)) ** 0.5
            return handle.render(scale=scale).to_pil().convert("RGB")
        finally:
            handle.close()
    except pdfium.PdfiumError as exc:
        raise LoadError(f"corrupt PDF: page {page} cannot be rendered ({exc})", reason="corrupt") from None
    finally:
        pdf.close()


def _image_page(path: Path, page: int, width: int):
    from PIL import Image

    total, frames = image_frames(path, page)
    if not 1 <= page <= total:
        frames.close()
        raise LoadError(f"no page {page}: the image has {total} page(s)", reason="missing")
    try:
        for number, frame in enumerate(frames, 1):
            if number == page:
                image = frame.convert("RGB")
                height = max(1, round(image.height * width / image.width))
                if width * height > MAX_VIEW_PIXELS:
                    height = MAX_VIEW_PIXELS // width
                return image.resize((width, height), Image.Resampling.LANCZOS)
    finally:
        frames.close()
    raise LoadError(f"no page {page} in the image", reason="missing")


def page_chars(path: Path, page: int, password: str | None = None) -> tuple[str, list[tuple[float, float, float, float]]]:
    """The text layer of PDF page `page` (1-based) as PDFium reads it: (text, one box per character of
    the text). Boxes are (x0, y0, x1, y1) fractions of the page as drawn by ``render_png`` (top left
    is 0, 0; crop box and /Rotate applied); characters PDFium adds itself (spaces, line breaks) get
    (0, 0, 0, 0). Raises LoadError."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    pdf = open_pdf(path, password)
    try:
        if not 1 <= page <= len(pdf):
            raise LoadError(f"no page {page}: the PDF has {len(pdf)} pages", reason="missing")
        handle = pdf[page - 1]
        textpage = handle.get_textpage()
        try:
            count = textpage.count_chars()
            text = textpage.get_text_range(0, count) if count else ""
            if len(text) != count:  # surrogate pairs or odd fonts: one character at a time instead
                text = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 32) for i in range(count))
            w, h = handle.get_size()
            # PDF points -> device pixels of a large virtual rendering, which applies the crop box
            # and the page's rotation exactly as rendering does.
            dev_w, dev_h = 100_000, max(1, round(100_000 * h / max(1.0, w)))
            x, y = ctypes.c_int(), ctypes.c_int()

            def device(px: float, py: float) -> tuple[float, float]:
                pdfium_c.FPDF_PageToDevice(handle.raw, 0, 0, dev_w, dev_h, 0, ctypes.c_double(px), ctypes.c_double(py),
                                           ctypes.byref(x), ctypes.byref(y))
                return x.value / dev_w, y.value / dev_h

            boxes = []
            for i in range(count):
                left, bottom, right, top = textpage.get_charbox(i, loose=True)
                if right <= left and top <= bottom:
                    boxes.append((0.0, 0.0, 0.0, 0.0))
                    continue
                (ax, ay), (bx, by) = device(left, bottom), device(right, top)
                boxes.append((round(min(ax, bx), 5), round(min(ay, by), 5), round(max(ax, bx), 5), round(max(ay, by), 5)))
            return text, boxes
        finally:
            textpage.close()
            handle.close()
    except pdfium.PdfiumError as exc:
        raise LoadError(f"corrupt PDF: page {page} cannot be read ({exc})", reason="corrupt") from None
    finally:
        pdf.close()


class PngCache:
    """The most recently used page images, within `max_bytes` in all (least recently used go first).

    Keys should say what was rendered and from which bytes, e.g. (document id, content hash, page,
    width), so that a changed document never shows an old page. Thread-safe."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024):
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        if len(data) > self.max_bytes:  # larger than the whole cache: serve it, keep nothing
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._items[key] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._items)
