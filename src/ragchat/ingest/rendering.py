"""PDF pages -> images, through pypdfium2 (PDFium, the PDF engine of Chromium).

Used for OCR now (a page with no usable text layer is rendered and read by Tesseract) and meant
for showing a cited page as it looks. Pages are rendered in grayscale at ``OCR_DPI``, scaled down
when that would exceed ``ocr.OCR_MAX_PIXELS``, so a page that claims to be 5 metres wide costs no
more memory than an A3 page.

Left out: annotations and form fields are drawn as PDFium draws them by default; no colour.
"""

from __future__ import annotations

from pathlib import Path

from ragchat.errors import LoadError
from ragchat.ingest.ocr import OCR_MAX_PIXELS

OCR_DPI = 300  # what Tesseract is trained for; 200 read the shared scanned pages the same, 12 % faster


class PdfPages:
    """An open PDF whose pages can be rendered one at a time. Use as a context manager."""

    def __init__(self, path: Path, password: str | None = None):
        import pypdfium2 as pdfium

        try:
            self._pdf = pdfium.PdfDocument(str(path), password=password or None)
        except pdfium.PdfiumError as exc:
            raise LoadError(f"corrupt PDF: PDFium cannot open it for OCR ({exc})", reason="corrupt") from None

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
