#!/usr/bin/env python3
"""Check the hand-written PDF question set in this folder against the PDFs themselves.

Usage: python bench/data/pdf_qa/check.py [PDF_FOLDER]
PDF_FOLDER defaults to ../shared/data/pdfs relative to the repository root.

For every answerable question: the file exists, the page exists, the evidence occurs literally in
pypdf's text of that page (whitespace collapsed), and every answer group has an alternative that
is a case-insensitive substring of the evidence. For every question: _id unique, lang known,
"follows" names the line just before. qrels/test.tsv must list exactly the answerable questions.
Exit status 0 when everything holds, 1 otherwise. Needs only pypdf.
"""
import collections
import json
import logging
import sys
from pathlib import Path

import pypdf

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
LANGS = {"en", "zh", "zh2en", "en2zh"}


def collapse(s):
    return " ".join(s.split())


class Pages:
    def __init__(self, folder):
        self.folder = folder
        self.cache = {}

    def get(self, name):
        if name not in self.cache:
            reader = pypdf.PdfReader(str(self.folder / name))
            if reader.is_encrypted:
                reader.decrypt("")
            self.cache[name] = [collapse(p.extract_text() or "") for p in reader.pages]
        return self.cache[name]


def main(argv):
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    folder = Path(argv[1]) if len(argv) > 1 else (REPO / ".." / "shared" / "data" / "pdfs").resolve()
    errors = []
    pages = Pages(folder)
    queries = []
    for n, line in enumerate((HERE / "queries.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            errors.append(f"line {n}: blank line")
            continue
        try:
            queries.append(json.loads(line))
        except json.JSONDecodeError as e:
            errors.append(f"line {n}: bad JSON: {e}")

    seen = set()
    answerable = set()
    by_lang = collections.Counter()
    by_file = collections.defaultdict(collections.Counter)
    unans_by_file = collections.Counter()
    n_unans = n_follow = 0
    prev_id = None
    for q in queries:
        qid, md = q.get("_id"), q.get("metadata", {})
        err = lambda msg: errors.append(f"{qid}: {msg}")  # noqa: E731
        if not qid or qid in seen:
            err("missing or duplicate _id")
        seen.add(qid)
        if not str(q.get("text", "")).strip():
            err("empty text")
        lang, name = md.get("lang"), md.get("file")
        if lang not in LANGS:
            err(f"bad lang {lang!r}")
        by_lang[lang] += 1
        by_file[name][lang] += 1
        if not name or not (folder / name).is_file():
            err(f"no such PDF {name!r} in {folder}")
            prev_id = qid
            continue
        if "follows" in md:
            n_follow += 1
            if md["follows"] != prev_id:
                err(f"follows {md['follows']!r} but the line before is {prev_id!r}")
        if md.get("answerable", True) is False:
            n_unans += 1
            unans_by_file[name] += 1
            if "answers" in md or "evidence" in md:
                err("unanswerable question carries answers/evidence")
            prev_id = qid
            continue
        answerable.add((qid, name))
        groups, evidence, page = md.get("answers"), md.get("evidence", ""), md.get("page")
        if not groups or not all(isinstance(g, list) and g and all(isinstance(a, str) and a for a in g) for g in groups):
            err("answers must be a non-empty list of non-empty lists of strings")
            groups = []
        try:
            text = pages.get(name)
        except Exception as e:  # unreadable PDF
            err(f"cannot read {name}: {type(e).__name__}: {e}")
            prev_id = qid
            continue
        if not isinstance(page, int) or not 1 <= page <= len(text):
            err(f"page {page!r} out of range 1..{len(text)}")
        else:
            ev = collapse(evidence)
            if not ev or ev not in text[page - 1]:
                other = [i + 1 for i, t in enumerate(text) if ev and ev in t]
                err(f"evidence not on page {page}" + (f" (found on page(s) {other})" if other else ""))
        for g in groups:
            if not any(a.lower() in evidence.lower() for a in g):
                err(f"no alternative of {g} in the evidence")
        prev_id = qid

    qrels_path = HERE / "qrels" / "test.tsv"
    rows = qrels_path.read_text(encoding="utf-8").splitlines()
    if not rows or rows[0] != "query-id\tcorpus-id\tscore":
        errors.append("qrels: bad header")
    listed = set()
    for row in rows[1:]:
        cells = row.split("\t")
        if len(cells) != 3 or cells[2] != "1":
            errors.append(f"qrels: bad row {row!r}")
            continue
        listed.add((cells[0], cells[1]))
    for qid, name in sorted(answerable - listed):
        errors.append(f"qrels: missing {qid}\t{name}")
    for qid, name in sorted(listed - answerable):
        errors.append(f"qrels: {qid}\t{name} is not an answerable question")

    print(f"pypdf {pypdf.__version__}; PDFs from {folder}")
    print(f"{len(queries)} questions: {len(answerable)} answerable, {n_unans} unanswerable, "
          f"{n_follow} follow-ups; qrels rows: {len(rows) - 1}")
    print("per lang: " + ", ".join(f"{k} {by_lang[k]}" for k in sorted(LANGS)))
    for name in sorted(by_file):
        c = by_file[name]
        langs = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        print(f"  {name}: {sum(c.values())} ({langs}; unanswerable {unans_by_file[name]})")
    for e in errors:
        print("FAIL", e)
    print("OK" if not errors else f"{len(errors)} problem(s)")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
