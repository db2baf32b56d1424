"""A new user's walk through the app, in a real browser, with the built-in model: several PDFs, one conversation.

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/walkthrough.py [--pdf PDF ...] [--question Q ...] [--out DIR]

Like bench/screenshot.py: a fresh store in a temporary folder, `ragchat serve` on a free port with the
built-in default model (RAGCHAT_LLM__PROVIDER=llamacpp, HF_HUB_OFFLINE=1), headless Chromium (Debian's)
driven by Playwright. The PDFs are dropped on the page together; once the progress list and the
library say they are done, the questions are asked in turn in ONE conversation (follow-ups lean on
the previous question). After each answer the page is saved as a picture, the answer and its cited
sources are recorded, and the first cited source is opened in the viewer and saved as a picture too.
Per question it prints the answer, its sources, the seconds to the first streamed text and to the end,
and whether it holds the expected figure (or, for the last, default question, refuses). A JSON report
and the server's log are written next to the pictures.

Chinese needs a CJK font in the browser: `fc-list | grep -i -E "noto.*cjk|wqy"` must list one
(apt-get install fonts-wqy-microhei); the script warns when none is found.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT.parent / "shared" / "data" / "pdfs"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# (question, what a right answer says, regex the answer must match (None: a refusal is right), the file it comes from)
DEFAULT_QA = [
    ("How many questions per second can DPR process at retrieval time?", "995 questions/s",
     r"995", "unstructured__multi-column.pdf"),
    ("And BM25?", "23.7 questions/s (BM25/Lucene)", r"23\.7", "unstructured__multi-column.pdf"),
    ("高测现在的电力采购单价降到多少了？", "0.39 元/kwh (2022)", r"0\.39", "mineru__test_rearch_report.pdf"),
    ("那 2019 年的时候呢？", "0.8 元/kwh in 2019", r"0\.8(?![\d])", "mineru__test_rearch_report.pdf"),
    ("What was Reliance's net profit in 2021-22?", "₹ 67,845 crore", r"67,?845", "unstructured__reliance.pdf"),
    ("DPR 在 2100 万个向量上建 FAISS 索引要花多长时间？", "8.5 hours", r"8\.5", "unstructured__multi-column.pdf"),
    ("这篇论文的密集检索器在检索时每秒能处理多少个问题？", "995 questions/s (no word shared with the paper)", r"995",
     "unstructured__multi-column.pdf"),
    ("By 2022, what had the company's electricity purchase price fallen to?", "0.39 元/kwh (asked in English)",
     r"0\.39", "mineru__test_rearch_report.pdf"),
    ("What did Reliance spend on R&D in 2021-22?", "a refusal (the report does not say)", None, None),
]
DEFAULT_PDFS = [PDFS / "unstructured__multi-column.pdf", PDFS / "mineru__test_rearch_report.pdf",
                PDFS / "unstructured__reliance.pdf"]

# The highlight ragchat.ui.pageview paints on a page picture (the same test as tests/ui/test_browser.py).
AMBER_PIXELS = """img => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] > 240 && px[i + 1] > 195 && px[i + 1] < 245 && px[i + 2] < 190) n++;
  return n;
}"""
CARDS = """els => els.map(c => ({
  n: c.dataset.source,
  cited: c.classList.contains('rc-cited'),
  file: (c.querySelector('.rc-file') || {}).textContent || '',
  page: (c.querySelector('.rc-page') || {}).textContent || '',
  passage: (c.querySelector('.rc-passage') || {}).textContent || '',
}))"""


def cjk_font() -> str:
    try:
        out = subprocess.run(["fc-list"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return ""
    return "\n".join(line for line in out.splitlines() if re.search(r"noto.*cjk|wqy", line, re.I))


def bot_texts(page) -> list[str]:
    return page.eval_on_selector_all("#rc-chat .message-row.bot-row", "rows => rows.map(r => r.innerText)")


def own_words(page) -> str:
    """The last answer without the passage the app quotes under it (a blockquote): what the model said."""
    return page.eval_on_selector_all("#rc-chat .message-row.bot-row", """rows => {
        const c = rows[rows.length - 1].cloneNode(true);
        c.querySelectorAll('blockquote').forEach(b => b.remove());
        return c.textContent;
    }""")


def one_line(text: str, limit: int = 0) -> str:
    text = " ".join(text.split())
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


def wait_for_answer(page, before: int, t0: float, timeout_s: float) -> dict:
    """Poll the page until the new answer is final. Returns timings and what was seen on the way."""
    first = sources_at = None
    seen: list[str] = []
    deadline = t0 + timeout_s
    stable_since, last_text = None, None
    while time.monotonic() < deadline:
        texts = bot_texts(page)
        now = time.monotonic()
        if len(texts) > before:
            text = texts[-1]
            if not seen or seen[-1] != text:
                seen.append(text)
            if first is None and "▍" in text:
                first = now - t0
            title = page.eval_on_selector("#rc-sources-panel", "e => (e.querySelector('.rc-sources-title') || {}).innerText || ''")
            if sources_at is None and title.startswith("Searching in these passages"):
                sources_at = now - t0
            final_panel = title.startswith("Cited sources") or title.startswith("The answer cites no source")
            if text != last_text:
                last_text, stable_since = text, now
            settled = "▍" not in text and not text.strip().endswith("…") and now - stable_since > 3.0
            if "▍" not in text and (final_panel and now - stable_since > 0.3 or settled and not title.startswith("Searching")):
                end = stable_since - t0
                return {"first_s": first if first is not None else end, "end_s": end, "sources_s": sources_at,
                        "streamed": first is not None, "frames": len(seen), "timed_out": False}
        time.sleep(0.05)
    return {"first_s": first, "end_s": None, "sources_s": sources_at, "streamed": first is not None,
            "frames": len(seen), "timed_out": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdf", type=Path, action="append", help="a PDF to drop (repeat); default: three from ../shared")
    ap.add_argument("--question", action="append", help="a question (repeat); default: the seven of DEFAULT_QA")
    ap.add_argument("--out", type=Path, default=Path("/tmp/ragchat-walkthrough"))
    ap.add_argument("--ingest-timeout", type=float, default=900)
    ap.add_argument("--answer-timeout", type=float, default=300)
    args = ap.parse_args()
    pdfs = [p.resolve() for p in (args.pdf or DEFAULT_PDFS)]
    qa = DEFAULT_QA if not args.question else [
        next((q for q in DEFAULT_QA if q[0] == question), (question, "?", "", None)) for question in args.question]
    for p in pdfs:
        if not p.exists():
            sys.exit(f"no such file: {p}")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()
    fonts = cjk_font()
    print("CJK font:", fonts.splitlines()[0] if fonts else "NONE (Chinese will show as boxes: apt-get install fonts-wqy-microhei)")

    import httpx
    from playwright.sync_api import sync_playwright

    from ragchat.answer.refusal import is_refusal

    report: dict = {"pdfs": [str(p) for p in pdfs], "questions": [], "console": [], "shots": []}
    log_path = args.out / "server.log"

    def shot(page, name: str, full_page: bool = False) -> Path:
        path = args.out / name
        page.screenshot(path=str(path), full_page=full_page)
        report["shots"].append(str(path))
        return path

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s, open(log_path, "w") as log:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGCHAT_")}
        env.update({"RAGCHAT_LLM__PROVIDER": "llamacpp", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
        t_start = time.monotonic()
        server = subprocess.Popen([sys.executable, "-m", "ragchat.cli", "serve", "--store", f"{tmp}/store",
                                   "--port", str(port)], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(480):
                try:
                    if httpx.get(url + "ragchat/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    sys.exit(f"ragchat serve exited with {server.returncode}; see {log_path}")
                time.sleep(0.5)
            print(f"server up in {time.monotonic() - t_start:.1f} s at {url}")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.set_default_timeout(120_000)
                page.on("console", lambda m: m.type in ("error", "warning") and report["console"].append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: report["console"].append(f"pageerror: {e}"))
                page.goto(url)
                page.wait_for_selector("#rc-chat")
                page.wait_for_selector("#rc-badge .rc-badge:not(.rc-badge-off)", timeout=300_000)
                print("badge:", one_line(page.inner_text("#rc-badge")))
                shot(page, "00-start.png")

                # ---- drop the PDFs ----
                t0 = time.monotonic()
                page.set_input_files("#rc-upload input[type=file]", [str(p) for p in pdfs])
                deadline = t0 + args.ingest_timeout
                while time.monotonic() < deadline:
                    rows = page.eval_on_selector_all("#rc-progress .rc-file-row", "rs => rs.map(r => [r.dataset.stage, r.innerText])")
                    if len(rows) >= len(pdfs) and all(st in ("done", "unchanged", "failed") for st, _ in rows):
                        break
                    time.sleep(0.5)
                ingest_s = time.monotonic() - t0
                rows = page.eval_on_selector_all("#rc-progress .rc-file-row", "rs => rs.map(r => r.innerText)")
                print(f"\ningestion: {ingest_s:.1f} s")
                for r in rows:
                    print("  ", one_line(r))
                report["ingest_s"] = ingest_s
                report["progress"] = [one_line(r) for r in rows]
                shot(page, "01-ingested.png")
                try:
                    page.wait_for_function(
                        f"document.querySelector('#rc-chat').innerText.includes('Ask about your {len(pdfs)} document')",
                        timeout=30_000)
                except Exception:
                    print("  (the welcome text does not say", f"'Ask about your {len(pdfs)} documents')")
                # the library (Documents tab) says they are done
                page.click("button[role=tab]:has-text('Documents')")
                page.wait_for_selector("#rc-library")
                page.wait_for_timeout(1500)
                lib = page.inner_text("#rc-library")
                report["library"] = lib
                print("library:\n  " + "\n  ".join(line for line in lib.splitlines() if line.strip()))
                shot(page, "02-library.png")
                page.click("button[role=tab]:has-text('Chat')")
                page.wait_for_selector("#rc-message textarea")

                # ---- one conversation ----
                for i, (question, expected, pattern, src_file) in enumerate(qa, 1):
                    before = len(bot_texts(page))
                    page.fill("#rc-message textarea", question)
                    t0 = time.monotonic()
                    page.keyboard.press("Enter")
                    timing = wait_for_answer(page, before, t0, args.answer_timeout)
                    texts = bot_texts(page)
                    answer = texts[-1] if len(texts) > before else ""
                    cards = page.eval_on_selector_all("#rc-sources-panel .rc-card", CARDS)
                    title = page.eval_on_selector("#rc-sources-panel",
                                                  "e => (e.querySelector('.rc-sources-title') || {}).innerText || ''")
                    cited = [c for c in cards if c["cited"]]
                    if pattern is None:
                        ok = is_refusal(answer) and not re.search(r"\d[\d,.]*\s*(crore|cr\b|₹)", answer, re.I)
                    else:
                        ok = bool(pattern) and re.search(pattern, answer) is not None
                    own = own_words(page) if answer else ""
                    own_ok = pattern is None and ok or bool(pattern) and re.search(pattern, own) is not None
                    cited_files = sorted({c["file"] for c in cited})
                    rec = {"n": i, "question": question, "expected": expected, "answer": answer, "ok": ok, "own_words": own, "own_ok": own_ok,
                           "sources_title": title, "cited": cited, "others": [c for c in cards if not c["cited"]],
                           "expected_file": src_file, **timing}
                    rec["shot"] = str(shot(page, f"q{i}-answer.png"))

                    # open the first cited source in the viewer
                    if cited:
                        page.click("#rc-sources-panel .rc-card.rc-cited >> nth=0")
                        try:
                            # wait for THIS card's passage (the viewer keeps the previous one until the click's reply)
                            page.wait_for_function(
                                """([n, file]) => {
                                    const h = document.querySelector('#rc-viewer-panel .rc-viewer-head');
                                    return h && h.querySelector('.rc-num').textContent == n && h.querySelector('.rc-file').textContent == file
                                        && document.querySelector('#rc-viewer-panel mark.rc-hl');
                                }""", arg=[cited[0]["n"], cited[0]["file"]], timeout=60_000)
                            head = one_line(page.inner_text("#rc-viewer-panel .rc-viewer-head"))
                            marked = page.inner_text("#rc-viewer-panel mark.rc-hl")
                            img = page.query_selector("#rc-viewer-panel .rc-page-image img")
                            amber = None
                            if img:
                                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img, timeout=120_000)
                                amber = img.evaluate(AMBER_PIXELS)
                            page.wait_for_timeout(800)  # the viewer scrolls to the passage
                            box = page.eval_on_selector("#rc-viewer-panel", "e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom]; }")
                            rec["viewer"] = {"head": head, "marked": marked, "page_image": bool(img), "amber_pixels": amber,
                                             "mark_matches_card": one_line(marked)[:40] == one_line(cited[0]["passage"])[:40],
                                             "figure_in_marked": bool(pattern) and re.search(pattern, marked) is not None,
                                             "viewer_top_bottom_px": box}
                        except Exception as exc:  # report, go on
                            rec["viewer"] = {"error": f"{type(exc).__name__}: {one_line(str(exc), 300)}"}
                        rec["viewer_shot"] = str(shot(page, f"q{i}-source.png"))
                        try:
                            path = args.out / f"q{i}-viewer-panel.png"
                            page.locator("#rc-viewer-panel").screenshot(path=str(path))
                            report["shots"].append(str(path))
                            page.evaluate("window.scrollTo(0, 0)")
                        except Exception as exc:
                            print("viewer panel screenshot failed:", exc)
                    report["questions"].append(rec)

                    print(f"\n=== Q{i}: {question}")
                    print(f"expected: {expected}" + (f"  (from {src_file})" if src_file else ""))
                    print("answer:", answer.strip())
                    print(f"sources panel: {title!r}")
                    for c in cited:
                        print(f"  [{c['n']}] {c['file']} {c['page']}: {one_line(c['passage'], 160)}")
                    if rec["others"]:
                        print("  also given to the model:")
                        for c in rec["others"]:
                            print(f"    [{c['n']}] {c['file']} {c['page']}: {one_line(c['passage'], 160)}")
                    first_s = f"{timing['first_s']:.1f}" if timing["first_s"] is not None else "–"
                    end_s = f"{timing['end_s']:.1f}" if timing["end_s"] is not None else "TIMED OUT"
                    print(f"time: first streamed text {first_s} s, end {end_s} s"
                          + ("" if timing["streamed"] else " (no streamed tokens seen)"))
                    right_file = src_file is None or src_file in cited_files
                    verdict = "YES" if own_ok else "only in the quoted passage, not in the model's words" if ok else "NO"
                    print(f"looks right: {verdict}; cited {cited_files or 'nothing'}"
                          + ("" if right_file else f" (expected {src_file})"))
                    if "viewer" in rec:
                        v = rec["viewer"]
                        if "error" in v:
                            print("viewer: ERROR", v["error"])
                        else:
                            print(f"viewer: {v['head']}; highlight matches card: {v['mark_matches_card']}; "
                                  f"expected figure in highlighted passage: {v['figure_in_marked']}; "
                                  f"page picture: {v['page_image']} (amber pixels {v['amber_pixels']}); "
                                  f"viewer panel spans y={v['viewer_top_bottom_px'][0]:.0f}..{v['viewer_top_bottom_px'][1]:.0f} px "
                                  f"of a {page.viewport_size['height']} px window")
                            print("  highlighted:", one_line(v["marked"], 300))

                # the whole conversation in a tall window
                page.set_viewport_size({"width": 1440, "height": 2400})
                page.wait_for_timeout(1000)
                shot(page, "99-conversation-tall.png")
                page.reload()
                page.wait_for_selector("#rc-chat .message-row.user-row")
                page.wait_for_timeout(1500)
                report["after_reload_bot_rows"] = len(bot_texts(page))
                shot(page, "99-after-reload.png")
                browser.close()
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()

    log_text = log_path.read_text(errors="replace")
    report["server_log_problems"] = [line for line in log_text.splitlines()
                                     if re.search(r"Traceback|ERROR|Exception|error", line)]
    (args.out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1))
    n_ok = sum(q["ok"] for q in report["questions"])
    print(f"\n{n_ok}/{len(report['questions'])} answers look right; ingestion {report.get('ingest_s', 0):.0f} s")
    print("browser console errors/warnings:", len(report["console"]))
    for line in report["console"][:20]:
        print("  ", one_line(line, 300))
    print("server log lines mentioning errors:", len(report["server_log_problems"]))
    for line in report["server_log_problems"][:20]:
        print("  ", one_line(line, 300))
    print("screenshots:")
    for s in report["shots"]:
        print("  ", s)
    print("report:", args.out / "report.json", " server log:", log_path)


if __name__ == "__main__":
    main()
