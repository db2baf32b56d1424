"""Office, EPUB, e-mail and CSV files: structure kept in the text, pages a viewer can show, and a clear
reason for every broken, hostile or empty file while the files beside it still ingest.

All files are made here (tests/samples.py) by the libraries that read them. OCR is in test_ocr.py.
"""

from __future__ import annotations

import time
import zipfile

import pytest

import samples
from ragchat.core.settings import IngestSettings
from ragchat.core.errors import LoadError
from ragchat.ingest import detect
from ragchat.ingest.detect import detect_kind
from ragchat.ingest.formats import csv as csv_format
from ragchat.ingest.formats.table import markdown_table
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.loaders import load


def expect_error(path, reason: str) -> LoadError:
    with pytest.raises(LoadError) as info:
        load(path)
    assert info.value.reason == reason, str(info.value)
    return info.value


# --- each format -------------------------------------------------------------------------------


def test_docx_keeps_headings_paragraphs_and_tables_in_order(tmp_path):
    doc = load(samples.docx(tmp_path / "report.docx"))
    assert doc.kind == "docx"
    assert [p.number for p in doc.pages] == [None]
    assert doc.pages[0].text == (
        "# Quarterly report\n\n"
        "Revenue grew in the third quarter, mostly in the north.\n\n"
        "## Revenue by region\n\n"
        "| Region | Revenue | Growth |\n"
        "|---|---|---|\n"
        "| North | 12.5 \\| EUR m | 8% |\n"  # a pipe inside a cell cannot break the row
        "| South | 9.1 | 2% |\n\n"
        "- Open the new office\n\n"
        "After the table comes the outlook."
    )


def test_pptx_gives_one_page_per_slide_with_notes(tmp_path):
    doc = load(samples.pptx(tmp_path / "deck.pptx"))
    assert doc.kind == "pptx"
    assert [p.number for p in doc.pages] == [1, 3]  # slide 2 has no text; numbers stay the slides'
    assert doc.pages[0].text == "# Launch plan\n\nShip in May\nHire two engineers\n\nSpeaker notes:\nMention the budget freeze."
    assert doc.pages[1].text == "# Prices\n\n| Plan | Price |\n|---|---|\n| Basic | 10 |\n| Pro | 25 |"


def test_xlsx_gives_one_page_per_sheet_as_a_table_with_its_header(tmp_path):
    doc = load(samples.xlsx(tmp_path / "book.xlsx"))
    assert doc.kind == "xlsx"
    assert [p.number for p in doc.pages] == [1, 3]  # the empty sheet 2 is skipped
    assert doc.pages[0].text == (
        "# Sales\n\n| Product | Units | Price | Shipped |\n|---|---|---|---|\n"
        "| Kelp crackers | 120 | 3.5 | 2024-03-01 |\n| Sea salt | 80 | 2.25 |  |"
    )
    assert doc.pages[1].text == "# Notes\n\n| Owner | Team |\n|---|---|\n| Ann | Ops |"  # empty columns A-B dropped


def test_xlsx_that_claims_a_billion_cells_reads_only_what_is_there(tmp_path):
    path = samples.xlsx_huge_dimension(samples.xlsx(tmp_path / "book.xlsx"), tmp_path / "huge.xlsx")
    start = time.monotonic()
    doc = load(path)
    assert time.monotonic() - start < 5
    assert "| Kelp crackers | 120 | 3.5 | 2024-03-01 |" in doc.pages[0].text


def test_csv_is_one_table_with_its_delimiter_and_quotes(tmp_path):
    doc = load(samples.csv(tmp_path / "people.csv"))
    assert doc.kind == "csv"
    assert doc.pages[0].text == '| name | city | note |\n|---|---|---|\n| Ann | Paris | likes "kelp"; a lot |\n| Bob | Lyon |  |'
    tsv = tmp_path / "people.tsv"
    tsv.write_text("a\tb\n1\t2\n", encoding="utf-16")  # any encoding the text decoder knows
    assert load(tsv).pages[0].text == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_epub_gives_one_page_per_chapter_without_the_table_of_contents(tmp_path):
    doc = load(samples.epub(tmp_path / "book.epub"))
    assert doc.kind == "epub"
    assert [(p.number, p.text) for p in doc.pages] == [
        (1, "# Low tide\n\nAnemones close when the water leaves."),
        (2, "# High tide\n\nCrabs hide under the rocks."),
    ]


def test_eml_has_headers_body_and_attachment_names(tmp_path):
    doc = load(samples.eml(tmp_path / "order.eml"))
    assert doc.kind == "eml"
    assert doc.pages[0].text == (
        "Subject: 预算 Budget 2025\nFrom: Ann Lee <ann@example.com>\nTo: bob@example.com\n"
        "Date: Mon, 06 Jan 2025 09:30:00 +0100\n\n"
        "Hi Bob,\nthe kelp order ships Friday.\n\n"
        "Attachments (not read):\n- invoice.pdf (application/pdf)"
    )


def test_eml_in_gb2312_with_a_mislabelled_charset_still_decodes(tmp_path):
    body = "通义千问支持中文问答，并且可以免费商用。".encode("gbk")
    raw = (b"Subject: =?gb2312?B?" + __import__("base64").b64encode("周报".encode("gb2312")) + b"?=\r\n"
           b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n"  # wrong: the bytes are GBK
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
    path = tmp_path / "gbk.eml"
    path.write_bytes(raw)
    text = load(path).pages[0].text
    assert text.startswith("Subject: 周报\nFrom: a@example.com")
    assert text.endswith("通义千问支持中文问答，并且可以免费商用。")


def test_eml_with_only_html_is_read_as_text(tmp_path):
    text = load(samples.eml(tmp_path / "html.eml", html_only=True)).pages[0].text
    assert text.endswith("The kelp order ships Friday.")
    assert "<b>" not in text and "x()" not in text


# --- tables stay tables --------------------------------------------------------------------------


def test_markdown_table_pads_rows_and_drops_empty_rows_and_columns():
    assert markdown_table([["a", "", "b"], ["", "", ""], ["1", "", "2", "3"]]) == "| a | b |  |\n|---|---|---|\n| 1 | 2 | 3 |"
    assert markdown_table([["x\ny", " z "]]) == "| x y | z |\n|---|---|"
    assert markdown_table([]) == ""


# --- type detection: the content decides ----------------------------------------------------------


@pytest.mark.parametrize(("maker", "kind"), [(samples.docx, "docx"), (samples.pptx, "pptx"), (samples.xlsx, "xlsx"), (samples.epub, "epub")])
def test_a_zip_container_is_told_by_its_parts_not_its_name(tmp_path, maker, kind):
    made = maker(tmp_path / f"made.{kind}")
    misnamed = tmp_path / "download.pdf"
    misnamed.write_bytes(made.read_bytes())
    doc = load(misnamed)
    assert doc.kind == kind
    assert any("named .pdf" in w for w in doc.warnings)


def test_a_pdf_named_docx_is_read_as_pdf(tmp_path):
    import hostile

    path = tmp_path / "letter.docx"
    path.write_bytes(hostile.normal("Dear Ann, the kelp has arrived."))
    doc = load(path)
    assert doc.kind == "pdf" and doc.pages[0].text == "Dear Ann, the kelp has arrived."
    assert any("named .docx" in w for w in doc.warnings)


def test_a_plain_zip_and_opendocument_are_refused_by_name(tmp_path):
    plain = tmp_path / "photos.docx"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("a.txt", "hello")
    assert "Word document (.docx)" in str(expect_error(plain, "unsupported"))
    odt = tmp_path / "letter.odt"
    with zipfile.ZipFile(odt, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<x/>")
    assert "OpenDocument" in str(expect_error(odt, "unsupported"))


def test_detect_kind_by_extension_among_text_files(tmp_path):
    assert detect_kind(tmp_path / "a.csv", b"a,b\n1,2\n") == "csv"
    assert detect_kind(tmp_path / "a.tsv", b"a\tb\n") == "csv"
    assert detect_kind(tmp_path / "m.eml", b"From: a@b.c\nSubject: <html> hi\n\nbody") == "eml"
    assert detect_kind(tmp_path / "a.txt", b"a,b\n1,2\n") == "txt"


# --- broken, hostile and empty ---------------------------------------------------------------------


def test_zip_bomb_in_a_docx_is_refused_from_the_directory(tmp_path):
    good = samples.docx(tmp_path / "good.docx")
    path = samples.zip_with_declared_size(good, tmp_path / "bomb.docx", "word/document.xml", 4_000_000_000)
    error = expect_error(path, "too-large")
    assert "ZIP bomb" in str(error) and "word/document.xml" in str(error) and "3,815 MB" in str(error)


def test_a_real_high_ratio_member_is_refused_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setattr(detect, "ZIP_MAX_MEMBER", 8 * 2**20)  # so that a 16 MB bomb is enough here
    path = samples.docx_with_bomb(samples.docx(tmp_path / "good.docx"), tmp_path / "bomb.docx", megabytes=16)
    assert "word/media/zeros.bin would unpack to 16 MB" in str(expect_error(path, "too-large"))


def test_malformed_and_truncated_xlsx_are_corrupt(tmp_path):
    good = samples.xlsx(tmp_path / "good.xlsx")
    assert str(expect_error(samples.xlsx_malformed(good, tmp_path / "bad.xlsx"), "corrupt")).startswith("corrupt Excel workbook: ")
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(good.read_bytes()[:1500])
    assert "not a readable ZIP container" in str(expect_error(cut, "corrupt"))


def test_a_huge_csv_is_cut_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_format, "MAX_TABLE_CELLS", 10)
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(20)))
    doc = load(path)
    assert doc.pages[0].text.count("\n") == 5  # header, separator and 4 rows: 10 cells
    assert doc.warnings == ["only the first 10 cells were read"]


def test_malformed_csv_says_where(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text('a,b\n1,"' + "x" * 200_000 + '"\n')  # a field over the csv module's limit
    assert "malformed CSV near line" in str(expect_error(path, "corrupt"))


@pytest.mark.parametrize("name", ["e.docx", "e.pptx", "e.xlsx", "e.epub", "e.eml", "e.csv", "e.png", "e.jpg", "e.tiff"])
def test_a_zero_byte_file_of_every_type_is_empty(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    expect_error(path, "empty")


def test_documents_with_no_text_are_empty(tmp_path):
    import docx as python_docx
    import openpyxl
    from pptx import Presentation

    python_docx.Document().save(tmp_path / "blank.docx")
    openpyxl.Workbook().save(tmp_path / "blank.xlsx")
    Presentation().save(tmp_path / "blank.pptx")
    for name, what in [("blank.docx", "Word document"), ("blank.xlsx", "Excel workbook"), ("blank.pptx", "PowerPoint file")]:
        assert what in str(expect_error(tmp_path / name, "empty"))


def test_old_binary_office_files_say_what_to_do(tmp_path):
    path = tmp_path / "old.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    assert "save it as .docx" in str(expect_error(path, "unsupported"))


# --- through the isolated worker, in one batch ------------------------------------------------------


def test_a_batch_of_bad_files_each_get_a_reason_and_the_good_ones_load(tmp_path):
    good_docx = samples.docx(tmp_path / "good.docx")
    good_xlsx = samples.xlsx(tmp_path / "good.xlsx")
    empty = tmp_path / "empty.pptx"
    empty.write_bytes(b"")
    batch = {
        "bomb.docx": samples.zip_with_declared_size(good_docx, tmp_path / "bomb.docx", "word/document.xml", 4_000_000_000),
        "good.docx": good_docx,
        "bad.xlsx": samples.xlsx_malformed(good_xlsx, tmp_path / "bad.xlsx"),
        "good.xlsx": good_xlsx,
        "bomb.png": samples.png_bomb(tmp_path / "bomb.png"),
        "empty.pptx": empty,
        "deck.pptx": samples.pptx(tmp_path / "deck.pptx"),
        "mail.eml": samples.eml(tmp_path / "mail.eml"),
        "book.epub": samples.epub(tmp_path / "book.epub"),
    }
    expected = {"bomb.docx": "too-large", "bad.xlsx": "corrupt", "bomb.png": "too-large", "empty.pptx": "empty"}
    with IsolatedLoader(IngestSettings(parse_timeout_s=20, parse_memory_mb=512)) as loader:
        futures = {name: loader.submit(path) for name, path in batch.items()}
        for name, future in futures.items():
            if name in expected:
                with pytest.raises(LoadError) as info:
                    future.result()
                assert info.value.reason == expected[name], f"{name}: {info.value}"
                assert "\n" not in str(info.value)  # one line, for the file list
            else:
                assert future.result().pages, name
    assert "decompression bomb" in _reason(batch["bomb.png"])


def _reason(path) -> str:
    with pytest.raises(LoadError) as info:
        load(path)
    return str(info.value)
