"""Pure functions: page text -> overlapping chunks with stable ids and exact character offsets.

Chunk length is measured in the embedding model's own tokens, so the embedder never silently cuts a
chunk. Text is split at sentence ends first (English . ! ? and Chinese 。！？；), then at clause marks
(， 、 , ; :), and only a sentence longer than a whole chunk is cut at token boundaries. Chunks never
cross a page, so every chunk has one page number and `text == page_text[start:end]`.

This module knows nothing of files, stores or models; the token counter is passed in.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence


class Tokenizer(Protocol):
    def count(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, without special tokens."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of text."""


@dataclass(frozen=True)
class Chunk:
    id: str
    seq: int
    page: int | None
    start: int  # character offsets into the page text
    end: int
    text: str


# A sentence ends after terminal punctuation (plus closing quotes/brackets), or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|(?<=[。！？；!?])[”’」』）)]*\s*|\n\s*\n")
_CLAUSE_END = re.compile(r"(?<=[，、,;；:：])\s*|\n")
_CJK_CHAR = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


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


def _units(text: str, tok: Tokenizer, limit: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) pieces of at most `limit` tokens that tile the text in order."""
    out: list[tuple[int, int, int]] = []
    sentences = _split(text, 0, len(text), _SENTENCE_END)
    counts = tok.count([text[s:e] for s, e in sentences])
    for (s, e), n in zip(sentences, counts):
        if n <= limit:
            out.append((s, e, n))
            continue
        clauses = _split(text, s, e, _CLAUSE_END)
        for (cs, ce), cn in zip(clauses, tok.count([text[a:b] for a, b in clauses])):
            if cn <= limit:
                out.append((cs, ce, cn))
                continue
            out += _hard_split(text, cs, ce, tok, limit)
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
    overlap_tokens of trailing units at the start of the next chunk."""
    units = _units(text, tok, max_tokens)
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and total + units[j][2] <= max_tokens:
            total += units[j][2]
            j += 1
        j = max(j, i + 1)
        start, end = units[i][0], units[j - 1][1]
        body = text[start:end]
        # Trim whitespace at the edges but keep exact offsets.
        lead = len(body) - len(body.lstrip())
        start, end = start + lead, start + lead + len(body.strip())
        seq = first_seq + len(chunks)
        chunks.append(Chunk(make_id(page, start, end), seq, page, start, end, text[start:end]))
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
