"""The README's screenshot, taken from the real app with the default settings and the default model.

    .venv/bin/python bench/screenshot.py [--question QUESTION] [--file FILE] [--out docs/screenshot.png]

A fresh store in a temporary folder, `ragchat serve` on a free port with the built-in default model,
headless Chromium (Debian's) driven by Playwright: the TableFormer paper is dropped on the page, the
question is asked, the first cited source is opened in the viewer, and the page is saved. The
answer and its sources are printed, so a person can check that the picture shows a right answer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--question", default="How does TableFormer incorporate the structural biases of tables?")
    ap.add_argument("--file", type=Path, default=ROOT / "tests" / "fixtures" / "pdfs" / "mineru__demo3.pdf")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = ap.parse_args()
    import httpx
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGCHAT_")}
        env.update({"RAGCHAT_LLM__PROVIDER": "llamacpp", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
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
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.set_default_timeout(300_000)
                page.goto(url)
                page.set_input_files("#rc-upload input[type=file]", str(args.file))
                page.wait_for_selector(f'#rc-progress .rc-file-row.rc-done:has-text("{args.file.name}")')
                page.fill("#rc-message textarea", args.question)
                page.keyboard.press("Enter")
                page.wait_for_selector("#rc-sources-panel .rc-card.rc-cited")
                answer = page.eval_on_selector_all("#rc-chat .message-row.bot-row", "rows => rows.map(r => r.innerText)")[-1]
                card = page.query_selector("#rc-sources-panel .rc-card.rc-cited")
                print("answer:", answer, "\ncited:", " ".join(card.inner_text().split())[:300])
                card.click()
                page.wait_for_selector("#rc-viewer-panel mark.rc-hl")
                page.wait_for_timeout(800)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
