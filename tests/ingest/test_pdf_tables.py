"""Ruled tables in PDFs come out as Markdown tables (ragchat.ingest.formats.pdf_tables), on PDFs the tests write.

The PDFs are written by hand here (Helvetica text and stroked lines, a few hundred bytes each), so
each test says exactly what is on its page.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from conftest import PDFS as FIXTURES
from ragchat.core.settings import IngestSettings
from ragchat.embed.embedder import WordPieceTokenizer, bundled_model_path
from ragchat.ingest.formats import pdf_tables
from ragchat.ingest.chunking import chunk_pages, find_tables
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.loaders import load


# --- writing small PDFs ----------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_ops(x: float, y: float, text: str, size: int = 10) -> str:
    return f"BT /F1 {size} Tf {x} {y} Td ({_escape(text)}) Tj ET\n"


def grid_ops(x0: float, top: float, widths: list[float], rows: list[list[str]], row_height: float = 20) -> str:
    """A table whose every cell is ruled: horizontal and vertical lines, then the cell texts."""
    xs = [x0]
    for w in widths:
        xs.append(xs[-1] + w)
    ys = [top - i * row_height for i in range(len(rows) + 1)]
    ops = "0.5 w\n"
    ops += "".join(f"{xs[0]} {y} m {xs[-1]} {y} l S\n" for y in ys)
    ops += "".join(f"{x} {ys[0]} m {x} {ys[-1]} l S\n" for x in xs)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            ops += text_ops(xs[c] + 4, ys[r] - row_height + 6, cell)
    return ops


def write_pdf(path: Path, pages: list[str], raw_streams: dict[int, bytes] | None = None) -> Path:
    """A PDF whose page i draws pages[i] (content-stream operators), on US Letter, in Helvetica.
    raw_streams replaces the content stream of a page (0-based) with these bytes, as they are."""
    raw_streams = raw_streams or {}
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    kids = []
    for i, ops in enumerate(pages):
        data = raw_streams.get(i, ops.encode("latin-1"))
        extra = b" /Filter /FlateDecode" if i in raw_streams else b""
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream")
        content = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % content)
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


ROWS = [
    ["Parameter", "Value", "Unit"],
    ["Nominal capacity", "196", "Ah"],
    ["Cell weight", "3380", "g"],
    ["Cycle life", "2000", "cycles"],
]
TABLE_PAGE = (
    text_ops(72, 740, "Battery cell specification", 14)
    + text_ops(72, 715, "The main figures of the cell are listed below.")
    + grid_ops(72, 690, [160, 80, 80], ROWS)
    + text_ops(72, 590, "All values are measured at 25 degrees.")
)
PROSE = "This page has no table at all. It only holds a few sentences of text."
PLAIN_PAGE = text_ops(72, 740, "Notes", 14) + text_ops(72, 715, PROSE) + "0.5 w 72 700 m 540 700 l S\n"


@pytest.fixture
def table_pdf(tmp_path):
    return write_pdf(tmp_path / "table.pdf", [TABLE_PAGE, PLAIN_PAGE])


# --- tests -------------------------------------------------------------------------------------------


def test_a_ruled_table_becomes_markdown_rows_with_its_header(table_pdf):
    doc = load(table_pdf, ocr="off", pdf_tables=True)
    text = doc.pages[0].text
    assert "| Parameter | Value | Unit |\n|---|---|---|\n| Nominal capacity | 196 | Ah |" in text
    assert "| Cell weight | 3380 | g |\n| Cycle life | 2000 | cycles |" in text
    # The text around the table stays where it was, and the table's cells are not repeated loose.
    assert text.index("main figures") < text.index("| Parameter") < text.index("All values are measured")
    assert text.count("3380") == 1
    [table] = find_tables(text)  # what the chunker will see: one table with its header
    assert table.header(text) == "| Parameter | Value | Unit |\n|---|---|---|"


def test_without_the_setting_the_table_is_pypdf_text(table_pdf):
    text = load(table_pdf, ocr="off", pdf_tables=False).pages[0].text
    assert "|" not in text
    assert "Cell weight" in text and "3380" in text


def test_a_page_without_a_table_is_unchanged(table_pdf):
    with_tables = load(table_pdf, ocr="off", pdf_tables=True)
    without = load(table_pdf, ocr="off", pdf_tables=False)
    assert with_tables.pages[1] == without.pages[1]
    assert PROSE in with_tables.pages[1].text


def test_every_chunk_of_a_long_table_repeats_the_header_and_keeps_offsets(tmp_path):
    rows = [["Item", "Specification"]] + [[f"Parameter {i}", f"{100 + i} units"] for i in range(30)]
    path = write_pdf(tmp_path / "long.pdf", [text_ops(72, 760, "Long table") + grid_ops(72, 740, [200, 200], rows)])
    page = load(path, ocr="off", pdf_tables=True).pages[0]
    tok = WordPieceTokenizer(bundled_model_path() / "tokenizer.json")
    chunks = chunk_pages([(page.number, page.text)], tok, 64, 8, "doc", "sha")
    assert len(chunks) > 2
    header = "| Item | Specification |\n|---|---|"
    for chunk in chunks:
        if "| Parameter" in chunk.text:
            assert chunk.text.startswith(header) or chunk.text.startswith("Long table\n\n" + header)
        body = page.text[chunk.start : chunk.end]
        assert chunk.text in (body, header + "\n" + body)


def test_a_box_around_prose_is_not_a_table(tmp_path):
    # One ruled cell holding a paragraph: a frame, not a table.
    frame = "0.5 w 60 600 m 550 600 l S 60 700 m 550 700 l S 60 600 m 60 700 l S 550 600 m 550 700 l S\n"
    ops = frame + text_ops(72, 680, "A framed paragraph of ordinary text.") + text_ops(72, 660, "It goes on here.")
    path = write_pdf(tmp_path / "frame.pdf", [ops])
    assert load(path, ocr="off", pdf_tables=True).pages == load(path, ocr="off", pdf_tables=False).pages


def test_a_table_ruled_only_around_its_columns_is_left_as_text(tmp_path):
    # A header row, then one ruled "row" that holds every data row as lines: pypdf reads it row by
    # row, pdfplumber would glue each column into one cell.
    ops = "0.5 w 72 700 m 392 700 l S 72 680 m 392 680 l S 72 620 m 392 620 l S\n"
    ops += "".join(f"{x} 700 m {x} 620 l S\n" for x in (72, 232, 392))
    ops += text_ops(76, 686, "Dataset") + text_ops(236, 686, "Model")
    for i, (name, model) in enumerate([("PubLayNet", "F/M"), ("PRImA", "M"), ("Newspaper", "F")]):
        ops += text_ops(76, 666 - 15 * i, name) + text_ops(236, 666 - 15 * i, model)
    path = write_pdf(tmp_path / "columns.pdf", [ops])
    assert load(path, ocr="off", pdf_tables=True).pages == load(path, ocr="off", pdf_tables=False).pages


def test_a_table_inside_a_frame_is_read_once(tmp_path):
    frame = "0.5 w 60 560 m 500 560 l S 60 720 m 500 720 l S 60 560 m 60 720 l S 500 560 m 500 720 l S\n"
    inner = grid_ops(80, 700, [150, 150], [["Name", "Value"], ["Alpha", "1"], ["Beta", "2"]])
    path = write_pdf(tmp_path / "framed.pdf", [frame + inner + text_ops(80, 600, "Below the table.")])
    text = load(path, ocr="off", pdf_tables=True).pages[0].text
    assert text == "| Name | Value |\n|---|---|\n| Alpha | 1 |\n| Beta | 2 |\n\nBelow the table."


def test_a_table_whose_cells_repeat_text_is_left_as_text(table_pdf):
    # What layout boxes that hold boxes of their own look like: more characters in the cells than
    # in the text layer inside the table's box. The splice refuses them.
    from pypdf import PdfReader

    page = PdfReader(table_pdf).pages[0]
    box = (72.0, 792 - 690.0, 392.0, 792 - 610.0)
    right = pdf_tables.FoundTable(box, tuple(tuple(r) for r in ROWS))
    doubled = pdf_tables.FoundTable(box, tuple(tuple(r) + tuple(r) for r in ROWS))
    assert "| Cell weight | 3380 | g |" in pdf_tables.splice(page, 792.0, [right])
    assert pdf_tables.splice(page, 792.0, [doubled]) is None
    nowhere = pdf_tables.FoundTable((0.0, 0.0, 10.0, 10.0), right.rows)  # no text of the layer in its box
    assert pdf_tables.splice(page, 792.0, [nowhere]) is None


def test_a_page_the_table_finder_cannot_read_keeps_its_text(table_pdf, monkeypatch):
    def broken(page):
        raise ValueError("a hostile page")

    monkeypatch.setattr(pdf_tables, "find_tables", broken)
    assert load(table_pdf, ocr="off", pdf_tables=True).pages == load(table_pdf, ocr="off", pdf_tables=False).pages


def test_a_document_pdfplumber_cannot_open_keeps_its_text(table_pdf, monkeypatch):
    import pdfplumber

    def cannot_open(*args, **kwargs):
        raise RuntimeError("cannot open")

    monkeypatch.setattr(pdfplumber, "open", cannot_open)
    assert load(table_pdf, ocr="off", pdf_tables=True).pages == load(table_pdf, ocr="off", pdf_tables=False).pages


def test_a_corrupt_page_is_skipped_and_the_table_page_is_still_read(tmp_path):
    garbage = zlib.compress(b"BT /F1 10 Tf 72 700 Td (cut") [:-6]  # a truncated Flate stream
    path = write_pdf(tmp_path / "corrupt.pdf", [TABLE_PAGE, PLAIN_PAGE], raw_streams={1: garbage})
    doc = load(path, ocr="off", pdf_tables=True)
    assert "| Nominal capacity | 196 | Ah |" in doc.pages[0].text


def test_too_many_rules_are_not_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf_tables, "MAX_EDGES", 5)
    path = write_pdf(tmp_path / "t.pdf", [TABLE_PAGE])
    assert "|" not in load(path, ocr="off", pdf_tables=True).pages[0].text


def test_cell_lines_are_joined_without_spaces_between_chinese_characters():
    assert pdf_tables.join_lines("电芯容\n量\nNominal\nCapacity") == "电芯容量 Nominal Capacity"
    assert pdf_tables.clean_rows([["a", None, ""], [None, None, None], ["b", None, "c"]]) == (("a", ""), ("b", "c"))


def test_a_real_ruled_chinese_table(tmp_path):
    # MinerU's CCS rules page: one ruled table with merged cells, Chinese.
    text = load(FIXTURES / "mineru__2list_1table.pdf", ocr="off", pdf_tables=True).pages[0].text
    assert "| 智能作业功能标志 | 功能标志含义说明 | | 技术要求 |\n|---|---|---|---|\n| Dx | 智能疏浚 |" in text


def test_the_setting_reaches_the_parsing_worker(table_pdf):
    with IsolatedLoader(IngestSettings(ocr="off", parse_timeout_s=60, pdf_tables=True)) as on:
        assert "| Cell weight | 3380 | g |" in on.load(table_pdf).pages[0].text
    with IsolatedLoader(IngestSettings(ocr="off", parse_timeout_s=60, pdf_tables=False)) as off:
        assert "|" not in off.load(table_pdf).pages[0].text
