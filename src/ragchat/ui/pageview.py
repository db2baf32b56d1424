"""Page images for the passage viewer: a page of a PDF or image file, with a cited chunk highlighted.

``PageViews.png`` draws a stored original's page in the isolated worker (a hostile PDF can hang or
crash PDFium; ``IsolatedLoader.render``), on a worker of its own so that a page view never waits
behind a file being ingested. It finds the chunk's rectangles (``ragchat.ingest.boxes``: stored OCR
word boxes, or the PDF's text layer read by PDFium in the same worker and lined up with the chunk),
and paints them over the page as a translucent highlight with Pillow, here in the app: the picture
is one the worker drew, of bounded size. Both the plain pages and the highlighted ones are kept in
one ``PngCache`` with a byte budget, keyed by document, content hash, page, width (and chunk), so a
changed document never shows an old page.

An encrypted PDF's page is not drawn: ragchat keeps no password (the stored original stays
encrypted), so ``PageViews.problem`` tells the viewer, which shows ``ENCRYPTED`` instead of a broken
picture.

Access checks are the web route's (ragchat.ui.server); this module trusts the document it is given.
Left out: documents without pages to draw (text, Markdown, HTML, Word, e-mail, spreadsheets and
slides: Office files would need an Office renderer); their passage stays a text highlight.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

from ragchat.core.settings import IngestSettings
from ragchat.core.errors import LoadError
from ragchat.ingest.boxes import Rect, aligned_rects, word_rects
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.rendering import PngCache

log = logging.getLogger(__name__)

DRAWN_KINDS = ("pdf", "image")  # documents whose pages can be shown as pictures
DEFAULT_WIDTH = 800  # pixels: sharp in the side panel, on screens with twice as many pixels too
MIN_WIDTH, MAX_WIDTH, WIDTH_STEP = 200, 1600, 100  # asked widths are rounded, so the cache sees few of them
CACHE_BYTES = 64 * 1024 * 1024
HIGHLIGHT = (255, 200, 0, 96)  # translucent amber: the page's text stays readable through it
OUTLINE = (230, 140, 0, 200)
PAD = 0.002  # of the page's width and height, around each rectangle
ENCRYPTED = ("This page can't be drawn: the PDF is encrypted, and ragchat keeps no password once a file is read. "
             "Its text is below; open the original with its password to see the page.")


def has_page_image(kind: str | None, page: int | None) -> bool:
    """Whether a document of this kind can show this page as a picture."""
    return kind in DRAWN_KINDS and page is not None


def page_url(doc_id: str, page: int, chunk_id: str | None = None, width: int = DEFAULT_WIDTH) -> str:
    """The page route's URL, relative to the app's root (like ``ragchat/original/...``)."""
    query = f"?w={width}" + (f"&chunk={chunk_id}" if chunk_id else "")
    return f"ragchat/page/{doc_id}/{page}.png{query}"


def snap_width(width: int | None) -> int:
    if width is None:
        return DEFAULT_WIDTH
    width = min(MAX_WIDTH, max(MIN_WIDTH, int(width)))
    return int(round(width / WIDTH_STEP) * WIDTH_STEP)


class PageViews:
    """Pages of stored originals as PNG, highlighted. Thread-safe; call ``close`` when done."""

    def __init__(self, catalog, store: Path, settings: IngestSettings, cache_bytes: int = CACHE_BYTES):
        self.catalog = catalog
        self.store = Path(store)
        self.settings = settings
        self.cache = PngCache(cache_bytes)
        self._loader = None
        self._lock = threading.Lock()
        self._encrypted: set[tuple[str, str]] = set()  # (document id, content hash)

    def _worker(self):
        with self._lock:
            if self._loader is None:  # started on the first page view: most sessions never open one
                self._loader = IsolatedLoader(self.settings)
            return self._loader

    def close(self) -> None:
        with self._lock:
            loader, self._loader = self._loader, None
        if loader is not None:
            loader.close()

    def png(self, info, path: Path, page: int, width: int, chunk=None) -> bytes:
        """Page `page` of document `info` (its original at `path`) as PNG, `width` pixels wide, with
        `chunk` (a catalog chunk row of this page, or None) highlighted. Raises LoadError."""
        width = snap_width(width)
        base_key = ("page", info.id, info.sha256, page, width)
        if chunk is None:
            return self._plain(base_key, path, page, width)
        key = base_key + (chunk.id,)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        plain = self._plain(base_key, path, page, width)
        rects = self.rects(info, path, page, chunk.start, chunk.end)
        data = draw_highlight(plain, rects) if rects else plain
        self.cache.put(key, data)
        return data

    def problem(self, info, path: Path, page: int) -> str | None:
        """Why this page cannot be drawn, as a sentence for people, or None when it can. Finding out
        draws the plain page (cached: the viewer's picture asks for it next); an encrypted PDF is
        remembered, so it is not opened again."""
        if info.kind != "pdf":
            return None
        if (info.id, info.sha256) in self._encrypted:
            return ENCRYPTED
        try:
            self._plain(("page", info.id, info.sha256, page, DEFAULT_WIDTH), path, page, DEFAULT_WIDTH)
        except LoadError as exc:
            if exc.reason == "encrypted":
                self._encrypted.add((info.id, info.sha256))
                return ENCRYPTED
            return f"This page can't be drawn: {exc}"
        return None

    def _plain(self, key: tuple, path: Path, page: int, width: int) -> bytes:
        data = self.cache.get(key)
        if data is None:
            data = self._worker().render(path, page, width)
            self.cache.put(key, data)
        return data

    def rects(self, info, path: Path, page: int, start: int, end: int) -> list[Rect]:
        """Where characters [start, end) of the page's text are on the page, as page fractions."""
        boxes = self.catalog.page_boxes(info.id, page)
        if boxes is not None:
            return word_rects(boxes, start, end)
        if info.kind != "pdf":
            return []
        text = self.catalog.page_text(info.id, page)
        if text is None:
            return []
        try:
            layer_text, layer_boxes = self._worker().page_chars(path, page)
        except LoadError as exc:  # the page is still shown, without a highlight
            log.warning("no text layer boxes for page %s of %s: %s", page, info.source, exc)
            return []
        return aligned_rects(text, start, end, layer_text, layer_boxes)


def draw_highlight(png: bytes, rects: list[Rect]) -> bytes:
    """The picture with each rectangle (page fractions) painted over in translucent amber."""
    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(png)) as opened:
        page = opened.convert("RGBA")
    overlay = Image.new("RGBA", page.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = page.size
    for x0, y0, x1, y1 in rects:  # a rotated page or a stray box may give them reversed or off the page
        left, right = sorted((x0, x1))
        top, bottom = sorted((y0, y1))
        box = (max(0, round((left - PAD) * w)), max(0, round((top - PAD) * h)),
               min(w - 1, round((right + PAD) * w)), min(h - 1, round((bottom + PAD) * h)))
        if box[0] <= box[2] and box[1] <= box[3]:
            draw.rectangle(box, fill=HIGHLIGHT, outline=OUTLINE, width=max(1, w // 600))
    out = io.BytesIO()
    Image.alpha_composite(page, overlay).convert("RGB").save(out, "PNG", compress_level=6)
    return out.getvalue()
