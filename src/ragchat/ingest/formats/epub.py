"""EPUB books -> one page per document of the reading order (usually a chapter), through ebooklib.

The chapters' XHTML is turned into text by the same code as HTML files (``formats.html.html_to_text``),
without the chapter's <title>, which in many books repeats the book's title on every chapter, and
with headings as ``#`` lines.
Pages are numbered by their place in the spine, so a skipped empty document (a cover image, say)
leaves a gap, as an empty PDF page does.

Left out: the table of contents, footnote pop-ups, images (no OCR of pictures in books), and DRM-
protected books (their chapters are encrypted, which reads as a book with no text).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ragchat.core.errors import LoadError
from ragchat.ingest.formats.html import html_to_text


def epub_pages(path: Path) -> list[tuple[int, str]]:
    import ebooklib
    from ebooklib import epub

    try:
        with warnings.catch_warnings():  # ebooklib warns about its own future defaults
            warnings.simplefilter("ignore")
            book = epub.read_epub(str(path), options={"ignore_ncx": True})
        pages = []
        number = 0
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            # The navigation document is the table of contents, not a chapter.
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
                continue
            number += 1
            text = html_to_text(item.get_content(), with_title=False, headings=True)
            if text:
                pages.append((number, text))
    except (LoadError, MemoryError, RecursionError):
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise LoadError(f"corrupt EPUB book: {detail}", reason="corrupt") from None
    return pages
