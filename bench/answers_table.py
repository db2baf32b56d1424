"""Markdown table rows from `ragchat eval --answers --json` outputs (docs/ANSWERS.md), both columns always:
as shown and the model alone.

    .venv/bin/python bench/answers_table.py /tmp/ragchat-answers/*.txt

Each FILE is the stdout of one run (bench/conversation.sh, bench/answers.sh): its last line is the JSON.
The row's label is the file name without .txt (set.mode.tag).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    print("| run | questions (answerable / not) | accuracy as shown | model alone | after turn 1 | refusal accuracy "
          "(model alone) | false refusals (model alone) | gold cited | first token p50 / p95 (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sys.argv[1:]:
        lines = Path(name).read_text(encoding="utf-8").strip().splitlines()
        if not lines or not lines[-1].startswith("{"):
            continue
        r = json.loads(lines[-1])
        refusal = f"{cell(r['refusal_accuracy'])} ({cell(r['model_refusal_accuracy'])})" if r["unanswerable"] else ""
        print(f"| {Path(name).stem} | {r['questions']} ({r['answerable']} / {r['unanswerable']}) | {cell(r['accuracy'])} | "
              f"{cell(r['model_accuracy'])} | {cell(r['later_turns_accuracy'])} | {refusal} | "
              f"{cell(r['false_refusals'])} ({cell(r['model_false_refusals'])}) | {cell(r['gold_cited'])} | "
              f"{cell(r['first_token_s_p50'], 2)} / {cell(r['first_token_s_p95'], 2)} |")


if __name__ == "__main__":
    main()
