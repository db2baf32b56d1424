"""loaders: real files in, pages of text or a LoadError with the right reason out (in-process)."""

from __future__ import annotations

import codecs
import csv
import re

import pytest

import hostile
from conftest import PDFS, ZH_TEXT
from ragchat.core.errors import LoadError
from ragchat.ingest.decode import decode_text
from ragchat.ingest.detect import SUPPORTED, detect_kind
from ragchat.ingest.document import LoadedDocument, Page
from ragchat.ingest.loaders import load

MANIFEST = list(csv.DictReader((PDFS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t"))
CJK = re.compile(r"[\u4e00-\u9fff]")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")

# Written in traditional characters, as a Taiwanese or Hong Kong user would save it in Big5.
TRADITIONAL = (
    "這是一份關於開源大型語言模型的週報。本期介紹了通義千問、Llama 3 與 Mistral 等模型，"
    "以及如何在自己的電腦上使用 Ollama 部署，並比較它們在中文問答上的表現。\n"
    "讀者來信詢問：檢索增強生成（RAG）需要多少記憶體？答案取決於向量資料庫與嵌入模型的大小。\n"
)


def seed_text() -> str:
    return ZH_TEXT.read_text(encoding="utf-8")


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def expect_error(path, reason: str, **kwargs) -> LoadError:
    with pytest.raises(LoadError) as info:
        load(path, **kwargs)
    assert info.value.reason == reason, str(info.value)
    return info.value


# --- the shared PDFs ---------------------------------------------------------------------------

SPECIAL = {"docsgpt__corrupt.pdf", "unstructured__password.pdf", "mineru__scanned.pdf"}


@pytest.mark.parametrize("row", [r for r in MANIFEST if r["file"] not in SPECIAL], ids=lambda r: r["file"])
def test_shared_pdf_gives_numbered_pages_of_clean_text(row):
    doc = load(PDFS / row["file"])
    assert doc.kind == "pdf"
    numbers = [page.number for page in doc.pages]
    assert numbers == list(range(1, int(row["pages"]) + 1))  # every page of these files has text
    text = "\n".join(page.text for page in doc.pages)
    assert not CONTROL.search(text)
    assert "\n\n\n" not in text
    if row["lang"].startswith("zh"):
        assert len(CJK.findall(doc.pages[0].text)) > 20
    else:
        assert len(re.findall(r"[A-Za-z]{3,}", doc.pages[0].text)) > 20


def test_copy_protected_pdf_opens_with_the_empty_password():
    doc = load(PDFS / "unstructured__copy-protected.pdf")
    assert [p.number for p in doc.pages] == [1, 2]
    assert "LayoutParser: A Unified Toolkit" in doc.pages[0].text  # the "ﬁ" ligature is unfolded


def test_encrypted_pdf_needs_the_password():
    error = expect_error(PDFS / "unstructured__password.pdf", "encrypted")
    assert "password is needed" in str(error) and "--password" in str(error)

    error = expect_error(PDFS / "unstructured__password.pdf", "encrypted", password="not it")
    assert "wrong" in str(error)

    doc = load(PDFS / "unstructured__password.pdf", password="password")
    assert doc.pages == [Page(number=1, text="File with password")]


def test_scanned_pdf_is_refused_with_an_ocr_hint_when_ocr_is_off():
    error = expect_error(PDFS / "mineru__scanned.pdf", "scanned", ocr="off")
    assert "ocrmypdf" in str(error) and 'ingest.ocr = "auto"' in str(error)


def test_corrupt_pdf_says_corrupt():
    error = expect_error(PDFS / "docsgpt__corrupt.pdf", "corrupt")
    assert str(error).startswith("corrupt PDF: ")


def test_truncated_pdf_is_corrupt(tmp_path):
    data = (PDFS / "mineru__demo3.pdf").read_bytes()
    expect_error(write(tmp_path, "cut.pdf", data[:2000]), "corrupt")


def test_pdf_cut_in_half_keeps_what_can_be_read(tmp_path):
    data = (PDFS / "mineru__demo3.pdf").read_bytes()
    try:
        doc = load(write(tmp_path, "half.pdf", data[: len(data) // 2]))
    except LoadError as error:
        assert error.reason in ("corrupt", "scanned")
    else:
        assert 0 < len(doc.pages) <= 10


def test_max_pages_stops_early_and_says_so():
    doc = load(PDFS / "mineru__demo3.pdf", max_pages=2)
    assert [p.number for p in doc.pages] == [1, 2]
    assert any("first 2 of 10 pages" in w for w in doc.warnings)


def _pdf_with_lines(*lines: str) -> bytes:
    ops = b"BT /F1 12 Tf 72 720 Td 14 TL " + b" ".join(b"(%s) '" % line.encode("latin-1") for line in lines) + b" ET"
    objects = hostile._objects("unused")
    objects[4] = hostile._stream(ops)
    return hostile.build(objects)[0]


def test_pdf_text_is_cleaned(tmp_path):
    pdf = _pdf_with_lines("An exam-", "ple of   spaced", "COVID-", "19 text\\000 with a NUL")
    text = load(write(tmp_path, "lines.pdf", pdf)).pages[0].text
    assert "example of spaced" in text  # hyphenated line break joined, spaces collapsed
    assert "COVID-\n19" in text  # not a word split: kept
    assert "\x00" not in text and "text with a NUL" in text


def test_pdf_pages_without_text_are_skipped(tmp_path):
    objects = hostile._objects("only the second page has text")
    objects[1] = b"<< /Type /Pages /Kids [6 0 R 3 0 R] /Count 2 >>"
    objects.append(hostile._page().replace(b"/Contents 5 0 R", b""))  # object 6: a page with no content
    doc = load(write(tmp_path, "gap.pdf", hostile.build(objects)[0]))
    assert doc.pages == [Page(number=2, text="only the second page has text")]


# --- type detection ----------------------------------------------------------------------------


def test_zip_named_pdf_is_refused(tmp_path):
    error = expect_error(write(tmp_path, "report.pdf", b"PK\x03\x04" + bytes(100)), "unsupported")
    assert str(error) == f"unsupported file type: looks like a ZIP archive; {SUPPORTED}"


def test_broken_docx_is_named(tmp_path):
    error = expect_error(write(tmp_path, "letter.docx", b"PK\x03\x04" + bytes(100)), "corrupt")
    assert "Word document" in str(error) and "not a readable ZIP container" in str(error)


def test_html_named_pdf_is_read_as_html_with_a_warning(tmp_path):
    page = b"<!DOCTYPE html><html><head><title>Not Found</title></head><body><p>No such report.</p></body></html>"
    doc = load(write(tmp_path, "report.pdf", page))
    assert doc.kind == "html"
    assert doc.pages[0].text == "Not Found\n\nNo such report."
    assert any(".pdf" in w and "HTML" in w for w in doc.warnings)


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        ("a.pdf", b"junk from a mail gateway\n%PDF-1.4\n", "pdf"),
        ("a.txt", b"%PDF-1.7\n", "pdf"),
        ("notes.md", b"# Title\n\nSome *markdown*.", "md"),
        ("notes.txt", b"# Title\n\nSome *markdown*.", "txt"),
        ("page.htm", b"<p>a fragment</p>", "html"),
        ("page.txt", b"  <!doctype html><html>", "html"),
        ("README", b"plain words", "txt"),
        ("wide.txt", codecs.BOM_UTF16_LE + "hello".encode("utf-16-le"), "txt"),
        ("wide.txt", "hello, no byte-order mark here".encode("utf-16-le"), "txt"),
        ("wide.html", codecs.BOM_UTF16_BE + "<html>".encode("utf-16-be"), "html"),
    ],
)
def test_detect_kind(tmp_path, name, head, kind):
    assert detect_kind(tmp_path / name, head) == kind


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"GIF89a" + bytes(20), "GIF image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(20), "old Microsoft Office"),
        (b"\x7fELF\x02\x01\x01" + bytes(50), "binary file"),
        (bytes(range(256)) * 4, "binary file"),
    ],
)
def test_detect_kind_refuses_binaries(tmp_path, head, words):
    with pytest.raises(LoadError) as info:
        detect_kind(tmp_path / "file.txt", head)
    assert info.value.reason == "unsupported"
    assert words in str(info.value) and "ragchat reads PDF" in str(info.value)


@pytest.mark.parametrize("name", ["empty.txt", "empty.pdf", "empty.html"])
def test_zero_byte_file_is_empty(tmp_path, name):
    expect_error(write(tmp_path, name, b""), "empty")


def test_whitespace_only_file_is_empty(tmp_path):
    expect_error(write(tmp_path, "blank.md", b" \n\r\n\t\n"), "empty")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "gone.txt", "missing")


# --- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_decode_simplified_chinese_seed(encoding):
    text = seed_text()
    if encoding == "gbk":  # GBK has no emoji; keep the lines it can hold
        text = "\n".join(line for line in text.splitlines() if _encodable(line, "gbk"))
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    assert decode_text(data) == text


@pytest.mark.parametrize("encoding", ["big5", "cp950", "big5hkscs", "utf-16-le"])
def test_decode_traditional_chinese(encoding):
    data = TRADITIONAL.encode(encoding)
    if encoding == "utf-16-le":
        data = codecs.BOM_UTF16_LE + data
    assert decode_text(data) == TRADITIONAL


SHORT_SENTENCES = [
    "你好，世界。",
    "本周开源模型更新：通义千问发布了新版本。",
    "如何在本地部署大模型？",
    "繁體中文的檔案也要能正確讀取。",
    "臺灣的天氣很好。",
]


@pytest.mark.parametrize(
    ("sentence", "encoding"),
    [(s, enc) for s in SHORT_SENTENCES for enc in ("gbk", "big5") if s.encode(enc, errors="ignore").decode(enc) == s],
)
def test_decode_short_chinese_sentences(sentence, encoding):
    assert decode_text(sentence.encode(encoding)) == sentence


def test_decode_other_text():
    assert decode_text("plain ASCII".encode()) == "plain ASCII"
    assert decode_text("naïve café, 10 €".encode("cp1252")) == "naïve café, 10 €"
    assert decode_text("Größe: ein schöner Tag".encode("cp1252")) == "Größe: ein schöner Tag"
    assert decode_text("Привет, как дела? Это тестовый текст.".encode("cp1251")) == "Привет, как дела? Это тестовый текст."
    assert decode_text("日本語のテキストです。".encode("shift_jis")) == "日本語のテキストです。"
    # EUC-KR Hangul are valid GB2312 bytes too: Korean must not come out as Chinese.
    korean = "대한민국의 수도는 서울이다. 오늘은 날씨가 매우 좋습니다."
    assert decode_text(korean.encode("euc-kr")) == korean
    assert decode_text(b"") == ""


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("encoding", ["gb18030", "big5", "utf-8-sig", "utf-16"])
def test_chinese_text_files_load(tmp_path, encoding):
    text = TRADITIONAL if encoding == "big5" else seed_text()
    doc = load(write(tmp_path, f"{encoding}.txt", text.encode(encoding)))
    assert doc == LoadedDocument(kind="txt", pages=[Page(number=None, text=text)])


def test_markdown_keeps_its_shape_and_loses_control_characters(tmp_path):
    source = "# Title\r\n\r\n    code block\r\n- item\x00 one\x07\r\n"
    doc = load(write(tmp_path, "notes.md", source.encode()))
    assert doc.kind == "md"
    assert doc.pages == [Page(number=None, text="# Title\n\n    code block\n- item one\n")]


# --- HTML --------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>Release notes</title>
<style>body { color: red }</style><script>var secret = "script text";</script></head>
<body>
  <!-- a comment -->
  <h1>Version   2.0</h1>
  <p>First
     paragraph with <b>bold</b> text.</p>
  <div style="display: none">hidden by style</div>
  <p hidden>hidden by attribute</p>
  <span style="visibility:hidden">invisible span</span>
  <noscript>enable JavaScript</noscript>
  <template><p>template text</p></template>
  <ul><li>one</li><li>two</li></ul>
  <table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
  <p>line<br>break</p>
  <pre>keep
  this</pre>
  <script>document.write("more script")</script>
</body></html>"""


def test_html_keeps_visible_text_and_block_structure(tmp_path):
    doc = load(write(tmp_path, "notes.html", PAGE.encode()))
    assert doc.kind == "html"
    text = doc.pages[0].text
    assert text.startswith("Release notes\n\nVersion 2.0\n\nFirst paragraph with bold text.")
    for gone in ("script", "color: red", "hidden by", "invisible", "JavaScript", "template", "comment"):
        assert gone not in text
    assert "one\ntwo" in text
    assert "a b" in text and "c d" in text
    assert "line\nbreak" in text
    assert "keep\nthis" in text


def test_html_charset_from_meta_tag(tmp_path):
    page = '<html><head><meta charset="gb2312"><title>周报</title></head><body><p>开源大模型</p></body></html>'
    doc = load(write(tmp_path, "zh.html", page.encode("gbk")))
    assert doc.pages[0].text == "周报\n\n开源大模型"


def test_html_in_big5_without_meta_tag(tmp_path):
    page = f"<html><body><p>{TRADITIONAL}</p></body></html>"
    doc = load(write(tmp_path, "zh.htm", page.encode("big5")))
    assert doc.pages[0].text == " ".join(TRADITIONAL.split())
