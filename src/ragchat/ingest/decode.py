"""Bytes of unknown encoding -> clean text: byte-order marks, UTF-16 without one, UTF-8, the Chinese
code pages (GB18030, Big5), Korean, then charset-normalizer; and ``clean``, the one cleaning step
every reader applies (line ends to ``\\n``, control characters out).

Used by the readers of text, CSV, HTML and e-mail (``ragchat.ingest.formats``), and by type
detection (``ragchat.ingest.detect``), which looks for HTML in a file's first bytes.
"""

from __future__ import annotations

import codecs
import functools
import re

# Checked longest first, because the UTF-32 LE mark starts with the UTF-16 LE one.
BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_SAMPLE_BYTES = 64 * 1024  # enough to judge an encoding; the whole file is decoded only once
# Tried in this order, so that a tie goes to the more common encoding. cp950 is Windows' Big5;
# big5hkscs adds Hong Kong characters.
_CANDIDATES = ("utf-8", "gb18030", "cp950", "big5hkscs")


def bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a byte-order mark shows up as NULs in every other byte of mostly-ASCII text."""
    sample = data[:4096]
    half = len(sample) // 2
    if half < 2:
        return None
    even_nuls = sample[0::2].count(0) / half
    odd_nuls = sample[1::2].count(0) / half
    if odd_nuls > 0.3 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.3 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding without producing mojibake.

    A byte-order mark decides first, then strict UTF-8. Otherwise GB18030 and Big5 are both tried
    and the one whose characters are common Chinese characters wins: wrong guesses between the two
    decode "successfully" into rare characters and kana. Korean in EUC-KR is told apart by its
    spacing, Japanese by its kana. Everything else is left to charset-normalizer, with cp1252
    preferred among equally good guesses.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    # Before UTF-8: ASCII text in UTF-16 is valid UTF-8 too, with a NUL after every letter.
    if b"\x00" in data[:4096] and (encoding := bomless_utf16(data)):
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass

    sample = data[:_SAMPLE_BYTES]
    decoded = {enc: sample.decode(enc, errors="replace") for enc in _CANDIDATES}
    scores = {enc: _plausibility(text) for enc, text in decoded.items()}
    best = max(_CANDIDATES, key=lambda enc: scores[enc])  # max keeps the first of equal scores
    # Kana sit at the same bytes in EUC-JP and GB2312, so Japanese can pass for Chinese with kana
    # in it; Chinese text has next to none.
    kana = len(re.findall("[\u3041-\u30ff]", decoded[best]))
    if scores[best] >= 0.8 and kana < 0.05 * len(decoded[best]):
        if best != "utf-8" and _looks_korean(sample):
            best = "cp949"
        return data.decode(best, errors="replace")

    from charset_normalizer import from_bytes

    results = from_bytes(sample)
    match = results.best()
    if match is None:
        return data.decode("cp1252", errors="replace")
    # Short Western text fits several code pages equally well; then the most common one wins.
    tied = {m.encoding for m in results if m.chaos <= match.chaos and m.coherence >= match.coherence}
    return data.decode("cp1252" if "cp1252" in tied else match.encoding, errors="replace")


def _looks_korean(sample: bytes) -> bool:
    """EUC-KR Hangul bytes are also valid GB2312 hanzi, so Korean "decodes" as plausible Chinese.

    What gives it away is spacing: Korean puts a space between words, Chinese writes none.
    """
    text = sample.decode("cp949", errors="replace")
    if text.count("\ufffd") > 1:  # one is allowed: the sample may end inside a character
        return False
    hangul = sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3")
    non_ascii = sum(1 for ch in text if ch >= "\x80")
    spaced = len(re.findall("[\uac00-\ud7a3] (?=[\uac00-\ud7a3])", text))
    return hangul > 0.8 * non_ascii and spaced > 0.1 * hangul


def _plausibility(text: str) -> float:
    """Share of non-ASCII characters that are common CJK characters or CJK punctuation."""
    common = _common_cjk()
    total = good = 0
    for ch in text:
        if ch < "\x80":
            continue
        total += 1
        if ch in common or "\u3000" <= ch <= "\u303f" or "\uff01" <= ch <= "\uff5e":
            good += 1
    return good / total if total else 0.0


@functools.cache
def _common_cjk() -> frozenset[str]:
    """The 3,755 level-1 characters of GB2312 (simplified) and the 5,401 of Big5 (traditional).

    Both standards list exactly the characters in everyday use, so the codecs themselves give a
    frequency list without shipping one.
    """
    chars = set()
    for lead in range(0xB0, 0xD8):
        for trail in range(0xA1, 0xFF):
            chars.add(bytes((lead, trail)).decode("gb2312", errors="ignore"))
    for lead in range(0xA4, 0xC7):
        for trail in [*range(0x40, 0x7F), *range(0xA1, 0xFF)]:
            chars.add(bytes((lead, trail)).decode("big5", errors="ignore"))
    chars.discard("")
    return frozenset(chars)


# --- cleaning ----------------------------------------------------------------------------------

# C0/C1 controls other than tab and newline, lone surrogates (they break UTF-8 encoding later) and
# the two noncharacters; NUL included.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """Line ends to \\n and control characters out; nothing else, so Markdown and code keep their shape."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n\n").replace("\x0b", "\n")
    return _CONTROL.sub("", text)
