"""Chunking with the real bundled tokenizer: limits, overlap, offsets, Chinese, stable ids."""

import pytest

from ragchat.embed.embedder import WordPieceTokenizer, bundled_model_path
from ragchat.ingest.chunking import chunk_pages


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer(bundled_model_path() / "tokenizer.json")


EN = " ".join(
    f"Sentence number {i} talks about table structure recognition and the TableFormer model in some detail."
    for i in range(60)
)
ZH = "".join(f"第{i}句话讨论了开源大模型的本地部署与使用方法。它支持中文并且免费商用！" for i in range(40))


def test_chunks_fit_the_model_and_overlap(tok):
    chunks = chunk_pages([(3, EN)], tok, 64, 16, "doc", "sha")
    assert len(chunks) > 5
    for c in chunks:
        assert tok.count([c.text])[0] <= 64
        assert EN[c.start : c.end] == c.text
        assert c.page == 3
    # consecutive chunks share text (overlap) and together cover everything
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end
    assert chunks[0].start == 0 and chunks[-1].end == len(EN.rstrip())


def test_no_overlap_when_zero(tok):
    chunks = chunk_pages([(1, EN)], tok, 64, 0, "doc", "sha")
    for a, b in zip(chunks, chunks[1:]):
        assert b.start >= a.end


def test_chinese_is_cut_at_sentence_punctuation(tok):
    chunks = chunk_pages([(None, ZH)], tok, 60, 10, "doc", "sha")
    assert len(chunks) > 3
    for c in chunks:
        assert tok.count([c.text])[0] <= 60
        assert c.text[-1] in "。！？；", c.text[-5:]
        assert ZH[c.start : c.end] == c.text


def test_unpunctuated_text_is_cut_at_token_limit(tok):
    text = "x" + "abcdefgh " * 500
    chunks = chunk_pages([(1, text)], tok, 50, 0, "doc", "sha")
    assert all(tok.count([c.text])[0] <= 50 for c in chunks)
    assert "".join(text[c.start : c.end] for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_ids_are_deterministic_and_depend_on_content(tok):
    a = chunk_pages([(1, EN)], tok, 64, 16, "doc", "sha1")
    b = chunk_pages([(1, EN)], tok, 64, 16, "doc", "sha1")
    c = chunk_pages([(1, EN)], tok, 64, 16, "doc", "sha2")
    assert [x.id for x in a] == [x.id for x in b]
    assert not {x.id for x in a} & {x.id for x in c}
    assert len({x.id for x in a}) == len(a)


def test_pages_are_kept_and_empty_pages_skipped(tok):
    chunks = chunk_pages([(1, "First page text."), (2, "   "), (3, "Third page text.")], tok, 64, 8, "d", "s")
    assert [c.page for c in chunks] == [1, 3]
    assert [c.seq for c in chunks] == [0, 1]


# --- Markdown tables ---------------------------------------------------------------------------

TABLE_PAGE = (
    "The warehouse keeps these items.\n\n"
    "| Item | Weight | Where |\n|---|---|---|\n"
    + "\n".join(f"| item {i} | {i * 3} kg | stored in warehouse number {i % 7} |" for i in range(40))
    + "\n\nAfter the table comes a closing sentence."
)
HEADER = "| Item | Weight | Where |\n|---|---|---|"


def test_find_tables():
    from ragchat.ingest.chunking import find_tables

    (table,) = find_tables(TABLE_PAGE)
    assert table.header(TABLE_PAGE) == HEADER
    assert TABLE_PAGE[table.body :].startswith("| item 0 |")
    assert TABLE_PAGE[: table.end].endswith("| item 39 | 117 kg | stored in warehouse number 4 |")
    assert find_tables("| not | a table |\nno separator\n") == []
    assert find_tables("a | b\n---|---\n") == []  # rows must start and end with a pipe


@pytest.mark.parametrize("overlap", [0, 16])
def test_a_table_is_cut_between_rows_and_every_piece_repeats_the_header(tok, overlap):
    chunks = chunk_pages([(2, TABLE_PAGE)], tok, 64, overlap, "doc", "sha")
    assert len(chunks) > 5
    start = TABLE_PAGE.index("| item 0 |")
    end = TABLE_PAGE.index("\n\nAfter")
    for c in chunks:
        assert tok.count([c.text])[0] <= 64
        passage = TABLE_PAGE[c.start : c.end]
        if start <= c.start < end:  # starts inside the table's body: header first, then whole rows
            assert c.text == HEADER + "\n" + passage
            assert passage.startswith("| item ")
        else:
            assert c.text == passage
        # rows are never cut in the middle
        inside = TABLE_PAGE[max(c.start, start) : min(c.end, end)]
        assert all(line.startswith("|") and line.endswith("|") for line in inside.split("\n") if line)
    covered = "".join(TABLE_PAGE[c.start : c.end] for c in chunks)
    assert all(f"| item {i} |" in covered for i in range(40))


def test_a_header_longer_than_half_a_chunk_is_not_repeated(tok):
    wide = "| " + " | ".join(f"column number {i}" for i in range(12)) + " |"
    text = wide + "\n" + "|---" * 12 + "|\n" + "\n".join("| " + " | ".join(str(i) for _ in range(12)) + " |" for i in range(30))
    chunks = chunk_pages([(1, text)], tok, 64, 0, "doc", "sha")
    assert all(c.text == text[c.start : c.end] for c in chunks)
    assert all(tok.count([c.text])[0] <= 64 for c in chunks)
