"""Feedback to evaluation in a real browser: headless Chromium against `ragchat serve` (the test model).

A person adds a small document, asks about it, clicks the thumbs-down under the answer, writes the
right answer and saves it. In the Evaluation tab they run an evaluation on their feedback (the
rated answers exported as a QA set, ``FeedbackBook.export``) with one set-up; the progress line
says done, and the results table and the chart (accuracy against first-token time) appear. The page
is saved as a picture (the README's, with the default model, comes from `bench/screenshot.py --view
evaluation`).
"""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import sync_playwright
from test_browser import CHROMIUM_ARGS, ensure_chromium

pytestmark = [pytest.mark.slow]  # headless Chromium against a served app

TEXT = "The Veltmar harbor was dredged in 2011 to a depth of 14 metres. Its lighthouse, the Grey Finch, is white."
QUESTION = "How deep was the Veltmar harbor dredged?"
CORRECTION = "The Veltmar harbor was dredged to a depth of 14 metres."
DISLIKE = "#rc-chat button[aria-label='Dislike']"


def answers_saved(server) -> int:
    with sqlite3.connect(f"file:{server.store / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM messages WHERE role = 'assistant'").fetchone()[0]


def test_thumbs_down_then_an_evaluation_on_my_feedback_shows_table_and_chart(launch_app, tmp_path):
    server = launch_app(max_answer_tokens=48)
    doc = tmp_path / "harbor.txt"
    doc.write_text(TEXT, encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(server.url)
        page.set_input_files("#rc-upload input[type=file]", str(doc))
        page.wait_for_selector('#rc-progress .rc-file-row.rc-done:has-text("harbor.txt")', timeout=300_000)

        # ask, then thumbs down on the answer once it is written, with the right answer
        page.fill("#rc-message textarea", QUESTION)
        page.keyboard.press("Enter")
        page.wait_for_selector("#rc-sources-panel .rc-card", timeout=120_000)
        for _ in range(480):  # until the answer is written and saved (a status line or "▍" means it is not)
            if answers_saved(server) == 1:
                break
            page.wait_for_timeout(250)
        page.wait_for_timeout(1000)  # the final update reaches the page
        page.hover("#rc-chat .bot-row >> nth=-1")
        labels = page.eval_on_selector_all("#rc-chat button", "bs => bs.map(b => b.getAttribute('aria-label'))")
        assert "Dislike" in labels, labels
        page.locator(DISLIKE).last.click()
        toasts = []
        for _ in range(40):
            toasts.append(page.eval_on_selector_all(".toast-body, [data-testid='toast-body']", "ts => ts.map(t => t.innerText)"))
            if page.is_visible("#rc-feedback-correction textarea"):
                break
            page.wait_for_timeout(250)
        assert page.is_visible("#rc-feedback-correction textarea"), (labels, [t for t in toasts if t][:3])
        page.fill("#rc-feedback-note textarea", "it should give the depth")
        page.fill("#rc-feedback-correction textarea", CORRECTION)
        page.click("#rc-feedback-save")
        page.wait_for_selector("#rc-feedback", state="hidden")

        # an evaluation on my feedback, with one set-up (the configured model)
        page.click("button[role=tab]:has-text('Evaluation')")
        page.wait_for_selector("#rc-eval-run")
        page.click("#rc-eval-source label:has-text('My feedback')")
        page.click("#rc-eval-run")
        page.wait_for_selector("#rc-eval-progress .rc-eval-progress", timeout=30_000)
        page.wait_for_selector("#rc-eval-progress [data-status=done]", timeout=300_000)
        assert "1 of 1 answers" in page.inner_text("#rc-eval-progress")
        page.wait_for_function("document.querySelector('#rc-eval-runs input').value.endsWith('done')",
                               timeout=30_000)  # the run picker's label follows the run's end
        page.wait_for_function("document.querySelector('#rc-eval-table').innerText.includes('auto (SmolLM2')")
        table = page.inner_text("#rc-eval-table")
        assert "no earlier run" in table and "%" in table
        page.wait_for_selector("#rc-eval-chart canvas, #rc-eval-chart svg.marks", timeout=30_000)
        assert "auto (SmolLM2-135M): " in page.inner_text("#rc-eval-wrong")
        page.wait_for_timeout(500)
        shot = tmp_path / "evaluation.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        browser.close()

    with sqlite3.connect(f"file:{server.store / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        feedback = db.execute("SELECT rating, correction, note FROM feedback").fetchall()
        runs = db.execute("SELECT owner, set_name, status, done, total FROM eval_runs").fetchall()
    assert feedback == [(-1, CORRECTION, "it should give the depth")]
    assert runs == [(None, "My feedback", "done", 1, 1)]
