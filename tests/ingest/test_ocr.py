"""OCR with Tesseract: images, scanned PDF pages and garbage text layers are read page by page, with
progress, word boxes and a time limit, in English and Chinese.

The pictures are drawn here with Pillow's own font, except tests/data/ocr_chinese.png: two lines of
Chinese drawn once with WenQuanYi Micro Hei (Debian's fonts-wqy-microhei) at 36 px by Pillow and
kept, since a user's machine may have no Chinese font. Needs Debian's tesseract-ocr,
tesseract-ocr-eng and tesseract-ocr-chi-sim, which `make test` installs; without them these tests
fail (they are never skipped).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

import hostile
import samples
from conftest import DATA
from ragchat.core.settings import IngestSettings
from ragchat.core.errors import LoadError
from ragchat.ingest.formats.pdf import garbage_reason
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.loaders import load

pytestmark = [pytest.mark.slow]  # Tesseract on real pages


def test_tesseract_is_installed():
    assert shutil.which("tesseract"), "install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim (make test does)"

INVOICE = ["The invoice total is 1234 euros.", "Payment is due in March."]


def words(text: str) -> str:
    return " ".join(text.split())


# --- images --------------------------------------------------------------------------------------


def test_png_is_read_with_a_box_for_every_word(tmp_path):
    image = samples.text_image(INVOICE)
    path = tmp_path / "invoice.png"
    image.save(path)
    doc = load(path)
    assert doc.kind == "image" and doc.ocr_pages == [1]
    (page,) = doc.pages
    assert page.number == 1
    assert words(page.text) == "The invoice total is 1234 euros. Payment is due in March."
    assert [page.text[s:e] for s, e, *_ in page.boxes] == page.text.split()
    # "invoice" is drawn on the first line, after "The ": its box is there, in fractions of the image
    s, e, x0, y0, x1, y1 = page.boxes[1]
    assert page.text[s:e] == "invoice"
    from PIL import ImageDraw, ImageFont

    left, top, right, bottom = ImageDraw.Draw(image).textbbox((40, 40), "The invoice", font=ImageFont.load_default(size=40))
    assert abs(x1 - right / image.width) < 0.02 and abs(y0 - top / image.height) < 0.05
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_jpeg_and_every_page_of_a_tiff(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(samples.image_bytes(samples.text_image(["Kelp grows fast in cold water."]), "JPEG"))
    assert words(load(jpeg).pages[0].text) == "Kelp grows fast in cold water."

    first, second = samples.text_image(["First page of the fax."]), samples.text_image(["Second page of the fax."])
    tiff = tmp_path / "fax.tiff"
    first.save(tiff, save_all=True, append_images=[second])
    doc = load(tiff)
    assert [(p.number, words(p.text)) for p in doc.pages] == [(1, "First page of the fax."), (2, "Second page of the fax.")]


def test_chinese_is_read_with_chi_sim_and_written_without_spaces():
    text = load(DATA / "ocr_chinese.png").pages[0].text
    assert "是阿里云开源的大语言模型。" in text
    assert "它可以在本地部署，支持中文问答。" in text


def test_image_bomb_is_refused_before_decoding(tmp_path):
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        load(samples.png_bomb(tmp_path / "bomb.png"))
    assert info.value.reason == "too-large"
    assert "10,000 megapixels" in str(info.value) and "decompression bomb" in str(info.value)
    assert time.monotonic() - start < 2


def test_truncated_and_blank_images(tmp_path):
    data = samples.image_bytes(samples.text_image(INVOICE), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError) as info:
        load(cut)
    assert info.value.reason == "corrupt" and str(info.value).startswith("corrupt image: ")

    blank = tmp_path / "blank.png"
    samples.text_image([]).save(blank)
    with pytest.raises(LoadError) as info:
        load(blank)
    assert info.value.reason == "empty" and "OCR read no text" in str(info.value)


def test_ocr_off_refuses_images_and_says_how_to_turn_it_on(tmp_path):
    path = tmp_path / "invoice.png"
    samples.text_image(INVOICE).save(path)
    with pytest.raises(LoadError) as info:
        load(path, ocr="off")
    assert info.value.reason == "unsupported" and 'ingest.ocr = "off"' in str(info.value)


# --- PDF pages -----------------------------------------------------------------------------------


def scanned_pdf(path: Path, *pages: list[str]) -> Path:
    """An image-only PDF: one picture of text per page, no text layer (what a scanner makes)."""
    from PIL import Image

    images = []
    for lines in pages:  # letter size at 150 dpi, the text at the top
        page = Image.new("L", (1275, 1650), 255)
        page.paste(samples.text_image(lines, size=32, width=1275), (0, 60))
        images.append(page)
    images[0].save(path, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return path


def test_scanned_pdf_is_read_page_by_page_with_progress(tmp_path):
    path = scanned_pdf(tmp_path / "scan.pdf", ["Minutes of the kelp meeting."], ["Budget approved for March."])
    events = []
    doc = load(path, progress=lambda *event: events.append(event))
    assert events == [("OCR page 1/2", 0, 2), ("OCR page 2/2", 1, 2)]
    assert doc.kind == "pdf" and doc.ocr_pages == [1, 2]
    assert [(p.number, words(p.text)) for p in doc.pages] == [(1, "Minutes of the kelp meeting."), (2, "Budget approved for March.")]
    assert all(p.boxes for p in doc.pages)


def test_a_page_pdfium_cannot_draw_is_skipped_and_the_others_are_read(tmp_path, monkeypatch):
    from ragchat.ingest.rendering import PdfPages

    path = scanned_pdf(tmp_path / "scan.pdf", ["Minutes of the kelp meeting."], ["Budget approved for March."])
    draw = PdfPages.render

    def broken_first_page(self, number, *args, **kwargs):
        if number == 1:
            raise LoadError("corrupt PDF: page 1 cannot be rendered for OCR (test)", reason="corrupt")
        return draw(self, number, *args, **kwargs)

    monkeypatch.setattr(PdfPages, "render", broken_first_page)
    doc = load(path)
    assert [(p.number, words(p.text)) for p in doc.pages] == [(2, "Budget approved for March.")]
    assert any("could not be rendered for OCR: 1" in w for w in doc.warnings)


def test_scanned_pdf_with_ocr_off_is_refused_with_a_hint(tmp_path):
    with pytest.raises(LoadError) as info:
        load(scanned_pdf(tmp_path / "scan.pdf", ["Minutes."]), ocr="off")
    assert info.value.reason == "scanned" and 'ingest.ocr = "auto"' in str(info.value)


def test_force_reads_pages_that_have_a_text_layer(tmp_path):
    path = tmp_path / "normal.pdf"
    path.write_bytes(hostile.normal("Hello from a small normal PDF"))
    assert load(path).ocr_pages == []  # auto: the text layer is good
    doc = load(path, ocr="force")
    assert doc.ocr_pages == [1]
    assert words(doc.pages[0].text) == "Hello from a small normal PDF"
    assert doc.pages[0].boxes


def garbage_layer_pdf(path: Path, visible: list[str], garbage: str) -> Path:
    """A scanned page with an invisible text layer (render mode 3) of garbage, as from a broken font."""
    from pypdf import PdfReader, PdfWriter

    scan = scanned_pdf(path.with_suffix(".scan.pdf"), visible)
    objects = hostile._objects("unused")
    objects[4] = hostile._stream(b"BT 3 Tr /F1 12 Tf 72 700 Td (%s) Tj ET" % garbage.encode("latin-1"))
    layer = path.with_suffix(".layer.pdf")
    layer.write_bytes(hostile.build(objects)[0])
    writer = PdfWriter(clone_from=scan)
    writer.pages[0].merge_page(PdfReader(layer).pages[0])
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def test_a_garbage_text_layer_is_replaced_by_ocr_under_auto(tmp_path):
    symbols = "#$%&*+<=>@^_~ " * 6
    path = garbage_layer_pdf(tmp_path / "broken-font.pdf", ["The warranty lasts five years."], symbols)
    off = load(path, ocr="off")
    assert words(off.pages[0].text) == words(symbols)  # what the text layer says
    doc = load(path)
    assert doc.ocr_pages == [1]
    assert words(doc.pages[0].text) == "The warranty lasts five years."
    assert any("garbage text layer" in w and "letters or digits" in w for w in doc.warnings)


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("The warranty lasts five years from the date of purchase, as stated.", None),
        ("开源大模型可以在本地部署。通义千问支持中文问答，并且可以免费商用。", None),
        ("1 Cell Performance ........................................................ 3\n" * 5, None),  # dot leaders
        ("| 12.5 | 3.4 | 9.9 |\n| 1 | 2 | 3 |\n| 4.5 | 6.7 | 8.9 |", None),  # a table of numbers
        ("Café, crème brûlée, déjà vu, naïve façade: à la française.", None),  # accents are letters
        ("short #$%", None),  # under 20 characters: not judged
        ("\ue000\ue001\ue002\ue003 \ue004\ue005\ue006\ue007 abc\ue008\ue009\ue00a\ue00b\ue00c\ue00d " * 2, "unmapped"),
        ("\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12\x13\x14\x15\x16 word " * 2, "unmapped"),
        ("#$%&*+<=>@^_~ " * 4, "letters or digits"),
        ("¸ß¿¼Ó¢Óï ¿¼ÊÔ´ó¸Ù ½ÌÓý²¿ ¿¼ÊÔÖÐÐÄ", "mojibake"),  # GBK read one byte at a time
    ],
)
def test_garbage_reason(text, flagged):
    reason = garbage_reason(text)
    assert (reason is None) if flagged is None else (reason is not None and flagged in reason), reason


# --- in the isolated worker ------------------------------------------------------------------------


def test_ocr_past_the_time_limit_is_stopped_and_the_next_file_loads(tmp_path):
    page = tmp_path / "page.png"
    samples.text_image([f"Line {i} of a long page that takes Tesseract a while to read." for i in range(40)]).save(page)
    note = tmp_path / "note.txt"
    note.write_text("still working")
    with IsolatedLoader(IngestSettings(parse_timeout_s=0.5)) as loader:
        start = time.monotonic()
        with pytest.raises(LoadError) as info:
            loader.load(page)
        assert time.monotonic() - start < 0.5 + 3
        assert info.value.reason == "timeout"
        assert "OCR" in str(info.value) and "0.5 s" in str(info.value) and "ingest.parse_timeout_s" in str(info.value)
        assert loader.load(note).pages[0].text == "still working"


def test_the_worker_reports_ocr_progress_page_by_page(tmp_path):
    pages = [[f"Page {n} line {i} of the scanned report." for i in range(12)] for n in range(1, 4)]
    path = scanned_pdf(tmp_path / "scan.pdf", *pages)
    events = []
    with IsolatedLoader(IngestSettings(parse_timeout_s=30)) as loader:
        doc = loader.load(path, on_progress=lambda *event: events.append(event))
    assert events == [("OCR page 1/3", 0, 3), ("OCR page 2/3", 1, 3), ("OCR page 3/3", 2, 3)]
    assert doc.ocr_pages == [1, 2, 3] and "Page 3 line 11" in doc.pages[2].text


def test_ingest_shows_ocr_progress_and_finds_the_scanned_text(engine, tmp_path):
    from ragchat.ingest.pipeline import SourceFile

    scan = scanned_pdf(tmp_path / "minutes.pdf", ["The board approved the kelp farm expansion."], ["Harvest starts in October."])
    note = tmp_path / "note.txt"
    note.write_text("A plain note about sea salt.")
    bomb = samples.png_bomb(tmp_path / "bomb.png")
    events = []
    results = engine.ingestor.ingest([SourceFile(scan, "minutes.pdf"), SourceFile(bomb, "bomb.png"), SourceFile(note, "note.txt")],
                                     "default", on_event=events.append)
    outcome = {r.source: r for r in results}
    assert outcome["minutes.pdf"].outcome == "added" and outcome["note.txt"].outcome == "added"
    assert outcome["bomb.png"].outcome == "failed" and "decompression bomb" in outcome["bomb.png"].error
    ocr = [(e.message, e.done, e.total) for e in events if e.source == "minutes.pdf" and e.stage == "reading" and e.message]
    assert ocr == [("OCR page 1/2", 0, 2), ("OCR page 2/2", 1, 2)]
    hits = engine.retriever.search("When does the harvest start?")
    assert hits and hits[0].source == "minutes.pdf" and hits[0].page == 2
