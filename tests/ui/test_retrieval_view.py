"""The retrieval test view (ragchat.ui.retrieval_view) and the fusion weight it sets (Retriever.search).

The callbacks run over a real engine (Chroma on disk, the bundled test embedder), without a server:
the rows come in the order ``Retriever.search`` gives under the same weight, mode and top-k, the
lexical-only and dense-only orders differ for the query chosen, the query's terms are marked (stemmed
English, jieba's Chinese words) in escaped text, a user sees only passages they may read, and "Save
as my settings" fills the chat's settings. Then, in headless Chromium against `ragchat serve`, the
list reorders when the slider moves from fully lexical to fully dense.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from playwright.sync_api import sync_playwright

from conftest import make_settings
from ragchat.engine import Engine
from ragchat.ingest.pipeline import SourceFile, collect
from ragchat.ui.retrieval_view import MAX_SOURCES, highlight, term_spans
from ragchat.ui.webapp import WebApp
from test_browser import CHROMIUM_ARGS, ensure_chromium

# The glossary repeats the query's words without their meaning (BM25's best); the mechanic's note says
# the same thing in other words (the embedder's best); baking is about neither.
DOCS = {
    "glossary.txt": "Glossary of workshop words: car, engine, repair, garage. Each car word and engine word and "
                    "repair word is listed here only as a word, without any meaning.",
    "mechanic.txt": "Fixing a broken automobile motor: the mechanic replaced the pistons, cleaned the spark plugs "
                    "and the vehicle ran again.",
    "baking.txt": "Baking bread at home: mix flour, water, yeast and salt, let the dough rise, then bake it in a "
                  "hot oven.",
}
QUERY = "car engine repair"
SECRET = "Alice's private diary: the car engine repair cost four hundred euros."
ROW = re.compile(r'data-chunk="([^"]+)"')


def write_docs(folder) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return [folder / name for name in DOCS]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval-view")
    engine = Engine(make_settings(root / "store"))
    engine.ingestor.ingest(collect(write_docs(root / "docs")), "default")
    (root / "diary.txt").write_text(SECRET)
    engine.ingestor.ingest([SourceFile(root / "diary.txt", "diary.txt")], "default", owner="alice")
    yield WebApp(engine, None)
    engine.close()


def as_user(name: str | None):
    return SimpleNamespace(username=name, session_hash="test")


def shown(app: WebApp, weight, mode="hybrid", top_k=3, user=None, scope=("all",)) -> list[str]:
    """The chunk ids the view lists, in order."""
    return ROW.findall(app.retrieval_test(QUERY, list(scope), weight, top_k, mode, as_user(user)))


def ids(hits) -> list[str]:
    return [h.chunk_id for h in hits]


def search(engine, **kw) -> list[str]:
    """What the engine's search finds for QUERY in what someone without an account may read."""
    return ids(engine.retriever.search(QUERY, engine.filters_for(None), **kw))


def test_the_rows_follow_the_weight_in_the_order_search_gives(app):
    lexical, dense = search(app.engine, k=3, weight=0.0), search(app.engine, k=3, weight=1.0)
    assert lexical != dense, "the documents no longer tell the two rankings apart"
    assert shown(app, 0.0) == lexical
    assert shown(app, 1.0) == dense
    assert shown(app, None) == search(app.engine, k=3)  # not moved: the settings' weights, as chat and the API
    assert shown(app, 0.5, mode="dense") == search(app.engine, k=3, mode="dense")
    assert len(shown(app, None, top_k=1)) == 1


def test_scores_and_the_relevance_bar_are_shown(app):
    page = app.retrieval_test(QUERY, ["all"], None, 3, "hybrid", as_user(None))
    hits = app.engine.retriever.search(QUERY, app.engine.filters_for(None), k=3)
    assert page.count("✓ passes") == sum(h.relevant for h in hits) and page.count("✗ below") == sum(
        not h.relevant for h in hits)
    for h in hits:
        assert f"{h.score:.3f}" in page and (h.dense is None or f"{h.dense:.3f}" in page)
    assert "<mark>car</mark>" in page and "<mark>repair</mark>" in page
    assert "weights, as in chat" in page
    assert "dense 0.25, lexical 0.75" in app.retrieval_test(QUERY, ["all"], 0.25, 3, "hybrid", as_user(None))


def test_query_terms_are_marked_with_the_lexical_analyser_in_escaped_text():
    assert highlight("Regeneration <b>of</b> the heart", "does the heart regenerate?") == (
        "<mark>Regeneration</mark> &lt;b&gt;of&lt;/b&gt; the <mark>heart</mark>")
    text = "刀片电池的安全性很高，磷酸铁锂电池不易起火。"
    marked = [text[a:b] for a, b in term_spans(text, {"电池", "安全", "安全性"})]
    assert marked == ["电池", "安全性", "电池"]
    assert "<mark>电池</mark>" in highlight(text, "电池安全吗")


def test_a_user_sees_only_what_they_may_read(app):
    diary = [d.id for d in app.engine.catalog.documents() if d.owner == "alice"]
    alice, bob = shown(app, None, top_k=10, user="alice"), shown(app, None, top_k=10, user="bob")
    secret = {h.chunk_id for h in app.engine.retriever.search(QUERY, k=10) if h.doc_id in diary}
    assert secret and secret <= set(alice) and not secret & set(bob)
    assert shown(app, None, user="bob", scope=[f"doc:{diary[0]}"]) == []  # asking for it by id finds nothing
    choices = [v for _, v in app.retrieval_scope(["all"], as_user("bob"))["choices"]]
    assert f"doc:{diary[0]}" not in choices and len(choices) == 1 + len(DOCS)


def test_save_fills_the_chat_settings_of_this_session(app):
    sources, state = app.save_retrieval(0.8, 40, "lexical", {"cid": "c1"})
    assert sources == MAX_SOURCES and state["cid"] == "c1"
    assert state["retrieval"] == {"mode": "lexical", "weight": 0.8}


# ---- in a real browser ----------------------------------------------------------------------------


def listed(page) -> list[str]:
    return page.eval_on_selector_all("#rc-rt-results tr.rc-rt-row", "rows => rows.map(r => r.dataset.chunk)")


def move_weight(page, value: float) -> list[str]:
    """Type value into the slider's number box and leave it; returns the list once the view re-ran."""
    page.fill("#rc-rt-weight input[type=number]", str(value))
    page.press("#rc-rt-weight input[type=number]", "Tab")
    page.wait_for_function("t => document.querySelector('#rc-rt-results').innerText.includes(t)",
                           arg=f"dense {value:.2f}, lexical {1 - value:.2f}")
    return listed(page)


@pytest.mark.slow  # headless Chromium against a served app
def test_the_list_reorders_when_the_weight_moves_from_lexical_to_dense(launch_app, tmp_path):
    server = launch_app()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(server.url)
        page.set_input_files("#rc-upload input[type=file]", [str(f) for f in write_docs(tmp_path / "docs")])
        for name in DOCS:
            page.wait_for_selector(f'#rc-progress .rc-file-row.rc-done:has-text("{name}")', timeout=300_000)

        page.click("button[role=tab]:has-text('Retrieval test')")
        page.wait_for_function("document.querySelector('#rc-rt-scope').innerText.includes('Search in all documents')")
        page.fill("#rc-rt-topk input[type=number]", "3")
        page.press("#rc-rt-topk input[type=number]", "Tab")
        page.fill("#rc-rt-query textarea", QUERY)
        page.press("#rc-rt-query textarea", "Enter")
        page.wait_for_function("document.querySelectorAll('#rc-rt-results tr.rc-rt-row').length === 3")
        lexical = move_weight(page, 0.0)
        dense = move_weight(page, 1.0)
        assert "<mark>" in page.inner_html("#rc-rt-results")
        page.screenshot(path=str(tmp_path / "retrieval-view.png"), full_page=True)
        browser.close()
    server.stop()

    engine = Engine(make_settings(server.store))  # the served store, read after the server stopped
    try:
        expected_lexical, expected_dense = search(engine, k=3, weight=0.0), search(engine, k=3, weight=1.0)
    finally:
        engine.close()
    assert expected_lexical != expected_dense
    assert lexical == expected_lexical and dense == expected_dense
