"""What loads when: Chroma and the models load only when needed, the web app serves its page before
they are loaded and says so, and Chroma keeps no second copy of the chunk texts."""

import time

from conftest import make_settings
from ragchat.engine import Engine
from ragchat.ingest.pipeline import collect

TEXT = "The zebrafish heart regenerates after injury. Cardiomyocytes proliferate near the wound."


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_chroma_holds_no_chunk_texts_and_search_still_gives_them(engine, tmp_path):
    write(tmp_path / "docs" / "a.txt", TEXT)
    (r,) = engine.ingestor.ingest(collect([tmp_path / "docs"]), "default")
    assert r.outcome == "added"
    stored = engine.vectors._collection.get(include=["documents", "metadatas"])
    assert stored["ids"] and stored["documents"] == [None] * len(stored["ids"])
    assert stored["metadatas"][0]["doc_id"] == r.doc_id
    (hit,) = engine.retriever.search("zebrafish heart regeneration", k=1)
    assert "zebrafish heart" in hit.text  # texts come from the catalog


def test_unchanged_files_load_no_model_and_open_no_chroma(settings, tmp_path):
    write(tmp_path / "docs" / "a.txt", TEXT)
    with Engine(settings) as eng:
        assert eng.ingestor.ingest(collect([tmp_path / "docs"]), "default")[0].outcome == "added"
        assert "model" in eng.embedder.__dict__ and eng.vectors._store is not None
    with Engine(settings) as eng:  # a new process, in effect: nothing loaded yet
        assert eng.ingestor.ingest(collect([tmp_path / "docs"]), "default")[0].outcome == "unchanged"
        assert "model" not in eng.embedder.__dict__, "an unchanged file needs no embedding model"
        assert eng.vectors._store is None, "nor Chroma"


def test_page_is_served_while_models_load_then_status_says_ready(tmp_path):
    from fastapi.testclient import TestClient

    from ragchat.ui.server import Warmup, build_app

    with Engine(make_settings(tmp_path / "store")) as engine:
        warmup = Warmup(engine)
        app, _ = build_app(engine, workdir=tmp_path, warmup=warmup)
        try:
            client = TestClient(app, base_url="http://127.0.0.1:7860")
            assert client.get("/").status_code == 200
            assert client.get("/ragchat/status").json() == {"models": "loading"}
            assert "Loading models" in client.get("/config").text  # the header says so
            assert "model" not in engine.embedder.__dict__

            warmup.start()
            deadline = time.monotonic() + 300
            while client.get("/ragchat/status").json()["models"] == "loading" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get("/ragchat/status").json() == {"models": "ready"}
            assert "model" in engine.embedder.__dict__ and engine.vectors._store is not None
        finally:
            app.state.webapp.jobs.close()
