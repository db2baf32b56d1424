"""The README's screenshots, taken from the real app with the default settings and the default model.

    .venv/bin/python bench/screenshot.py [--view chat|side-by-side|evaluation] [--question QUESTION] [--file FILE] [--out PNG]

A fresh store in a temporary folder, `ragchat serve` on a free port with the built-in default model,
headless Chromium (Debian's) driven by Playwright; the TableFormer paper is dropped on the page.
- ``chat`` (docs/screenshot.png): the question is asked, the first cited source is opened in the
  viewer, and the page is saved.
- ``side-by-side`` (docs/side-by-side.png): in the "Side by side" tab, set-up A is the default model
  with hybrid search and B the smallest bundled one (SmolLM2-135M) with lexical search; the server
  lets two generations run at once (llm.max_concurrent = 2), both answers stream, B is voted the
  better one, and the page is saved with the win-rate table.
- ``evaluation`` (docs/evaluation.png): the question is asked and given a thumbs-up, a second one a
  thumbs-down with its right answer; in the "Evaluation" tab the person's feedback is run against
  the default model and SmolLM2-135M (hybrid search), and the page is saved with the results table,
  the chart and the questions answered wrong.
The answers and their sources are printed, so a person can check what the picture shows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from common import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
OUT = {"chat": ROOT / "docs" / "screenshot.png", "side-by-side": ROOT / "docs" / "side-by-side.png",
       "evaluation": ROOT / "docs" / "evaluation.png"}
HEIGHT = {"chat": 900, "side-by-side": 1400}  # the window: side by side shows the win-rate table too
# --view evaluation: the second rated question, and the right answer its thumbs-down carries
RATED = ("What does TableFormer predict for a table image?",
         "TableFormer predicts the structure of the table and the bounding box of each table cell.")


@contextmanager
def served(env_extra: dict):
    """`ragchat serve` over a fresh store with the built-in provider; yields its URL once healthy."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGCHAT_")}
        env.update({"RAGCHAT_LLM__PROVIDER": "llamacpp", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                    **env_extra})
        server = subprocess.Popen([sys.executable, "-m", "ragchat.cli", "serve", "--store", f"{tmp}/store",
                                   "--port", str(port)], cwd=tmp, env=env)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(240):
                try:
                    if httpx.get(url + "ragchat/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            server.wait(30)


def chat(page, question: str) -> None:
    page.fill("#rc-message textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_selector("#rc-sources-panel .rc-card.rc-cited")
    answer = page.eval_on_selector_all("#rc-chat .message-row.bot-row", "rows => rows.map(r => r.innerText)")[-1]
    card = page.query_selector("#rc-sources-panel .rc-card.rc-cited")
    print("answer:", answer, "\ncited:", " ".join(card.inner_text().split())[:300])
    card.click()
    page.wait_for_selector("#rc-viewer-panel mark.rc-hl")
    page.wait_for_timeout(800)


def side_by_side(page, question: str) -> None:
    page.click("button[role=tab]:has-text('Side by side')")
    page.click("#rc-cmp-model-b input")
    page.click("ul[role=listbox] li:has-text('SmolLM2')")
    page.click("#rc-cmp-mode-b label:has-text('lexical')")
    page.fill("#rc-cmp-question textarea", question)
    page.click("#rc-cmp-go")
    page.wait_for_function("!document.querySelector('#rc-cmp-vote-2').disabled")
    for n in (1, 2):
        print(f"{page.inner_text(f'#rc-cmp-title-{n}')}:", page.inner_text(f"#rc-cmp-answer-{n}"),
              "\n", " ".join(page.inner_text(f"#rc-cmp-details-{n}").split())[:300])
    page.click("#rc-cmp-vote-2")
    page.wait_for_function("document.querySelector('#rc-cmp-wins').innerText.includes('100%')")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(4000)  # the "vote saved" note goes


def evaluation(page, question: str) -> None:
    for q, correction in ((question, ""), RATED):
        page.fill("#rc-message textarea", q)
        page.keyboard.press("Enter")
        page.wait_for_selector("#rc-sources-panel .rc-card")
        page.wait_for_function("""() => { const rows = document.querySelectorAll('#rc-chat .bot-row');
            const last = rows[rows.length - 1], text = last ? last.innerText.trim() : '';
            return text && !text.endsWith('▍') && !text.endsWith('…'); }""")  # written, not a status line
        page.wait_for_timeout(1500)  # saved: the answer event's last step
        page.hover("#rc-chat .bot-row >> nth=-1")
        page.locator(f"#rc-chat button[aria-label='{'Dislike' if correction else 'Like'}']").last.click()
        page.wait_for_selector("#rc-feedback-correction textarea" if correction else "#rc-feedback-note textarea")
        if correction:
            page.fill("#rc-feedback-correction textarea", correction)
        page.click("#rc-feedback-save")
        page.wait_for_selector("#rc-feedback", state="hidden")
    page.click("button[role=tab]:has-text('Evaluation')")
    page.click("#rc-eval-models input")
    page.click("ul[role=listbox] li:has-text('SmolLM2')")
    page.keyboard.press("Escape")
    page.click("#rc-eval-run")
    page.wait_for_selector("#rc-eval-progress [data-status=done]")
    page.wait_for_selector("#rc-eval-chart canvas, #rc-eval-chart svg.marks")
    print(page.inner_text("#rc-eval-table"), "\n", page.inner_text("#rc-eval-wrong")[:1500])
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(4000)  # the "vote saved" note goes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--view", choices=sorted(OUT), default="chat")
    ap.add_argument("--question", default="How does TableFormer incorporate the structural biases of tables?")
    ap.add_argument("--file", type=Path, default=ROOT / "tests" / "fixtures" / "pdfs" / "mineru__demo3.pdf")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = args.out or OUT[args.view]
    from playwright.sync_api import sync_playwright

    env = {"RAGCHAT_LLM__MAX_CONCURRENT": "2"} if args.view == "side-by-side" else {}
    with served(env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": HEIGHT.get(args.view, 1200)})
        page.set_default_timeout(300_000)
        page.goto(url)
        page.set_input_files("#rc-upload input[type=file]", str(args.file))
        page.wait_for_selector(f'#rc-progress .rc-file-row.rc-done:has-text("{args.file.name}")')
        {"chat": chat, "side-by-side": side_by_side, "evaluation": evaluation}[args.view](page, args.question)
        page.screenshot(path=str(out))
        browser.close()
    print(f"saved {out}")


if __name__ == "__main__":
    main()
