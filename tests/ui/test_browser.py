"""End to end in a real browser: headless Chromium (Debian's package) driven by Playwright.

A person drops mineru__demo3.pdf, waits until it says done, asks how TableFormer models tables, watches
the answer stream in with a citation, opens the citation and sees the passage highlighted in its
page. The page after that is saved as a picture (the README's own, with the default model, comes
from bench/screenshot.py). Then the page is
reloaded and the conversation is still there. Then a file dropped anywhere on the page is added.
Last, on an app of its own, the scanned PDF (no text layer) is read with OCR, a question about it is
answered with a citation, and the citation shows the page as a picture with the passage highlighted
on it; that page is saved as a picture too.

Chromium comes from Debian (`apt-get install chromium chromium-driver`, the Makefile's `browser`
target); a test tool's own browser download does not work offline. The fixture installs it when
it is missing and the machine allows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from conftest import PDFS

pytestmark = [pytest.mark.slow]  # headless Chromium against a served app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
QUESTION = "How does TableFormer incorporate the structural biases of tables?"  # the small test model cites its answer
# What the OCR of mineru__scanned.pdf's first page says ("交换价值首先表现为量的关系"); the small model cites it.
SCANNED_QUESTION = "交换价值首先表现为什么？"
# The highlight ragchat.ui.pageview paints, over white paper: amber at 96/255 gives about (255, 234, 159).
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


def ensure_chromium() -> Path:
    if not CHROMIUM.exists():
        sudo = [] if shutil.which("sudo") is None or __import__("os").geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True)
    assert CHROMIUM.exists(), "Chromium is needed for the browser test: apt-get install chromium chromium-driver"
    return CHROMIUM


@pytest.fixture(scope="module")
def page(launch_app, tmp_path_factory):
    server = launch_app()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1440, "height": 900}, device_scale_factor=1,
        )
        pg = context.pages[0] if context.pages else context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(server.url)
        pg.wait_for_selector("#rc-chat")
        yield pg
        context.close()


def bot_texts(page) -> list[str]:
    return page.eval_on_selector_all("#rc-chat .message-row.bot-row", "rows => rows.map(r => r.innerText)")


def test_drop_ask_open_citation_and_screenshot(page, tmp_path):
    # first run: the empty store explains what to do
    assert "Welcome to ragchat" in page.inner_text("#rc-chat")
    page.wait_for_selector("#rc-badge .rc-badge:not(.rc-badge-off)")
    assert "SmolLM2" in page.inner_text("#rc-badge")

    # drop a file; it shows its progress and then "done"
    page.set_input_files("#rc-upload input[type=file]", str(PDFS / "mineru__demo3.pdf"))
    page.wait_for_selector('#rc-progress .rc-file-row:has-text("mineru__demo3.pdf")', timeout=30_000)
    page.wait_for_selector('#rc-progress .rc-file-row.rc-done:has-text("mineru__demo3.pdf")', timeout=300_000)
    assert re.search(r"done: \d+ chunks", page.inner_text("#rc-progress"))
    page.wait_for_function("document.querySelector('#rc-chat').innerText.includes('Ask about your 1 document')")

    # ask; the answer streams in (a cursor while tokens arrive), then cites its sources
    page.fill("#rc-message textarea", QUESTION)
    page.keyboard.press("Enter")
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        texts = bot_texts(page)
        if texts and texts[-1] not in seen:
            seen.append(texts[-1])
        if page.query_selector("#rc-sources-panel .rc-card.rc-cited"):
            break
        time.sleep(0.05)
    streaming = [t for t in seen if t.rstrip().endswith("▍")]
    assert len(streaming) >= 2, f"the answer did not stream: {seen}"
    answer = bot_texts(page)[-1]
    assert re.search(r"\[\d+\]", answer), f"no citation in {answer!r}"
    assert "▍" not in answer

    # nothing in the answer can load or follow an external URL
    live = page.eval_on_selector_all("#rc-chat img[src^='http'], #rc-chat a[href^='http']", "els => els.length")
    assert live == 0

    # open the citation: the passage is highlighted in the text of its page
    card = page.query_selector("#rc-sources-panel .rc-card.rc-cited")
    assert "mineru__demo3.pdf" in card.inner_text()
    passage = card.query_selector(".rc-passage").inner_text()
    card.click()
    mark = page.wait_for_selector("#rc-viewer-panel mark.rc-hl")
    assert " ".join(mark.inner_text().split())[:40] == " ".join(passage.split())[:40]
    assert "Open the PDF at page" in page.inner_text("#rc-viewer-panel")
    page.wait_for_timeout(500)  # let the viewer scroll to the passage
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000

    # the conversation is saved: after a reload the browser reopens it
    page.reload()
    page.wait_for_selector("#rc-chat .message-row.user-row")
    assert QUESTION in page.inner_text("#rc-chat")
    assert QUESTION[:16] in page.inner_text("#rc-conversations")  # the title, cut to fit the sidebar


def test_files_dropped_anywhere_on_the_page_are_added(page):
    page.wait_for_selector("#rc-chat")
    files = page.evaluate_handle("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['Zebras in the garden eat kiwis on Tuesdays.'], 'garden notes.txt', {type: 'text/plain'}));
        return dt;
    }""")
    page.dispatch_event("#rc-chat", "dragenter", {"dataTransfer": files})
    assert page.evaluate("document.body.classList.contains('rc-dragging')"), "the page shows where to drop"
    page.dispatch_event("#rc-chat", "drop", {"dataTransfer": files})
    assert not page.evaluate("document.body.classList.contains('rc-dragging')")
    page.wait_for_selector('#rc-progress .rc-file-row.rc-done:has-text("garden notes.txt")', timeout=120_000)
    page.click("button[role=tab]:has-text('Documents')")
    page.wait_for_selector('#rc-library :text("garden notes.txt")')


def wait_for_cited_answer(page, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.query_selector("#rc-sources-panel .rc-card.rc-cited"):
            return bot_texts(page)[-1]
        time.sleep(0.1)
    raise AssertionError(f"no cited source after {timeout_s} s: {bot_texts(page)}")


def test_a_scanned_pdf_is_read_with_ocr_and_its_citation_is_highlighted_on_the_page(page, launch_app, tmp_path):
    server = launch_app()  # a store of its own: only the scanned PDF can be cited
    page.goto(server.url)
    page.wait_for_selector("#rc-badge .rc-badge:not(.rc-badge-off)")
    page.set_input_files("#rc-upload input[type=file]", str(PDFS / "mineru__scanned.pdf"))
    page.wait_for_selector('#rc-progress .rc-file-row.rc-done:has-text("mineru__scanned.pdf")', timeout=300_000)
    page.wait_for_function("document.querySelector('#rc-chat').innerText.includes('Ask about your 1 document')")

    page.fill("#rc-message textarea", SCANNED_QUESTION)
    page.keyboard.press("Enter")
    answer = wait_for_cited_answer(page)
    page.wait_for_function("!document.querySelector('#rc-chat').innerText.includes('▍')")
    answer = bot_texts(page)[-1]
    assert re.search(r"\[\d+\]", answer), f"no citation in {answer!r}"

    card = page.query_selector("#rc-sources-panel .rc-card.rc-cited")
    assert "mineru__scanned.pdf" in card.inner_text() and "交换价值" in card.inner_text()
    card.click()
    img = page.wait_for_selector("#rc-viewer-panel .rc-page-image img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img, timeout=120_000)
    assert abs(img.evaluate("img => img.naturalWidth") - 800) <= 1  # PDFium rounds the scaled page up
    assert re.search(r"ragchat/page/[0-9a-f]{32}/1\.png\?w=800&chunk=", img.get_attribute("src"))
    assert img.evaluate(AMBER_PIXELS) > 5_000, "the picture of the page shows no highlight"
    # the text highlight is still there, under the picture, and so is the link to the original
    assert "交换价值首先表现为量的关系" in page.inner_text("#rc-viewer-panel mark.rc-hl")
    assert "Open the PDF at page 1" in page.inner_text("#rc-viewer-panel")
    # a picture taller than its box scrolls so that the highlight (half way down this page) is in view
    page.wait_for_function("""() => {
        const box = document.querySelector('#rc-viewer-panel .rc-page-image');
        return box.scrollHeight <= box.clientHeight || box.scrollTop > 0;
    }""", timeout=10_000)

    # a window tall enough for the answer, its sources and the whole page picture at once
    page.set_viewport_size({"width": 1440, "height": 1500})
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    shot = tmp_path / "scanned-page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
