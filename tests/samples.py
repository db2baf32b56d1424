"""Small files of every format the loaders read, made in the tests by the libraries that read them.

Each function writes one file and returns its path. Broken and hostile variants sit next to the good
ones. Nothing here reads ../shared: a user's clone has none.
"""

from __future__ import annotations

import datetime
import io
import struct
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path


def docx(path: Path) -> Path:
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading("Quarterly report", 1)
    document.add_paragraph("Revenue grew in the third quarter, mostly in the north.")
    document.add_heading("Revenue by region", 2)
    table = document.add_table(rows=3, cols=3)
    for i, row in enumerate([("Region", "Revenue", "Growth"), ("North", "12.5 | EUR m", "8%"), ("South", "9.1", "2%")]):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    document.add_paragraph("Open the new office", style="List Bullet")
    document.add_paragraph("After the table comes the outlook.")
    document.save(path)
    return path


def pptx(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Launch plan"
    first.placeholders[1].text = "Ship in May\nHire two engineers"
    first.notes_slide.notes_text_frame.text = "Mention the budget freeze."
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text at all
    third = deck.slides.add_slide(deck.slide_layouts[5])
    third.shapes.title.text = "Prices"
    table = third.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(4), Inches(1.5)).table
    for i, row in enumerate([("Plan", "Price"), ("Basic", "10"), ("Pro", "25")]):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    deck.save(path)
    return path


def xlsx(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sales = book.active
    sales.title = "Sales"
    sales.append(["Product", "Units", "Price", "Shipped"])
    sales.append(["Kelp crackers", 120, 3.5, datetime.datetime(2024, 3, 1)])
    sales.append(["Sea salt", 80.0, 2.25, None])
    book.create_sheet("Empty")
    notes = book.create_sheet("Notes")
    notes["C3"] = "Owner"
    notes["D3"] = "Team"
    notes["C4"] = "Ann"
    notes["D4"] = "Ops"
    book.save(path)
    return path


def epub(path: Path) -> Path:
    from ebooklib import epub as ebook

    book = ebook.EpubBook()
    book.set_identifier("ragchat-test")
    book.set_title("Tide pools")
    book.set_language("en")
    chapters = []
    for n, (title, body) in enumerate([("Low tide", "Anemones close when the water leaves."), ("High tide", "Crabs hide under the rocks.")], 1):
        chapter = ebook.EpubHtml(title=title, file_name=f"c{n}.xhtml", lang="en")
        chapter.content = f"<html><head><title>Tide pools</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.spine = ["nav", *chapters]
    book.add_item(ebook.EpubNcx())
    book.add_item(ebook.EpubNav())
    ebook.write_epub(str(path), book)
    return path


def eml(path: Path, html_only: bool = False) -> Path:
    message = EmailMessage()
    message["Subject"] = "预算 Budget 2025"
    message["From"] = "Ann Lee <ann@example.com>"
    message["To"] = "bob@example.com"
    message["Date"] = "Mon, 06 Jan 2025 09:30:00 +0100"
    if html_only:
        message.set_content("<html><body><p>The <b>kelp</b> order ships Friday.</p><script>x()</script></body></html>", subtype="html")
    else:
        message.set_content("Hi Bob,\nthe kelp order ships Friday.\n")
        message.add_alternative("<p>Hi Bob, the <b>kelp</b> order ships <i>Friday</i>.</p>", subtype="html")
        message.add_attachment(b"%PDF-1.4 not read", maintype="application", subtype="pdf", filename="invoice.pdf")
    path.write_bytes(bytes(message))
    return path


def csv(path: Path) -> Path:
    path.write_text('name;city;note\nAnn;Paris;"likes ""kelp""; a lot"\nBob;Lyon;\n', encoding="utf-8")
    return path


# --- broken and hostile ------------------------------------------------------------------------


def zip_with_declared_size(src: Path, dest: Path, member: str, size: int) -> Path:
    """A copy of a ZIP whose directory claims that `member` unpacks to `size` bytes (a bomb's signature)."""
    data = bytearray(src.read_bytes())
    name = member.encode()
    for signature, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        pos = data.find(signature)
        while pos != -1:
            (name_len,) = struct.unpack_from("<H", data, pos + name_len_at)
            if bytes(data[pos + name_at : pos + name_at + name_len]) == name:
                struct.pack_into("<I", data, pos + size_at, size)
            pos = data.find(signature, pos + 4)
    dest.write_bytes(bytes(data))
    return dest


def docx_with_bomb(src: Path, dest: Path, megabytes: int) -> Path:
    """A copy of a Word file with one more member: `megabytes` of zeros, which deflate about 1000:1."""
    with zipfile.ZipFile(src) as original, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for info in original.infolist():
            out.writestr(info, original.read(info))
        with out.open("word/media/zeros.bin", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(block)
    return dest


def xlsx_malformed(src: Path, dest: Path) -> Path:
    """A workbook whose sheet XML is cut off in the middle of a tag."""
    with zipfile.ZipFile(src) as original, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            out.writestr(info, data)
    return dest


def xlsx_huge_dimension(src: Path, dest: Path) -> Path:
    """A workbook whose first sheet claims to span A1:XFD1048576 (17 billion cells) while holding 12."""
    with zipfile.ZipFile(src) as original, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                start = data.index(b"<dimension ref=")
                end = data.index(b"/>", start)
                data = data[:start] + b'<dimension ref="A1:XFD1048576"' + data[end:]
            out.writestr(info, data)
    return dest


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header says width x height pixels, with a tiny body: decoding it would need 10 GB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


# --- pictures of text, for OCR ------------------------------------------------------------------


def text_image(lines: list[str], size: int = 40, width: int = 1400):
    """A white grayscale image with black lines of text in Pillow's own scalable font (no system font needed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new("L", (width, size * 2 * len(lines) + size * 2), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size + i * size * 2), line, font=font, fill=0)
    return image


def image_bytes(image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
