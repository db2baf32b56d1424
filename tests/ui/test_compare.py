"""The side-by-side view (ragchat.ui.compare, ragchat.answer.setups).

The callbacks run over a real engine (Chroma on disk, the bundled test embedder, the small built-in
model), without a server: both answers stream, the page says when the LLM gate writes them one
after the other, votes land in the catalog, blind mode hides the set-ups until the vote, and the
win-rate table shows a user their own votes and an admin the team's. Then, in headless Chromium
against `ragchat serve`, two columns stream at the same time and a vote is stored.
"""

from __future__ import annotations

import sqlite3
import time
from types import SimpleNamespace

import pytest
from playwright.sync_api import sync_playwright
from test_browser import CHROMIUM_ARGS, ensure_chromium

from conftest import PDFS, TEST_MODEL, make_settings
from ragchat.answer.setups import Setup
from ragchat.auth.users import add_user
from ragchat.engine import Engine
from ragchat.ingest.pipeline import collect
from ragchat.store.feedback import ALL
from ragchat.ui.compare import setup_of
from ragchat.ui.webapp import WebApp

MODEL = f"builtin:{TEST_MODEL}"
TEXT = ("The zebrafish heart regenerates after injury. Cardiomyocytes proliferate near the wound and rebuild "
        "the muscle within sixty days. Quantum annealing solves optimisation problems with superconducting qubits.")
QUESTION = "What regenerates after injury?"
LEXICAL_KEY = f"{MODEL}, lexical, 2 sources"
# outputs of WebApp.compare: notice, (title, answer, details) x 2, the three vote buttons, state
NOTICE, TITLE1, BODY1, DETAILS1, TITLE2, BODY2, DETAILS2, VOTE1, TIE, VOTE2, STATE = range(11)


def make_app(tmp_path, max_concurrent: int) -> WebApp:
    engine = Engine(make_settings(tmp_path / "store", llm={"max_concurrent": max_concurrent}))
    doc = tmp_path / "zebrafish.txt"
    doc.write_text(TEXT)
    engine.ingestor.ingest(collect([doc]), "default")
    return WebApp(engine, None)


@pytest.fixture
def app(tmp_path):
    web = make_app(tmp_path, max_concurrent=2)
    yield web
    web.engine.close()


def compare(app: WebApp, blind: bool = False, request=None) -> list[tuple]:
    return list(app.compare(QUESTION, MODEL, "hybrid", 0, MODEL, "lexical", 2, blind, ["all"], request))


def test_setup_keys_and_defaults():
    assert Setup(MODEL).key() == MODEL
    assert Setup(MODEL, "lexical", 2).key() == LEXICAL_KEY
    assert Setup().key() == "auto" and Setup().key("SmolLM2-135M") == "auto (SmolLM2-135M)"
    assert Setup(MODEL).key("SmolLM2-135M") == MODEL
    assert setup_of("auto", "hybrid", 0, "hybrid") == Setup()  # the settings' own mode and k: nothing to override
    assert setup_of(MODEL, "dense", 3.0, "hybrid") == Setup(MODEL, "dense", 3)
    with pytest.raises(ValueError):
        Setup(MODEL, "fuzzy")


@pytest.mark.slow  # the small model answers
def test_both_stream_at_once_then_a_vote_is_stored(app):
    frames = compare(app)
    first, last = frames[0], frames[-1]
    assert first[NOTICE]["visible"] is False  # two generations may run: no "one after the other" notice
    assert "Waiting" not in first[BODY2]  # the second column started with the first
    assert not first[VOTE1]["interactive"]  # no vote before both are done
    for title, body, details in ((TITLE1, BODY1, DETAILS1), (TITLE2, BODY2, DETAILS2)):
        assert last[body].strip() and "▍" not in last[body]
        assert "first token" in last[details] and "total" in last[details]
        assert "zebrafish.txt" in last[details]  # its sources
        assert "SmolLM2" in last[title]
    assert "lexical · 2 sources" in last[TITLE2] and "lexical" not in last[TITLE1]
    assert "supported" in last[DETAILS1] + last[DETAILS2]  # the grounding check's verdict
    assert last[VOTE1]["interactive"] and last[VOTE1]["value"] == "A is better"
    assert any(f[BODY1].endswith("▍") for f in frames) and any(f[BODY2].endswith("▍") for f in frames)

    titles_1, titles_2, *buttons, table, state = app.vote("2", last[STATE], None)
    assert state["voted"] and not buttons[0]["interactive"]
    (vote,) = app.engine.catalog.win_rates(ALL)[:1]
    assert vote["setup"] == LEXICAL_KEY and vote["wins"] == 1
    assert [r[0] for r in table["value"]] == [LEXICAL_KEY, MODEL]
    assert table["value"][0][-1] == "100%"
    again = app.vote("1", state, None)  # one vote per comparison
    assert all(isinstance(x, dict) and x.get("__type__") == "update" for x in again)
    assert sum(r["votes"] for r in app.engine.catalog.win_rates(ALL)) == 2


@pytest.mark.slow  # the small model answers
def test_blind_hides_the_setups_until_the_vote(app):
    last = compare(app, blind=True)[-1]
    assert "Answer 1" in last[TITLE1] and "Answer 2" in last[TITLE2]
    assert "SmolLM2" not in last[TITLE1] + last[TITLE2] and "lexical" not in last[TITLE1] + last[TITLE2]
    assert last[VOTE1]["value"] == "Answer 1 is better"
    state = last[STATE]
    title_1, title_2, *_ = app.vote("1", state, None)
    winner = "ab"[state["order"][0]]
    assert ("A" if winner == "a" else "B") in title_1 and "Answer 1" in title_1
    assert LEXICAL_KEY in title_1 + title_2
    (row,) = [r for r in app.engine.catalog.win_rates(ALL) if r["wins"]]
    assert row["setup"] == state["setups"]["ab".index(winner)]


@pytest.mark.slow  # the small model answers
def test_team_users_see_their_own_votes_and_admins_the_teams(app):
    catalog = app.engine.catalog
    add_user(catalog, "alice", "a long enough password", admin=True)
    add_user(catalog, "bob", "another long password")
    alice, bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
    catalog.add_vote(owner="alice", question="q", setup_a="x", setup_b="y", winner="a")
    catalog.add_vote(owner="bob", question="q", setup_a="x", setup_b="z", winner="tie")
    mine = app.win_rate_table(bob)
    assert mine["label"] == "Win rates: your votes"
    assert sorted(r[0] for r in mine["value"]) == ["x", "z"]
    team = app.win_rate_table(alice)
    assert "team" in team["label"] and sorted(r[0] for r in team["value"]) == ["x", "y", "z"]


@pytest.mark.slow  # the small model answers
def test_one_generation_at_a_time_is_said_and_both_are_answered(tmp_path):
    app = make_app(tmp_path, max_concurrent=1)
    try:
        frames = compare(app)
    finally:
        app.engine.close()
    assert frames[0][NOTICE]["visible"] and "one after the other" in frames[0][NOTICE]["value"]
    assert "Waiting" in frames[0][BODY2]  # the second waits for the first
    # the second starts only once the first is done: no frame shows the first unfinished and the second begun
    assert not any(f[BODY1].endswith("▍") and "Waiting" not in f[BODY2] for f in frames)
    assert frames[-1][BODY1].strip() and frames[-1][BODY2].strip()
    assert "total" in frames[-1][DETAILS1] and "total" in frames[-1][DETAILS2]


# ---- in a real browser ----------------------------------------------------------------------------

PDF_QUESTION = "How does TableFormer incorporate the structural biases of tables?"  # the small model answers it


def column_texts(page) -> list[str]:
    return [page.inner_text(f"#rc-cmp-answer-{n}") for n in (1, 2)]


@pytest.mark.slow  # headless Chromium against a served app
def test_two_columns_stream_side_by_side_and_a_vote_is_stored(launch_app, tmp_path):
    server = launch_app(env={"RAGCHAT_LLM__MAX_CONCURRENT": "2"}, max_answer_tokens=64)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(server.url)
        page.set_input_files("#rc-upload input[type=file]", str(PDFS / "mineru__demo3.pdf"))
        page.wait_for_selector('#rc-progress .rc-file-row.rc-done:has-text("mineru__demo3.pdf")', timeout=300_000)

        # set-up A: the configured model (the test model), hybrid search; B: the test model picked from the
        # list, lexical search, 2 sources
        page.click("button[role=tab]:has-text('Side by side')")
        pick_model(page, "b", "SmolLM2")
        page.click("#rc-cmp-mode-b label:has-text('lexical')")
        page.fill("#rc-cmp-topk-b input[type=number]", "2")
        page.press("#rc-cmp-topk-b input[type=number]", "Enter")
        page.fill("#rc-cmp-question textarea", PDF_QUESTION)
        page.click("#rc-cmp-go")

        samples = []  # both columns' text, as often as the page can be read, until both are done
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            samples.append(column_texts(page))
            if page.is_enabled("#rc-cmp-vote-2"):
                break
            time.sleep(0.03)
        final = column_texts(page)
        both = [s for s in samples if all(t.rstrip().endswith("▍") for t in s)]
        assert both, f"the two answers never streamed at the same time: {samples[-5:]}"
        assert all(t.strip() and "▍" not in t for t in final), final
        for n in (1, 2):
            details = page.inner_text(f"#rc-cmp-details-{n}")
            assert "first token" in details and "total" in details and "mineru__demo3.pdf" in details
        assert "lexical · 2 sources" in page.inner_text("#rc-cmp-title-2")

        page.click("#rc-cmp-vote-2")
        page.wait_for_function("document.querySelector('#rc-cmp-wins').innerText.includes('100%')")
        assert not page.is_enabled("#rc-cmp-vote-1")
        table = page.inner_text("#rc-cmp-wins")
        assert f"{MODEL}, lexical, 2 sources" in table and "auto (SmolLM2-135M)" in table
        shot = tmp_path / "side-by-side.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        browser.close()

    with sqlite3.connect(f"file:{server.store / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT owner, question, setup_a, setup_b, winner, blind FROM votes").fetchall()
    assert rows == [(None, PDF_QUESTION, "auto (SmolLM2-135M)", f"{MODEL}, lexical, 2 sources", "b", 0)]


def pick_model(page, side: str, text: str) -> None:
    """Choose the first model whose label holds ``text`` in set-up ``side``'s dropdown."""
    page.click(f"#rc-cmp-model-{side} input")
    page.click(f"ul[role=listbox] li:has-text('{text}')")
