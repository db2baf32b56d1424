"""CSV and TSV files -> one Markdown table whose first row is the header (one unnumbered page).

The delimiter of a .csv file is sniffed (comma, semicolon, tab or pipe; commas when it cannot be
told). Left out: types (every cell is text) and files past ``MAX_TABLE_CELLS``, which are cut.
"""

from __future__ import annotations

import csv
import io

from ragchat.core.errors import LoadError
from ragchat.ingest.decode import clean, decode_text
from ragchat.ingest.formats.table import markdown_table

MAX_TABLE_CELLS = 2_000_000  # a CSV file past this is cut, with a warning


def csv_text(data: bytes, ext: str) -> tuple[str, list[str]]:
    """A CSV or TSV file as one Markdown table whose first row is the header, and warnings (cut short)."""
    text = clean(decode_text(data))
    if ext == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:16384], delimiters=",;\t|").delimiter
        except csv.Error:  # one column, or too irregular to tell: commas, as most tools write
            delimiter = ","
    rows, cells, cut = [], 0, False
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for row in reader:
            cells += len(row)
            if cells > MAX_TABLE_CELLS:
                cut = True
                break
            rows.append(row)
    except csv.Error as exc:
        raise LoadError(f"malformed CSV near line {reader.line_num}: {exc}", reason="corrupt") from None
    return markdown_table(rows), [f"only the first {MAX_TABLE_CELLS:,} cells were read"] if cut else []
