"""HTML pages -> their visible text: one line per block, a blank line between paragraphs, the title first.

Also the reader of the HTML inside EPUB chapters (``formats.epub``) and e-mail bodies
(``formats.mail``). The page's encoding comes from a byte-order mark, strict UTF-8, its ``<meta
charset>`` (with the labels browsers use), then the guess of ``ragchat.ingest.decode``.

Left out: CSS (text is hidden only by the ``hidden`` attribute and inline ``display: none`` or
``visibility: hidden`` styles), scripts and styles (dropped, never run), and images.
"""

from __future__ import annotations

import re

from ragchat.ingest.decode import BOMS, clean, decode_text

_DROP_TAGS = ["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "embed"]
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "figure"}
_LINES = {
    "address", "article", "aside", "caption", "dd", "details", "div", "dt", "fieldset", "figcaption",
    "footer", "form", "header", "hr", "li", "main", "nav", "section", "summary", "tr",
}  # fmt: skip
_PARAGRAPH_MARK, _LINE_MARK = "\ue000", "\ue001"  # private-use characters, stand-ins until the end
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# What browsers actually use for these labels (WHATWG Encoding Standard).
_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs", "iso-8859-1": "cp1252", "us-ascii": "cp1252"}


def _decode_html(data: bytes) -> str:
    if not any(data.startswith(bom) for bom, _ in BOMS) and b"\x00" not in data[:4096]:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        if match := _META_CHARSET.search(data[:4096]):
            label = match.group(1).decode("ascii").lower()
            try:
                return data.decode(_CHARSET_ALIASES.get(label, label), errors="replace")
            except LookupError:  # an unknown label: guess instead
                pass
    return decode_text(data)


def html_to_text(data: bytes, with_title: bool = True, headings: bool = False) -> str:
    """Visible text of a page: title first (unless with_title is False), one line per block, a blank line
    between paragraphs; with headings, <h1>-<h6> become Markdown "#" lines."""
    from bs4 import BeautifulSoup, NavigableString

    soup = BeautifulSoup(_decode_html(data), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""

    hidden = soup.find_all(_DROP_TAGS)
    hidden += soup.find_all(attrs={"hidden": True})
    hidden += soup.find_all(style=_HIDDEN_STYLE)
    for tag in hidden:
        if not tag.decomposed:  # a parent may already have taken it away
            tag.decompose()

    # HTML treats any run of whitespace as one space, except inside <pre>. Comments, doctypes and
    # the like are other NavigableString subclasses; get_text skips them, so leave them be.
    for string in list(soup.find_all(string=True)):
        if type(string) is NavigableString and string.find_parent("pre") is None:
            string.replace_with(re.sub(r"\s+", " ", string))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    if headings:
        for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
            if tag.get_text(strip=True):
                tag.insert(0, "#" * int(tag.name[1]) + " ")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" ")
    # Blocks get marks first and newlines later, so that nested blocks (<ul><li>) give one break,
    # not one per edge: a run of marks is a blank line if any of them is a paragraph, else a newline.
    for tag in soup.find_all(_PARAGRAPHS | _LINES):
        mark = _PARAGRAPH_MARK if tag.name in _PARAGRAPHS else _LINE_MARK
        tag.insert_before(mark)
        tag.insert_after(mark)

    text = re.sub(
        f"\\s*[{_PARAGRAPH_MARK}{_LINE_MARK}][\\s{_PARAGRAPH_MARK}{_LINE_MARK}]*",
        lambda m: "\n\n" if _PARAGRAPH_MARK in m.group() else "\n",
        soup.get_text(),
    )
    text = clean(text)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if with_title and title and not text.startswith(title):
        text = f"{title}\n\n{text}" if text else title
    return text
