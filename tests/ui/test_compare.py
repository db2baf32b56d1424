"""The side-by-side view (ragchat.ui.compare, ragchat.answer.setups).

The callbacks run over a real engine (Chroma on disk, the bundled test embedder, the small built-in
model), without a server: both answers stream, the page says when the LLM gate writes them one
after the other, votes land in the catalog, blind mode hides the set-ups until the vote, and the
win-rate table shows a user their own votes and an admin the team's. Then, in headless Chromium
against `ragchat serve`, two columns stream at the same time and a vote is stored.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

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
    assert Setup(MODEL).key == MODEL
    assert Setup(MODEL, "lexical", 2).key == LEXICAL_KEY
    assert Setup().key == "auto"
    assert setup_of("auto", "hybrid", 0, "hybrid") == Setup()  # the settings' own mode and k: nothing to override
    assert setup_of(MODEL, "dense", 3.0, "hybrid") == Setup(MODEL, "dense", 3)
    with pytest.raises(ValueError):
        Setup(MODEL, "fuzzy")


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
