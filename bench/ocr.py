"""OCR against the text layer: seconds per page and character error rate (CER), on PDFs that have both.

For every PDF in a folder (files that cannot be opened, or have no text layer, are listed and
skipped), the first --pages pages are rendered at the DPI the loader uses, read by the same
PageReader the loader uses (eng or chi_sim, chosen per page), and compared with pypdf's text layer.
CER is the edit distance between the two texts with all whitespace removed, divided by the text
layer's length. A text layer is not ground truth, and its reading order often differs from OCR's
(figures, sidebars, tables), which CER counts as errors; so the bench also prints token recall, the
share of the text layer's tokens (words, and single Chinese characters) that OCR found anywhere on
the page, which does not depend on order. A PDF with no text layer is timed only.

    .venv/bin/python bench/ocr.py ../shared/data/pdfs --pages 2
    .venv/bin/python bench/ocr.py ../shared/data/pdfs --pages 1 --only demo3 --only SVOLT   # a few files

This is what ``ingest.ocr = "force"`` does to a page that has a text layer. Prints one line per
page, then one per file (mean CER and seconds per page), the mean seconds per page (rendering and
OCR separately), and the mean and median CER and token recall by language of the file's
MANIFEST.tsv row (en, zh, zh+en), when there is one; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from ragchat.core.text import CJK_RANGE


def edit_distance(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def tokens(text: str) -> Counter:
    return Counter(re.findall(f"[{CJK_RANGE}]|[^\\W_]+", text.lower()))


def recall(ocr: str, layer: str) -> float:
    want = tokens(layer)
    return sum((tokens(ocr) & want).values()) / max(1, sum(want.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--pages", type=int, default=2, help="pages per file (default 2)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only files whose name holds TEXT (may be given more than once)")
    args = parser.parse_args()

    from pypdf import PdfReader

    from ragchat.ingest.formats.pdf import clean_pdf_text
    from ragchat.ingest.ocr import PageReader, languages
    from ragchat.ingest.rendering import PdfPages

    manifest = args.folder / "MANIFEST.tsv"
    langs = {}
    if manifest.is_file():
        langs = {r["file"]: r["lang"] for r in csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t")}
    print(f"tesseract languages: {languages()}")
    render_s, ocr_s, cers, recalls = [], [], {}, {}
    per_file: dict[str, dict] = {}
    for pdf in sorted(args.folder.glob("*.pdf")):
        if args.only and not any(text in pdf.name for text in args.only):
            continue
        try:
            reader = PdfReader(pdf)
            if reader.is_encrypted and not reader.decrypt(""):
                print(f"{pdf.name}: skipped (needs a password)")
                continue
            rendered = PdfPages(pdf)
        except Exception as exc:  # noqa: BLE001 - a benchmark lists what it skips
            print(f"{pdf.name}: skipped ({type(exc).__name__})")
            continue
        ocr = PageReader()
        with rendered:
            for number in range(1, min(args.pages, len(reader.pages)) + 1):
                layer_text = clean_pdf_text(reader.pages[number - 1].extract_text() or "")
                layer = squash(layer_text)
                start = time.perf_counter()
                image = rendered.render(number)
                middle = time.perf_counter()
                result = ocr.read(image, None, f"page {number}")
                end = time.perf_counter()
                render_s.append(middle - start)
                ocr_s.append(end - middle)
                mine = per_file.setdefault(pdf.name, {"lang": langs.get(pdf.name, "?"), "s": [], "cer": []})
                mine["s"].append(end - start)
                line = f"{pdf.name} p{number}: render {middle - start:.2f} s, OCR {end - middle:.2f} s ({result.language})"
                if layer:
                    cer = edit_distance(squash(result.text), layer) / len(layer)
                    found = recall(result.text, layer_text)
                    cers.setdefault(langs.get(pdf.name, "?"), []).append(cer)
                    mine["cer"].append(cer)
                    recalls.setdefault(langs.get(pdf.name, "?"), []).append(found)
                    line += f", CER {cer:.3f}, token recall {found:.3f}, over {len(layer)} chars"
                else:
                    line += f", no text layer, {len(squash(result.text))} chars read"
                print(line, flush=True)
    if not ocr_s:
        print("no page was read")
        return 1
    print("\nper file:")
    for name, mine in per_file.items():
        cer = f"CER mean {statistics.mean(mine['cer']):.3f}" if mine["cer"] else "no text layer"
        print(f"  {name} ({mine['lang']}): {len(mine['s'])} pages, {statistics.mean(mine['s']):.2f} s/page, {cer}")
    print(f"\npages: {len(ocr_s)}; render {statistics.mean(render_s):.2f} s/page; "
          f"OCR {statistics.mean(ocr_s):.2f} s/page (median {statistics.median(ocr_s):.2f}, max {max(ocr_s):.2f})")
    summary = {"pages": len(ocr_s), "render_s_per_page": round(statistics.mean(render_s), 2),
               "ocr_s_per_page": round(statistics.mean(ocr_s), 2), "by_lang": {}}
    for lang, values in sorted(cers.items()):
        found = recalls[lang]
        print(f"{lang}: CER mean {statistics.mean(values):.3f} (median {statistics.median(values):.3f}); "
              f"token recall mean {statistics.mean(found):.3f} (median {statistics.median(found):.3f}); {len(values)} pages")
        summary["by_lang"][lang] = {"cer_mean": round(statistics.mean(values), 3), "cer_median": round(statistics.median(values), 3),
                                    "recall_mean": round(statistics.mean(found), 3), "pages": len(values)}
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
