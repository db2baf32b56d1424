"""How well a chunk of a text-layer PDF is found on its page picture, and what a page view costs.

For every chunk of the PDFs given (chunked as ingestion does, with the embedder's tokenizer), the
chunk's span of pypdf's page text is lined up with PDFium's characters (ragchat.ingest.boxes): it
prints how many chunks were found exactly, how many through the diff, how many got no rectangle,
and the time of lining up (median, worst). It
also times drawing a page at 800 pixels and painting a highlight on it. Pages read with OCR are
left out (their boxes are Tesseract's own).

    .venv/bin/python bench/page_highlight.py ../shared/data/pdfs/*.pdf
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

from ragchat.core.settings import load_settings
from ragchat.core.errors import LoadError
from ragchat.ingest.boxes import _compact, aligned_rects
from ragchat.ingest.chunking import chunk_pages
from ragchat.ingest.loaders import load
from ragchat.ingest.rendering import page_chars, render_png
from ragchat.ui.pageview import draw_highlight


def main(paths: list[str]) -> None:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # odd fonts and offsets: noise here
    from ragchat.embed.embedder import WordPieceTokenizer, bundled_model_path

    settings = load_settings()
    tokenizer = WordPieceTokenizer(bundled_model_path() / "tokenizer.json")  # the bundled embedder's
    exact = diff = empty = 0
    align_s: list[float] = []
    render_s: list[float] = []
    paint_s: list[float] = []
    print(f"{'file':48} {'chunks':>6} {'exact':>6} {'diff':>5} {'none':>5}")
    for name in paths:
        path = Path(name)
        try:
            doc = load(path, ocr="off")
        except LoadError as exc:
            print(f"{path.name[:48]:48} skipped: {exc}")
            continue
        pages = [(p.number, p.text) for p in doc.pages]
        chunks = chunk_pages(pages, tokenizer, settings.chunking.max_tokens, settings.chunking.overlap_tokens, "d", "s")
        texts = dict(pages)
        layers = {}
        counts = [0, 0, 0]
        for c in chunks:
            if c.page not in layers:
                layers[c.page] = page_chars(path, c.page)
                started = time.perf_counter()
                png = render_png(path, c.page, 800)
                render_s.append(time.perf_counter() - started)
            text, boxes = layers[c.page]
            passage, _ = _compact(texts[c.page][c.start:c.end])
            layer, _ = _compact(text)
            found = layer.find(passage)
            started = time.perf_counter()
            rects = aligned_rects(texts[c.page], c.start, c.end, text, boxes)
            align_s.append(time.perf_counter() - started)
            if not rects:
                counts[2] += 1
            elif found >= 0 and layer.find(passage, found + 1) < 0:
                counts[0] += 1
            else:
                counts[1] += 1
            if rects and len(paint_s) < 20:
                started = time.perf_counter()
                draw_highlight(png, rects)
                paint_s.append(time.perf_counter() - started)
        exact, diff, empty = exact + counts[0], diff + counts[1], empty + counts[2]
        print(f"{path.name[:48]:48} {len(chunks):6} {counts[0]:6} {counts[1]:5} {counts[2]:5}")
    total = exact + diff + empty
    print(f"\nchunks {total}: exact {exact}, diff {diff}, no rectangle {empty}")
    if align_s:
        print(f"lining up: median {1000 * statistics.median(align_s):.1f} ms, worst {1000 * max(align_s):.0f} ms")
    if render_s:
        print(f"drawing a page at 800 px: median {1000 * statistics.median(render_s):.0f} ms, worst {1000 * max(render_s):.0f} ms")
    if paint_s:
        print(f"painting a highlight: median {1000 * statistics.median(paint_s):.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
