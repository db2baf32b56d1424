"""Images (PNG, JPEG, TIFF, WebP) -> one page of OCR'd text per frame (a multi-page TIFF has several).

Images are read only with OCR (``ragchat.ingest.ocr``, which also refuses image bombs); with
``ingest.ocr = "off"`` they are refused.
"""

from __future__ import annotations

from pathlib import Path

from ragchat.core.errors import LoadError
from ragchat.ingest import ocr as tesseract
from ragchat.ingest.document import LoadedDocument, Page, Progress


def load_image(path: Path, max_pages: int, ocr: str, timeout_s: float | None, progress: Progress | None) -> LoadedDocument:
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
