"""Small generators of hostile and broken PDFs, built byte by byte for the isolation tests.

Each function returns the bytes of a whole file. They are written to attack the parser, not to be
valid: offsets are exact where the attack needs the parser to follow them.
"""

from __future__ import annotations

import zlib

HEADER = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _content(text: str) -> bytes:
    return _stream(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text.encode("latin-1"))


def _page(parent: int = 2, contents: int = 5) -> bytes:
    return (
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents %d 0 R >>" % (parent, contents)
    )


def build(objects: list[bytes], trailer: bytes = b"", size: int | None = None, prev: int | None = None) -> tuple[bytes, int]:
    """A PDF with objects numbered from 1, one xref table and a trailer. Returns (bytes, xref offset)."""
    out = bytearray(HEADER)
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    size = len(objects) + 1 if size is None else size
    prev_entry = b"" if prev is None else b"/Prev %d " % prev
    out += b"trailer\n<< /Size %d /Root 1 0 R %s%s>>\nstartxref\n%d\n%%%%EOF\n" % (size, prev_entry, trailer, xref_at)
    return bytes(out), xref_at


def _objects(text: str, pages: bytes | None = None, catalog_extra: bytes = b"") -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalog_extra,
        pages or b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _page(),
        FONT,
        _content(text),
    ]


def normal(text: str = "Hello from a small normal PDF") -> bytes:
    """A valid one-page PDF whose text layer is `text`."""
    return build(_objects(text))[0]


def _deflate_zeros(n_bytes: int) -> bytes:
    """A zlib stream that inflates to about n_bytes zero bytes, built by hand in milliseconds.

    Compressing gigabytes with zlib takes seconds, so the deflate blocks are written directly: each
    block is fixed-Huffman "copy 258 bytes from distance 1" repeated, sized to end on a byte
    boundary so the same block can simply be repeated.
    """
    copies = 8190  # 10 + 13 * copies bits is a whole number of bytes when copies % 8 == 6

    def block(first: bool, final: bool = False, n: int = copies) -> bytes:
        bits: list[int] = [1 if final else 0, 1, 0]  # BFINAL, then BTYPE=01 (fixed Huffman), low bit first

        def code(value: int, length: int) -> None:  # Huffman codes go most significant bit first
            bits.extend((value >> i) & 1 for i in range(length - 1, -1, -1))

        if first:
            code(0b00110000, 8)  # literal byte 0
        for _ in range(n):
            code(0b11000101, 8)  # length 258
            code(0b00000, 5)  # distance 1
        code(0, 7)  # end of block
        bits.extend([0] * (-len(bits) % 8))
        return bytes(sum(bit << i for i, bit in enumerate(bits[j : j + 8])) for j in range(0, len(bits), 8))

    per_block = copies * 258
    count = max(1, n_bytes // per_block)
    body = block(first=True) + block(first=False) * (count - 1) + block(first=False, final=True, n=0)
    total = 1 + count * per_block
    adler = ((total % 65521) << 16) | 1  # adler32 of `total` zero bytes
    return b"\x78\x01" + body + adler.to_bytes(4, "big")


def flate_bomb(inflated_gb: float = 4.0) -> bytes:
    """A page whose content stream inflates to `inflated_gb` GB.

    The stream is compressed twice (/Filter [/FlateDecode /FlateDecode]), so the file stays a few
    kB while a parser without limits must allocate gigabytes.
    """
    inner = _deflate_zeros(int(inflated_gb * 1024**3))
    outer = zlib.compress(inner, 9)
    objects = _objects("unused")
    objects[4] = _stream(outer, b"/Filter [/FlateDecode /FlateDecode]")
    return build(objects)[0]


def circular_prev() -> bytes:
    """Two xref sections whose trailers' /Prev point at each other, so following /Prev never ends."""
    first, first_xref = build(_objects("circular prev"), prev=9_999_999_999)
    # An incremental update: a second xref section (re-listing object 5) whose /Prev is the first.
    update_at = len(first)
    update = b"5 0 obj\n" + _content("circular prev, updated") + b"\nendobj\n"
    second_xref = update_at + len(update)
    update += b"xref\n5 1\n%010d 00000 n \n" % update_at
    update += b"trailer\n<< /Size 6 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (first_xref, second_xref)
    # Point the first trailer's /Prev at the second section; same width, so no offset moves.
    first = first.replace(b"/Prev 9999999999", b"/Prev %010d" % second_xref)
    return first + update


def cyclic_pages() -> bytes:
    """A /Pages node whose /Kids contain itself (and a /Count that claims many pages)."""
    pages = b"<< /Type /Pages /Kids [2 0 R 3 0 R 2 0 R] /Count 1000000 >>"
    return build(_objects("cyclic pages", pages=pages))[0]


def huge_size() -> bytes:
    """A trailer that claims 2**40 objects, for parsers that allocate a table of /Size entries."""
    return build(_objects("huge size"), size=2**40)[0]


def xmp_billion_laughs() -> bytes:
    """An XMP metadata stream with nested XML entities that expand to about 3 GB of 'lol'."""
    entities = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    for level in range(1, 10):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    xml = (
        '<?xml version="1.0"?>\n<!DOCTYPE x:xmpmeta [\n' + "\n".join(entities) + "\n]>\n"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol9;</dc:title>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()
    objects = _objects("billion laughs", catalog_extra=b"/Metadata 6 0 R ")
    objects.append(_stream(xml, b"/Type /Metadata /Subtype /XML"))
    return build(objects)[0]


def deep_nesting(depth: int = 200_000) -> bytes:
    """An object nested `depth` arrays deep, for parsers that recurse once per level."""
    objects = _objects("deep nesting")
    objects[2] = _page()[:-2] + b" /Junk " + b"[" * depth + b"]" * depth + b" >>"
    return build(objects)[0]


def many_text_operations(count: int = 400_000) -> bytes:
    """A page with `count` tiny text-showing operations: a few kB on disk, minutes for pypdf to extract."""
    content = b"BT /F1 12 Tf " + b"(abc) Tj " * count + b"ET"
    objects = _objects("unused")
    objects[4] = _stream(zlib.compress(content, 9), b"/Filter /FlateDecode")
    return build(objects)[0]


def repeated_contents(copies: int = 200, inflated_mb: int = 70) -> bytes:
    """A page whose /Contents lists one highly compressed stream `copies` times.

    Each copy stays under pypdf's per-stream limit of 75 MB, but the page's content is all of them
    joined: 200 x 70 MB is 14 GB.
    """
    objects = _objects("unused")
    objects[2] = _page()[:-2].replace(b"/Contents 5 0 R", b"/Contents [" + b"5 0 R " * copies + b"]") + b" >>"
    objects[4] = _stream(zlib.compress(_deflate_zeros(inflated_mb * 1024**2), 9), b"/Filter [/FlateDecode /FlateDecode]")
    return build(objects)[0]
