"""OCR with Tesseract: a picture of a page -> its text, with a box for every word.

Tesseract runs as its own process (the ``tesseract`` binary from Debian's ``tesseract-ocr``, with the
``eng`` and ``chi_sim`` language data), one page at a time, reading a grayscale image on stdin and
writing TSV on stdout. Each call has a time limit; the process inherits the parsing worker's memory
limit and dies with the worker (``PR_SET_PDEATHSIG``), so a killed worker never leaves it running.
Tesseract is limited to one thread: on a small shared machine its OpenMP threads made a page 2-4x
slower, not faster.

Each page is read with one language model, chosen per page: English pages read best and fastest with
``eng``, Chinese and bilingual pages with ``chi_sim`` (which knows Latin letters and digits too), and
the combined ``eng+chi_sim`` was worse than either on its own kind of page. Measured on the shared
PDFs (similarity of the OCR text to the text layer): an English page 0.918 with eng, 0.895 with
chi_sim; a bilingual datasheet page 0.936 with chi_sim, 0.906 with eng+chi_sim, 0.668 with eng; a
Chinese page 0.765 with chi_sim, 0.48 with eng+chi_sim. ``PageReader`` starts with eng, and reads a
page again with the other model when the first read looks wrong (eng: mean word confidence under
75, which English pages pass at about 94 and Chinese ones fail at about 30; chi_sim: under 10 % of
the letters Chinese), keeping the read with the higher mean confidence; the winner reads the next
page first. Tesseract's own script detection (OSD) was not used: it cost 2.4-3 s a page, about as
much as reading the page.

Words are joined with a space, except between two Chinese characters (Tesseract reads Chinese one
character or word at a time, and Chinese is written without spaces). ``OcrText.boxes`` holds, for
every word, its character span in the text and its rectangle as fractions of the image's width and
height, so that it can be drawn on a rendering of the page at any size.

This module also opens image files (Pillow) with a pixel limit against decompression bombs. Left
out: deskewing, denoising and layout analysis beyond Tesseract's own; languages other than English
and simplified Chinese.
"""

from __future__ import annotations

import ctypes
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ragchat.core.errors import LoadError
from ragchat.core.text import CJK_RANGE

LANGUAGES = ("eng", "chi_sim")
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own bomb threshold (about 0.25 GB of RGBA): a 600 dpi A2 scan fits
OCR_MAX_PIXELS = 16_000_000  # pages are scaled down to this before OCR: A3 at 300 dpi, plenty for text
INSTALL_HINT = "install Tesseract: apt install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim"

Box = tuple[int, int, float, float, float, float]  # (start, end, x0, y0, x1, y1): span in text, rectangle as fractions


@dataclass(frozen=True)
class OcrText:
    text: str
    boxes: tuple[Box, ...] = ()
    confidence: float = 0.0  # Tesseract's mean word confidence, 0-100
    language: str = ""


class OcrUnavailable(LoadError):
    """Tesseract or its language data is missing."""


class OcrTimeout(LoadError):
    """Tesseract ran past its time limit on one page."""


def _timeout(where: str, limit_s: float) -> OcrTimeout:
    return OcrTimeout(
        f"OCR of {where} took longer than {limit_s:g} s; the page may be damaged or hostile "
        "(if it is genuine, raise ingest.parse_timeout_s, which each OCR'd page gets in full)",
        reason="timeout",
    )


# --- Tesseract ---------------------------------------------------------------------------------


@functools.cache
def _tesseract() -> tuple[str, str]:
    """(path of the binary, "+"-joined languages it can read with), or OcrUnavailable."""
    binary = shutil.which("tesseract")
    if binary is None:
        raise OcrUnavailable(f"OCR needs Tesseract, which is not installed; {INSTALL_HINT}", reason="unsupported")
    try:
        out = subprocess.run([binary, "--list-langs"], capture_output=True, timeout=30, env=_env()).stdout.decode()
    except (OSError, subprocess.SubprocessError) as exc:
        raise OcrUnavailable(f"OCR needs Tesseract, which does not start ({exc}); {INSTALL_HINT}", reason="unsupported") from None
    installed = {line.strip() for line in out.splitlines()[1:]}
    langs = [lang for lang in LANGUAGES if lang in installed]
    if not langs:
        raise OcrUnavailable(f"Tesseract has none of the language data {'/'.join(LANGUAGES)}; {INSTALL_HINT}", reason="unsupported")
    return binary, "+".join(langs)


def languages() -> str:
    """The languages pages can be read with, e.g. "eng+chi_sim"; raises OcrUnavailable."""
    return _tesseract()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


@functools.cache
def _prctl():
    """libc's prctl, looked up once in the parent: a child between fork and exec must not load libraries."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not glibc Linux: the worker's own time limit still holds
        return None


def _child_setup() -> Callable[[], None] | None:
    prctl = _prctl() if os.name == "posix" else None
    if prctl is None:
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die when the worker dies


def ocr_image(image, timeout_s: float | None = None, where: str = "the image", language: str | None = None) -> OcrText:
    """Read the text of a Pillow image with one language (all installed ones together when None).
    Raises LoadError (reason "timeout") past timeout_s seconds."""
    binary, langs = _tesseract()
    langs = language or langs
    gray = image if getattr(image, "_ragchat_prepared", False) else prepare(image)
    buffer = io.BytesIO()
    gray.save(buffer, "PPM")  # binary PGM: no compression to spend time on, and Tesseract reads it from stdin
    try:
        done = subprocess.run(
            [binary, "stdin", "stdout", "-l", langs, "--psm", "3", "tsv"],
            input=buffer.getvalue(), capture_output=True, timeout=timeout_s, env=_env(),
            preexec_fn=_child_setup(),
        )
    except subprocess.TimeoutExpired:
        raise _timeout(where, round(timeout_s or 0, 2)) from None
    except OSError as exc:
        raise OcrUnavailable(f"OCR could not start Tesseract ({exc}); {INSTALL_HINT}", reason="unsupported") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.decode(errors="replace").splitlines() if ln.strip() and "Estimating resolution" not in ln]
        detail = lines[-1][:160] if lines else f"exit code {done.returncode}"
        raise LoadError(f"OCR failed on {where}: {detail}", reason="unreadable")
    result = parse_tsv(done.stdout.decode("utf-8", errors="replace"), gray.width, gray.height)
    return OcrText(result.text, result.boxes, result.confidence, langs)


def prepare(image):
    """Grayscale, transparency on white, and huge images scaled down. Small ones are left alone:
    scaling a 900-pixel image of 48-pixel Chinese text up 2x made Tesseract misread 4 of 33 characters."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        image = Image.alpha_composite(background, rgba)
    gray = image.convert("L")
    width, height = gray.size
    scale = 1.0
    if width * height > OCR_MAX_PIXELS:
        scale = (OCR_MAX_PIXELS / (width * height)) ** 0.5
    if scale != 1.0:
        gray = gray.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    gray._ragchat_prepared = True  # a second read of the same page skips this
    return gray


# Wide characters: Han, with the CJK radicals, punctuation, kana and full-width forms around them.
_WIDE = re.compile(f"[\u2e80-\u33ff{CJK_RANGE}\uff00-\uffef]")
_CLOSING = set(",.;:!?)]}'\"")  # ASCII marks Tesseract reads after a Chinese character take no space


def parse_tsv(tsv: str, width: int, height: int) -> OcrText:
    """Tesseract's TSV -> text (blank line between blocks, newline between lines) and word boxes."""
    parts: list[str] = []
    boxes: list[Box] = []
    length = 0
    last_line = last_block = None
    prev_word = ""
    confidences: list[float] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":
            continue
        word = cols[11].strip()
        if not word:
            continue
        try:
            block = (cols[1], cols[2])
            line = (cols[1], cols[2], cols[3], cols[4])
            left, top, w, h = (int(c) for c in cols[6:10])
            confidences.append(max(0.0, float(cols[10])))
        except ValueError:
            continue
        if last_line is None:
            sep = ""
        elif block != last_block:
            sep = "\n\n"
        elif line != last_line:
            sep = "\n"
        elif _WIDE.match(prev_word[-1]) and (_WIDE.match(word[0]) or word[0] in _CLOSING):
            sep = ""
        else:
            sep = " "
        parts.append(sep)
        length += len(sep)
        boxes.append((length, length + len(word), round(left / width, 4), round(top / height, 4),
                      round((left + w) / width, 4), round((top + h) / height, 4)))
        parts.append(word)
        length += len(word)
        last_line, last_block, prev_word = line, block, word
    confidence = sum(confidences) / len(confidences) if confidences else 0.0
    return OcrText("".join(parts), tuple(boxes), confidence)


_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_HAN = re.compile(f"[{CJK_RANGE}]")


class PageReader:
    """Reads the pages of one document, choosing eng or chi_sim per page (see the module's docstring)."""

    ENG_CONFIDENCE = 75.0  # an eng read below this mean word confidence is tried again with chi_sim
    HAN_SHARE = 0.1  # a chi_sim read with fewer Chinese letters than this is tried again with eng
    MAX_LOST = 2  # after this many second reads in a row that lost, stop trying (a bad scan, not a language)

    def __init__(self):
        installed = languages().split("+")
        self.choices = [lang for lang in ("eng", "chi_sim") if lang in installed]
        self.current = self.choices[0]
        self.lost = 0

    def read(self, image, timeout_s: float | None, where: str) -> OcrText:
        started = time.monotonic()
        gray = prepare(image)
        first = ocr_image(gray, timeout_s, where, self.current)
        if len(self.choices) < 2 or self.lost >= self.MAX_LOST or not self._doubtful(first):
            return first
        other = next(lang for lang in self.choices if lang != self.current)
        left = None if timeout_s is None else timeout_s - (time.monotonic() - started)
        if left is not None and left <= 0:
            return first
        try:
            second = ocr_image(gray, left, where, other)
        except OcrTimeout:  # no time for a second opinion: keep the first read
            return first
        if second.confidence > first.confidence:
            self.current, self.lost = other, 0
            return second
        self.lost += 1
        return first

    def _doubtful(self, result: OcrText) -> bool:
        if len(result.boxes) < 3:  # a blank page or a stray mark: nothing to compare
            return False
        if result.language == "eng":
            return result.confidence < self.ENG_CONFIDENCE
        han, latin = len(_HAN.findall(result.text)), len(_LATIN.findall(result.text))
        return han < self.HAN_SHARE * max(1, han + latin)


# --- image files -------------------------------------------------------------------------------


def image_frames(path: Path, max_pages: int) -> tuple[int, Iterator]:
    """(number of pages, iterator of Pillow images) of an image file; a multi-page TIFF has several.

    The size is checked from the file's header, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses at open, from the header; its message carries the pixel count.
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise _bomb(None, int(pixels.group(1)) if pixels else None) from None
    except UnidentifiedImageError:
        raise LoadError("corrupt image: Pillow cannot read it", reason="corrupt") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LoadError(f"corrupt image: {exc}", reason="corrupt") from None
    total = getattr(image, "n_frames", 1) if image.format == "TIFF" else 1

    def frames() -> Iterator:
        from PIL import ImageOps

        try:
            for index in range(min(total, max_pages)):
                if index:
                    image.seek(index)
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _bomb((width, height))
                frame = image.copy() if total > 1 else image
                frame.load()
                yield ImageOps.exif_transpose(frame) if index == 0 else frame
        except (LoadError, MemoryError):
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise LoadError(f"corrupt image: {exc}", reason="corrupt") from None
        finally:
            image.close()

    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise _bomb((width, height))
    return total, frames()


def _bomb(size: tuple[int, int] | None, pixels: int | None = None) -> LoadError:
    if size:
        pixels = size[0] * size[1]
    what = f"{size[0]:,} x {size[1]:,} pixels, " if size else ""
    what += f"{pixels / 1e6:,.0f} megapixels" if pixels else "more pixels than allowed"
    return LoadError(
        f"image too large: {what}, over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; it may be a decompression bomb",
        reason="too-large",
    )


def ocr_pages(
    pictures: Iterator[tuple[int, Callable[[], object]]],
    total: int,
    timeout_s: float | None,
    progress: Callable[[str, int, int], None] | None,
) -> Iterator[tuple[int, OcrText]]:
    """OCR pictures one by one: (page number, a function that makes its image or None) -> (page number, text).

    A progress event ("OCR page 3/8") goes out before each page; the parsing worker's time limit
    starts again at each event, so every page has the whole limit. Making the image (rendering a PDF
    page, decoding a frame) counts against that page's time.
    """
    reader = PageReader()
    for done, (number, make) in enumerate(pictures, 1):
        started = time.monotonic()
        if progress is not None:
            progress(f"OCR page {done}/{total}", done - 1, total)
        image = make()
        if image is None:  # the caller could not make this picture, and said so itself
            continue
        left = None
        where = f"page {number}" if total > 1 or number != 1 else "the image"
        if timeout_s is not None:
            # A little under the worker's limit, so that Tesseract is stopped here and the reason is exact.
            left = timeout_s * 0.9 - (time.monotonic() - started)
            if left <= 0:
                raise _timeout(where, timeout_s)
        try:
            yield number, reader.read(image, left, where)
        except OcrTimeout:
            raise _timeout(where, timeout_s) from None
