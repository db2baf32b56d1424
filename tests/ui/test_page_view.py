"""The cited passage on its page: OCR word boxes and PDF text layers map a chunk to rectangles, and
``GET /ragchat/page/{doc_id}/{page}.png?chunk=ID`` draws the page with those rectangles highlighted.

Real parts: Tesseract, pypdfium2 in the isolated worker, the bundled embedder, and the web app built
by ``build_app`` (served in process). Where a highlight should be is checked against something the
code under test does not compute: where the test drew the text, what PDFium's own search finds, and
what Tesseract reads inside the highlighted area when asked again.
"""

from __future__ import annotations

import io
import re

import pytest

import hostile
import samples
from conftest import PDFS, make_settings
from ragchat.ingest.boxes import aligned_rects, word_rects
from ragchat.ingest.loaders import load
from ragchat.ingest.rendering import PngCache, page_chars
from ragchat.ui import render

pytestmark = [pytest.mark.slow]  # pages rendered in the isolated worker

DEMO = PDFS / "mineru__demo3.pdf"
SCANNED = PDFS / "mineru__scanned.pdf"
ENCRYPTED = PDFS / "unstructured__password.pdf"  # its password is "password"
HAN = re.compile(r"[\u4e00-\u9fff]")
OTTER_LINES = ["Sea otters float on their backs.", "They crack shells on flat stones."]


# ---- helpers -------------------------------------------------------------------------------------


def image(data: bytes):
    from PIL import Image

    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


def highlighted(plain: bytes, marked: bytes):
    """(mask of the pixels the highlight changed, its size) from the page without and with it."""
    from PIL import ImageChops

    a, b = image(plain), image(marked)
    assert a.size == b.size
    mask = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 12 else 0)
    return mask, a.size


def count_in(mask, box: tuple[float, float, float, float]) -> int:
    """Changed pixels inside a rectangle given as page fractions."""
    w, h = mask.size
    crop = mask.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
    return crop.histogram()[255]  # the mask holds 0 and 255 only


def pdfium_rect(path, page: int, phrase: str) -> tuple[float, float, float, float]:
    """Where PDFium's own text search finds phrase on the page, as page fractions (top left origin)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        handle = pdf[page - 1]
        width, height = handle.get_size()
        textpage = handle.get_textpage()
        searcher = textpage.search(phrase, match_case=True)
        found = searcher.get_next()
        assert found, f"{phrase!r} is not on page {page}"
        index, count = found
        rects = [textpage.get_rect(i) for i in range(textpage.count_rects(index, count))]
        left = min(r[0] for r in rects)
        right = max(r[2] for r in rects)
        top = max(r[3] for r in rects)
        bottom = min(r[1] for r in rects)
        return left / width, 1 - top / height, right / width, 1 - bottom / height
    finally:
        pdf.close()


# ---- spans -> rectangles, without a server ---------------------------------------------------------


def test_ocr_word_boxes_map_a_span_to_the_rectangles_of_its_words(tmp_path):
    from PIL import ImageDraw, ImageFont

    lines = ["Kelp forests grow along cold coasts.", "Sea otters keep the urchins in check.",
             "Storms tear the kelp loose every winter."]
    picture = samples.text_image(lines)
    path = tmp_path / "kelp.png"
    picture.save(path)
    (page,) = load(path).pages
    start = page.text.index("Sea otters")
    end = page.text.index("check.") + len("check.")
    (rect,) = word_rects(page.boxes, start, end)  # one line: one rectangle

    # where the test drew the second line, as fractions of the picture
    font = ImageFont.load_default(size=40)
    left, top, right, bottom = ImageDraw.Draw(picture).textbbox((40, 40 + 80), lines[1], font=font)
    w, h = picture.size
    assert abs(rect[0] - left / w) < 0.01 and abs(rect[2] - right / w) < 0.01
    assert abs(rect[1] - top / h) < 0.03 and abs(rect[3] - bottom / h) < 0.03
    # a span across two lines gives two rectangles, one per line, top to bottom
    both = word_rects(page.boxes, page.text.index("coasts"), page.text.index("otters") + 3)
    assert len(both) == 2 and both[0][3] <= both[1][1] + 0.01
    assert word_rects(page.boxes, len(page.text), len(page.text) + 5) == []


def _two_places_pdf() -> bytes:
    """One page with a line of text at the top left and another at the bottom right."""
    content = (b"BT /F1 20 Tf 72 720 Td (Mountain goats climb steep cliffs.) Tj ET "
               b"BT /F1 20 Tf 250 100 Td (Penguins huddle against the wind.) Tj ET")
    objects = hostile._objects("x")
    objects[4] = hostile._stream(content)
    return hostile.build(objects)[0]


def test_a_text_layer_span_is_found_on_the_page_where_it_was_drawn(tmp_path):
    path = tmp_path / "two.pdf"
    path.write_bytes(_two_places_pdf())
    text = load(path).pages[0].text  # pypdf's reading of the page
    layer_text, layer_boxes = page_chars(path, 1)  # PDFium's
    start = text.index("Penguins")
    (rect,) = aligned_rects(text, start, start + len("Penguins huddle against the wind."), layer_text, layer_boxes)
    # drawn from x = 250 pt, baseline 100 pt above the bottom of a 612 x 792 pt page, 20 pt type
    assert abs(rect[0] - 250 / 612) < 0.01 and 0.6 < rect[2] < 0.95
    assert (792 - 100 - 20) / 792 - 0.02 < rect[1] < rect[3] < (792 - 100 + 8) / 792
    # pypdf and PDFium disagreeing (a word the layer lacks) falls back to lining the texts up
    changed = text.replace("Penguins huddle", "Penguins always huddle")
    start = changed.index("Penguins")
    (fuzzy,) = aligned_rects(changed, start, start + len("Penguins always huddle against the wind."), layer_text, layer_boxes)
    assert abs(fuzzy[0] - rect[0]) < 0.01 and abs(fuzzy[3] - rect[3]) < 0.01
    # a table the loader wrote as Markdown: its borders are not characters of the page
    table = "| Penguins huddle | against the wind. |\n|---|---|"
    (cells,) = aligned_rects(table, 0, len(table), layer_text, layer_boxes)
    assert cells == rect
    top = text.index("Mountain")
    (first,) = aligned_rects(text, top, top + 8, layer_text, layer_boxes)
    assert first[3] < 0.15 and first[0] < 0.2


def test_the_cache_stays_within_its_budget():
    cache = PngCache(max_bytes=1000)
    for page in range(50):
        cache.put(("page", "doc", "sha", page, 800), bytes(90 + page))
        assert cache.size <= 1000
    assert 5 <= len(cache) <= 11 and cache.get(("page", "doc", "sha", 49, 800)) is not None
    assert cache.get(("page", "doc", "sha", 0, 800)) is None


def test_reversed_or_off_page_boxes_are_drawn_or_left_out_never_an_error():
    from PIL import Image

    from ragchat.ui.pageview import draw_highlight

    blank = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(blank, "PNG")
    drawn = image(draw_highlight(blank.getvalue(), [(0.6, 0.6, 0.2, 0.2), (1.3, 1.2, 1.5, 1.4)]))
    assert drawn.getpixel((80, 40)) != (255, 255, 255)  # the reversed box, put right
    assert drawn.getpixel((199, 99)) == (255, 255, 255)  # the one off the page: nothing


# ---- the page route, in process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The web app over a store with the TableFormer paper, the OCR'd scanned PDF and a text file."""
    from fastapi.testclient import TestClient

    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect
    from ragchat.ui.server import build_app

    root = tmp_path_factory.mktemp("page-view")
    notes = root / "notes.txt"
    notes.write_text("Notes about kelp: kelp forests grow along cold coasts.\n")
    picture = root / "otters.png"
    samples.text_image(OTTER_LINES, width=1200).save(picture)
    engine = Engine(make_settings(root / "store"))
    results = engine.ingestor.ingest(collect([DEMO, SCANNED, notes, picture]), "default")
    assert [r.outcome for r in results] == ["added"] * 4, [r.line() for r in results]
    (locked,) = engine.ingestor.ingest(collect([ENCRYPTED]), "default", password="password")
    assert locked.outcome == "added", locked.line()
    fastapi_app, _ = build_app(engine, workdir=root)
    client = TestClient(fastapi_app, base_url="http://127.0.0.1:7860")
    docs = {d.source: d for d in engine.catalog.documents()}
    try:
        yield {"client": client, "engine": engine, "docs": docs, "app": fastapi_app}
    finally:
        fastapi_app.state.page_views.close()
        fastapi_app.state.webapp.jobs.close()
        engine.close()


def get_png(client, doc_id: str, page: int, chunk: str | None = None, width: int = 800) -> bytes:
    url = f"/ragchat/page/{doc_id}/{page}.png?w={width}" + (f"&chunk={chunk}" if chunk else "")
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    assert r.headers["content-type"] == "image/png"
    return r.content


def chunk_with(engine, doc_id: str, phrase: str):
    rows = [c for c in engine.catalog.chunks_of(doc_id) if phrase in c.text]
    assert rows, f"no chunk holds {phrase!r}"
    return rows[0]


def test_a_text_pdf_page_is_drawn_with_the_chunk_highlighted_where_its_text_is(app):
    client, engine, doc = app["client"], app["engine"], app["docs"]["mineru__demo3.pdf"]
    inside = "strong baselines in all settings"  # a line of the abstract
    chunk = chunk_with(engine, doc.id, inside)
    assert chunk.page == 1
    # a line of page 1 that this chunk does not hold
    outside = next(p for p in ("Jingfeng Yang", "Google Assistant", "Introduction", "Georgia Institute")
                   if p not in chunk.text)
    plain = get_png(client, doc.id, 1)
    assert image(plain).size[0] == 800
    mask, _ = highlighted(plain, get_png(client, doc.id, 1, chunk.id))
    assert count_in(mask, pdfium_rect(DEMO, 1, inside)) > 100
    assert count_in(mask, pdfium_rect(DEMO, 1, outside)) == 0, f"{outside!r} is highlighted too"
    assert mask.getbbox() is not None


def test_the_ocr_scanned_page_is_highlighted_where_tesseract_reads_the_chunk(app):
    from ragchat.ingest.ocr import ocr_image

    client, engine, doc = app["client"], app["engine"], app["docs"]["mineru__scanned.pdf"]
    assert engine.catalog.page_boxes(doc.id, 1), "the OCR'd page keeps its word boxes"
    assert engine.catalog.page_boxes(app["docs"]["mineru__demo3.pdf"].id, 1) is None  # text layers keep none
    chunk = chunk_with(engine, doc.id, "交换价值首先表现为量的关系")
    plain = get_png(client, doc.id, chunk.page, width=1200)
    mask, (w, h) = highlighted(plain, get_png(client, doc.id, chunk.page, chunk.id, width=1200))
    box = mask.getbbox()
    assert box is not None, "nothing was highlighted"
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.8 * w * h, "the whole page is highlighted"
    # Tesseract, asked again about the highlighted area alone, reads the chunk's text there
    read = ocr_image(image(plain).crop(box), language="chi_sim").text
    seen = set(HAN.findall(read))
    wanted = set(HAN.findall(chunk.text))
    assert len(seen & wanted) >= 0.8 * len(seen), (read, chunk.text)
    assert len(seen & wanted) >= 0.6 * len(wanted), (read, chunk.text)


def test_an_image_document_is_drawn_with_its_ocr_text_highlighted_where_it_was_written(app):
    from PIL import ImageDraw, ImageFont

    client, engine, doc = app["client"], app["engine"], app["docs"]["otters.png"]
    (chunk,) = engine.catalog.chunks_of(doc.id)
    plain = get_png(client, doc.id, 1, width=600)
    mask, (w, h) = highlighted(plain, get_png(client, doc.id, 1, chunk.id, width=600))
    # where samples.text_image drew each line, as fractions of the picture
    drawn = samples.text_image(OTTER_LINES, width=1200)
    font = ImageFont.load_default(size=40)
    lines = []
    for i, line in enumerate(OTTER_LINES):
        left, top, right, bottom = ImageDraw.Draw(drawn).textbbox((40, 40 + i * 80), line, font=font)
        lines.append((left / drawn.width, top / drawn.height, right / drawn.width, bottom / drawn.height))
    for line in lines:
        assert count_in(mask, line) > 0.3 * (line[2] - line[0]) * w * (line[3] - line[1]) * h
    x0, y0, x1, y1 = mask.getbbox()
    assert x0 / w > lines[0][0] - 0.03 and x1 / w < max(r[2] for r in lines) + 0.03
    assert y0 / h > lines[0][1] - 0.06 and y1 / h < lines[-1][3] + 0.06


def test_pages_without_a_picture_and_unknown_documents_get_404(app):
    client, docs = app["client"], app["docs"]
    assert client.get(f"/ragchat/page/{docs['notes.txt'].id}/1.png").status_code == 404
    assert client.get(f"/ragchat/page/{'0' * 32}/1.png").status_code == 404
    assert client.get(f"/ragchat/page/{docs['mineru__demo3.pdf'].id}/99.png").status_code == 404
    assert client.get(f"/ragchat/page/{docs['mineru__demo3.pdf'].id}/x.png").status_code == 404
    # a chunk of another document gets the page without a highlight, never that chunk's boxes
    other = app["engine"].catalog.chunks_of(docs["mineru__scanned.pdf"].id)[0]
    plain = get_png(client, docs["mineru__demo3.pdf"].id, 1)
    assert highlighted(plain, get_png(client, docs["mineru__demo3.pdf"].id, 1, other.id))[0].getbbox() is None


def test_rendered_pages_are_cached_within_a_budget(app):
    client, views, doc = app["client"], app["app"].state.page_views, app["docs"]["mineru__demo3.pdf"]
    views.cache = PngCache(max_bytes=400_000)
    first = get_png(client, doc.id, 1, width=600)
    assert views.cache.get(("page", doc.id, doc.sha256, 1, 600)) == first
    for page in range(2, 11):
        get_png(client, doc.id, page, width=600)
        assert views.cache.size <= 400_000
    assert len(views.cache) < 9, "old pages were let go"
    assert views.cache.get(("page", doc.id, doc.sha256, 1, 600)) is None
    assert views.cache.get(("page", doc.id, doc.sha256, 10, 600)) is not None


def test_the_viewer_shows_the_page_picture_for_pdfs_and_text_for_the_rest(app):
    from ragchat.ui.session import new_state

    engine, webapp, docs = app["engine"], app["app"].state.webapp, app["docs"]
    chunk = chunk_with(engine, docs["mineru__scanned.pdf"].id, "交换价值首先表现为量的关系")
    notes = engine.catalog.chunks_of(docs["notes.txt"].id)[0]

    def source(n, info, row):
        return {"id": n, "source": info.source, "page": row.page, "text": row.text, "doc_id": info.id,
                "chunk_id": row.id, "start": row.start, "end": row.end}

    state = new_state()
    state["panel"] = {"cited": [source(1, docs["mineru__scanned.pdf"], chunk), source(2, docs["notes.txt"], notes)],
                      "retrieved": []}
    shown = webapp.show_source(1, state)
    url = re.search(r'<img src="([^"]+)"', shown).group(1)
    assert url.startswith(f"ragchat/page/{docs['mineru__scanned.pdf'].id}/{chunk.page}.png") and chunk.id in url
    assert '<mark class="rc-hl" id="rc-hl">' in shown  # the text highlight is still there
    r = app["client"].get("/" + url.replace("&amp;", "&"))
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    text_only = webapp.show_source(2, state)
    assert "<img" not in text_only and '<mark class="rc-hl"' in text_only
    assert render.passage_html(source(3, docs["notes.txt"], notes), "x", page_image=None).count("<img") == 0


def test_an_encrypted_pdf_says_why_its_page_is_not_drawn_instead_of_a_broken_picture(app):
    from ragchat.ui.session import new_state

    client, engine, webapp = app["client"], app["engine"], app["app"].state.webapp
    doc = app["docs"]["unstructured__password.pdf"]
    (chunk,) = engine.catalog.chunks_of(doc.id)
    state = new_state()
    state["panel"] = {"cited": [{"id": 1, "source": doc.source, "page": chunk.page, "text": chunk.text, "doc_id": doc.id,
                                 "chunk_id": chunk.id, "start": chunk.start, "end": chunk.end}], "retrieved": []}
    for _ in range(2):  # the second time from what the page views remember
        shown = webapp.show_source(1, state)
        assert "This page can&#x27;t be drawn: the PDF is encrypted" in shown
        assert "<img" not in shown  # no picture that cannot load
        assert '<mark class="rc-hl"' in shown and "File with password" in shown  # the text is still shown
        assert f"ragchat/original/{doc.id}#page=1" in shown  # the original opens with its password
    # the route itself says why
    r = client.get(f"/ragchat/page/{doc.id}/1.png")
    assert r.status_code == 404 and "encrypted" in r.json()["detail"]
