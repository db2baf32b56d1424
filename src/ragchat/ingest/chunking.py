"""Pure functions: page text -> overlapping chunks with stable ids and exact character offsets.

Chunk length is measured in the embedding model's own tokens, so the embedder never silently cuts a
chunk. Text is split at sentence ends first (English . ! ? and Chinese 。！？；), then at clause marks
(， 、 , ; :), and only a sentence longer than a whole chunk is cut at token boundaries. Chunks never
cross a page, so every chunk has one page number and `page_text[start:end]` is its passage.

Markdown tables (a header row, a `|---|` separator row, then rows; the loaders write tables this
way) are cut only between rows, and a chunk that starts inside a table's body begins with that
table's header and separator rows, repeated, so that every piece of a table says what its columns
are. For such a chunk `text == header + "\n" + page_text[start:end]`; for every other chunk
`text == page_text[start:end]`. A header longer than half a chunk is not repeated.

This module knows nothing of files, stores or models; the token counter is passed in.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from ragchat.core.text import CJK_RANGE, sentence_spans
from ragchat.store.records import Chunk


class Tokenizer(Protocol):
    def count(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, without special tokens."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of text."""


_CLAUSE_END = re.compile(r"(?<=[，、,;；:：])\s*|\n")
_CJK_CHAR = re.compile(f"[{CJK_RANGE}]")
_LINE_END = re.compile(r"\n")
_TABLE_ROW = re.compile(r"[ \t]*\|.*\|[ \t]*$")
_TABLE_SEPARATOR = re.compile(r"[ \t]*\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*$")


@dataclass(frozen=True)
class Table:
    start: int  # where the header row starts
    body: int  # where the first row after the separator starts
    end: int  # end of the last row (before its newline)

    def header(self, text: str) -> str:
        return text[self.start : self.body].rstrip("\n")


def find_tables(text: str) -> list[Table]:
    """Markdown tables in text: a row line, a separator line, then any number of row lines."""
    lines, pos = [], 0
    for line in text.split("\n"):
        lines.append((pos, pos + len(line)))
        pos += len(line) + 1
    tables, i = [], 0
    while i + 1 < len(lines):
        (a, b), (c, d) = lines[i], lines[i + 1]
        if _TABLE_ROW.fullmatch(text, a, b) and _TABLE_SEPARATOR.fullmatch(text, c, d):
            j = i + 2
            while j < len(lines) and _TABLE_ROW.fullmatch(text, *lines[j]):
                j += 1
            body = lines[i + 2][0] if i + 2 < len(lines) else d
            tables.append(Table(a, min(body, d + 1), lines[j - 1][1]))
            i = j
        else:
            i += 1
    return tables


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    spans, pos = [], start
    for m in pattern.finditer(text, start, end):
        if m.end() > pos and m.start() >= pos:
            if text[pos : m.end()].strip():
                spans.append((pos, m.end()))
            pos = m.end()
    if text[pos:end].strip():
        spans.append((pos, end))
    return spans


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentences with the break after them (no text is lost): a sentence ends after terminal
    punctuation, plus closing quotes or brackets, before any word (! ? and Chinese marks need no
    space after them), or at a blank line."""
    return sentence_spans(text, start, end, lower_continues=False, closers=True, cjk_ends="。！？；!?", keep_break=True)


def _units(text: str, tok: Tokenizer, limit: int, tables: Sequence[Table] = (), row_limits: Sequence[int] = ()) -> list[tuple[int, int, int]]:
    """(start, end, tokens) pieces that tile the text in order. Outside tables a piece is a sentence
    of at most `limit` tokens; inside a table it is the header with its separator, or one row of at
    most that table's `row_limits` entry (room is left for the repeated header)."""
    pieces: list[tuple[int, int, int]] = []  # (start, end, limit)
    pos = 0
    for t, row_limit in zip(tables, row_limits):
        pieces += [(a, b, limit) for a, b in _sentences(text, pos, t.start)]
        pieces.append((t.start, t.body, limit))
        pieces += [(a, b, row_limit) for a, b in _split(text, t.body, t.end, _LINE_END)]
        pos = t.end
    pieces += [(a, b, limit) for a, b in _sentences(text, pos, len(text))]
    out: list[tuple[int, int, int]] = []
    counts = tok.count([text[s:e] for s, e, _ in pieces])
    for (s, e, most), n in zip(pieces, counts):
        if n <= most:
            out.append((s, e, n))
            continue
        clauses = _split(text, s, e, _CLAUSE_END)
        for (cs, ce), cn in zip(clauses, tok.count([text[a:b] for a, b in clauses])):
            if cn <= most:
                out.append((cs, ce, cn))
                continue
            out += _hard_split(text, cs, ce, tok, most)
    return out


def _hard_split(text: str, start: int, end: int, tok: Tokenizer, limit: int) -> list[tuple[int, int, int]]:
    """No punctuation to cut at: cut at word starts (token boundaries for CJK), re-counting each
    piece because word pieces at a cut can tokenize differently."""
    spans = [(start + a, start + b) for a, b in tok.spans(text[start:end])]
    out, i = [], 0
    while i < len(spans):
        j = min(i + limit, len(spans))
        while True:
            cut = j
            if j < len(spans):  # prefer a cut where a new word starts, in the second half
                for m in range(j, i + max(1, (j - i) // 2), -1):
                    if text[spans[m][0] - 1].isspace() or _CJK_CHAR.match(text[spans[m][0]]):
                        cut = m
                        break
            piece_start = spans[i][0] if out else start
            piece_end = spans[cut][0] if cut < len(spans) else end
            n = tok.count([text[piece_start:piece_end]])[0]
            if n <= limit or cut - i <= 1:
                break
            j = cut - (n - limit)
        out.append((piece_start, piece_end, n))
        i = cut
    return out


def chunk_page(
    text: str,
    page: int | None,
    tok: Tokenizer,
    max_tokens: int,
    overlap_tokens: int,
    make_id: Callable[[int | None, int, int], str],
    first_seq: int = 0,
) -> list[Chunk]:
    """Greedily pack sentence units into chunks of at most max_tokens, repeating up to
    overlap_tokens of trailing units at the start of the next chunk, and a table's header at the
    start of a chunk that begins inside that table."""
    tables = find_tables(text)
    headers = [t.header(text) for t in tables]
    # A header is repeated only when it takes at most half a chunk; 0 means "not repeated".
    repeat = [n if n <= max_tokens // 2 else 0 for n in (tok.count(headers) if headers else [])]
    units = _units(text, tok, max_tokens, tables, [max_tokens - n for n in repeat])
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        # Inside a table's body: the chunk starts with the header again, and has that much less room.
        inside = next((k for k, t in enumerate(tables) if t.body <= units[i][0] < t.end), None)
        prefix, budget = "", max_tokens
        if inside is not None and repeat[inside]:
            prefix, budget = headers[inside] + "\n", max_tokens - repeat[inside]
        j, total = i, 0
        while j < len(units) and total + units[j][2] <= budget:
            total += units[j][2]
            j += 1
        j = max(j, i + 1)
        start, end = units[i][0], units[j - 1][1]
        body = text[start:end]
        # Trim whitespace at the edges but keep exact offsets.
        lead = len(body) - len(body.lstrip())
        start, end = start + lead, start + lead + len(body.strip())
        seq = first_seq + len(chunks)
        chunks.append(Chunk(make_id(page, start, end), seq, page, start, end, prefix + text[start:end]))
        if j >= len(units):
            break
        # Step back over trailing units until the overlap is reached (whole sentences, so the
        # last one may overshoot, but never past half a chunk), and always move forward.
        k, back = j, 0
        while overlap_tokens and k - 1 > i and back < overlap_tokens and back + units[k - 1][2] <= max_tokens // 2:
            back += units[k - 1][2]
            k -= 1
        i = k
    return chunks


def chunk_id(doc_id: str, content_sha: str, page: int | None, start: int, end: int) -> str:
    """Deterministic: the same document content always yields the same chunk ids."""
    key = f"{doc_id}|{content_sha}|{page}|{start}|{end}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def chunk_pages(
    pages: Sequence[tuple[int | None, str]],
    tok: Tokenizer,
    max_tokens: int,
    overlap_tokens: int,
    doc_id: str,
    content_sha: str,
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for number, text in pages:
        chunks += chunk_page(
            text,
            number,
            tok,
            max_tokens,
            overlap_tokens,
            lambda p, a, b: chunk_id(doc_id, content_sha, p, a, b),
            first_seq=len(chunks),
        )
    return chunks
