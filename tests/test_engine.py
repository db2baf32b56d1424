"""The engine end to end with real parts: Chroma on disk, the bundled embedder, llama.cpp."""

import shutil
import subprocess
import sys

import pytest

from conftest import PDFS, make_settings
from ragchat.answer.engine import ChatOptions
from ragchat.answer.replies import NO_DOCUMENTS, NOT_FOUND
from ragchat.embed.embedder import bundled_model_path
from ragchat.engine import Engine
from ragchat.core.errors import EmbeddingModelMismatch, StoreError
from ragchat.ingest.pipeline import SourceFile, collect
from ragchat.retrieve.search import Filters

pytestmark = [pytest.mark.slow]  # real models over real stores, many ingests

ALPHA = "The zebrafish heart regenerates after injury. Cardiomyocytes proliferate near the wound."
BETA = "Quantum annealing solves optimisation problems. The annealer uses superconducting qubits."


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def ingest(eng, *paths, collection="default", password=None):
    return {r.source: r for r in eng.ingestor.ingest(collect(paths), collection, password=password)}


@pytest.fixture(params=["embedded", "shared"])
def engine(request, settings, tmp_path):
    """Every test below runs twice: on the embedded store, and in shared mode against the real
    PostgreSQL and Chroma servers of tests/services.py."""
    if request.param == "shared":
        settings = request.getfixturevalue("services").settings(tmp_path / "shared")
    eng = Engine(settings)
    yield eng
    eng.close()


def indexes_agree(eng):
    """Catalog, Chroma and BM25 hold exactly the same chunk ids (in shared mode, once this process's
    BM25 cache has applied the catalog's latest changes)."""
    if eng.shared:
        eng.followed_lexical.follow()
    cat = eng.catalog.all_chunk_ids()
    return cat == eng.vectors.chunk_ids() == eng.lexical.chunk_ids()


def sources_for(eng, query, **kw):
    return {h.source for h in eng.retriever.search(query, **kw)}


def test_dedupe_update_remove(engine, tmp_path):
    docs = tmp_path / "docs"
    write(docs / "a.txt", ALPHA)
    write(docs / "b.md", BETA)
    r = ingest(engine, docs)
    assert r["a.txt"].outcome == "added" and r["a.txt"].chunks >= 1
    assert r["b.md"].outcome == "added"
    n = engine.catalog.count_chunks()
    assert indexes_agree(engine)

    # same content again: nothing re-embedded
    r = ingest(engine, docs)
    assert {x.outcome for x in r.values()} == {"unchanged"}
    assert engine.catalog.count_chunks() == n

    # changed content under the same name: old chunks are gone from every index
    write(docs / "a.txt", "Photosynthesis in kelp forests depends on light. Kelp grows fast in cold water.")
    r = ingest(engine, docs)
    assert r["a.txt"].outcome == "updated" and r["b.md"].outcome == "unchanged"
    assert indexes_agree(engine)
    assert "a.txt" not in sources_for(engine, "zebrafish heart regeneration cardiomyocytes", mode="lexical")
    assert "a.txt" in sources_for(engine, "kelp photosynthesis", mode="lexical")

    # remove: every chunk leaves every index
    doc = engine.catalog.find("default", "a.txt")
    assert engine.ingestor.remove(doc.id)
    assert engine.catalog.find("default", "a.txt") is None
    assert indexes_agree(engine)
    assert "a.txt" not in sources_for(engine, "kelp photosynthesis", mode="hybrid")
    assert "a.txt" not in sources_for(engine, "kelp photosynthesis", mode="dense")


def test_gbk_chinese_text(engine, tmp_path):
    text = "开源大模型可以在本地部署。通义千问支持中文问答，并且可以免费商用。"
    path = write(tmp_path / "zh_gbk.txt", text, "gbk")
    r = ingest(engine, path)
    assert r["zh_gbk.txt"].outcome == "added"
    doc = engine.catalog.find("default", "zh_gbk.txt")
    assert engine.catalog.page_text(doc.id, None) == text  # decoded, no mojibake
    hits = engine.retriever.search("通义千问 免费商用")
    assert hits and hits[0].source == "zh_gbk.txt" and hits[0].relevant


def test_shared_pdfs_each_get_a_reason_and_others_ingest(engine):
    files = [SourceFile(PDFS / n, n) for n in (
        "docsgpt__corrupt.pdf", "unstructured__password.pdf", "mineru__scanned.pdf",
        "unstructured__layout-parser-paper-with-table.pdf", "unstructured__copy-protected.pdf",
    )]
    r = {x.source: x for x in engine.ingestor.ingest(files, "default")}
    assert r["docsgpt__corrupt.pdf"].outcome == "failed" and "corrupt" in r["docsgpt__corrupt.pdf"].error
    assert r["unstructured__password.pdf"].outcome == "failed" and "password" in r["unstructured__password.pdf"].error
    # no text layer: read with OCR (Tesseract, chi_sim), and searchable in Chinese
    assert r["mineru__scanned.pdf"].outcome == "added", r["mineru__scanned.pdf"].error
    scanned = engine.catalog.find("default", "mineru__scanned.pdf")
    assert "使用价值" in engine.catalog.page_text(scanned.id, 1)
    assert r["unstructured__layout-parser-paper-with-table.pdf"].outcome == "added"
    assert r["unstructured__copy-protected.pdf"].outcome == "added"
    failed = {d.source: d for d in engine.catalog.documents(status="failed")}
    assert "corrupt" in failed["docsgpt__corrupt.pdf"].error
    # with the password it ingests, and the failure entry becomes a document
    (r,) = engine.ingestor.ingest([files[1]], "default", password="password")
    assert r.outcome == "added", r.error
    assert engine.catalog.find("default", "unstructured__password.pdf").status == "done"
    assert indexes_agree(engine)


def test_citation_points_at_a_retrieved_chunk_with_its_page(engine):
    ingest(engine, PDFS / "mineru__demo3.pdf")
    events = list(engine.chat.stream("What does TableFormer predict?"))
    kinds = [e.kind for e in events]
    assert kinds.count("token") >= 2, "the answer must stream"
    answer = events[-1].answer
    assert answer.provider == "llamacpp" and not answer.error
    # cited, or (the small test model often writes what no source says) marked as not supported
    assert answer.sources or answer.unsupported, answer.text
    retrieved = {s.chunk_id: s for s in answer.retrieved}
    doc = engine.catalog.find("default", "mineru__demo3.pdf")
    for s in answer.sources:
        assert s.chunk_id in retrieved
        assert f"[{s.id}]" in answer.text
    for s in answer.retrieved:  # every source a citation may point at lies on its page, where it says
        assert s.source == "mineru__demo3.pdf" and isinstance(s.page, int)
        page_text = engine.catalog.page_text(doc.id, s.page)
        assert page_text[s.start : s.end] == s.text


def test_deterministic_at_temperature_zero(engine, tmp_path):
    ingest(engine, write(tmp_path / "a.txt", ALPHA))
    answers = [[e for e in engine.chat.stream("What regenerates after injury?")][-1].answer.text for _ in range(2)]
    assert answers[0] == answers[1] and answers[0]


def test_no_documents_and_nothing_relevant(engine, tmp_path):
    (done,) = [e for e in engine.chat.stream("What is the capital of France?") if e.kind == "done"]
    assert done.answer.text == NO_DOCUMENTS
    ingest(engine, write(tmp_path / "a.txt", ALPHA))
    (done,) = [e for e in engine.chat.stream("Which bakery sells croissants in Lyon?") if e.kind == "done"]
    assert done.answer.text == NOT_FOUND and not done.answer.sources


def test_follow_up_is_made_standalone_for_retrieval(engine, tmp_path):
    ingest(engine, write(tmp_path / "a.txt", ALPHA), write(tmp_path / "b.txt", BETA))
    history = [("user", "Tell me about quantum annealing"), ("assistant", "It solves optimisation problems [1].")]
    events = list(engine.chat.stream("What hardware does it use?", history))
    answer = events[-1].answer
    assert "quantum annealing" in answer.question.lower()
    assert answer.retrieved and answer.retrieved[0].source == "b.txt"


def test_filters_apply_to_both_indexes(engine, tmp_path):
    ingest(engine, write(tmp_path / "x" / "a.txt", ALPHA), collection="bio")
    ingest(engine, write(tmp_path / "y" / "a.txt", ALPHA + " Same words in another collection."), collection="other")
    for mode in ("dense", "lexical", "hybrid"):
        hits = engine.retriever.search("zebrafish heart", Filters(collections=["bio"]), mode=mode)
        assert hits and {h.collection for h in hits} == {"bio"}
        doc = engine.catalog.find("other", "a.txt")
        hits = engine.retriever.search("zebrafish heart", Filters(doc_ids=[doc.id]), mode=mode)
        assert hits and {h.doc_id for h in hits} == {doc.id}
    assert engine.retriever.search("zebrafish", Filters(collections=[])) == []


def test_mixed_languages_find_their_own_passages(engine, tmp_path):
    ingest(engine, write(tmp_path / "en.txt", "Battery cells need thermal management to avoid overheating. " * 3),
           write(tmp_path / "zh.txt", "电池单元需要热管理以避免过热。磷酸铁锂刀片电池的安全性很高。" * 3))
    assert engine.retriever.search("磷酸铁锂电池的安全性", k=1)[0].source == "zh.txt"
    assert engine.retriever.search("thermal management of battery cells", k=1)[0].source == "en.txt"


def test_crash_leftovers_are_purged_and_reingested(engine, tmp_path):
    path = write(tmp_path / "a.txt", ALPHA)
    ingest(engine, path)
    doc = engine.catalog.find("default", "a.txt")
    # Simulate a crash in the middle of re-indexing: status "indexing", catalog rows gone, index rows left.
    engine.catalog.begin_document(doc_id=doc.id, source=doc.source, collection=doc.collection, owner=None,
                                  sha256="x", size=1, kind="txt", pages=[(None, ALPHA)],
                                  embed_model=doc.embed_model, original=doc.original)
    assert engine.retriever.search("zebrafish heart") == []  # never searchable while unfinished
    results = engine.ingestor.recover()
    assert [r.outcome for r in results] == ["added"]
    assert engine.catalog.find("default", "a.txt").status == "done"
    assert indexes_agree(engine)
    assert engine.retriever.search("zebrafish heart")[0].source == "a.txt"


def test_bm25_index_is_rebuilt_from_the_catalog(settings, tmp_path):
    """A store from before the Tantivy index (lexical.sqlite, no format mark) or one whose index
    folder was lost gets its BM25 index back from the catalog's texts when it is opened."""
    with Engine(settings) as eng:
        ingest(eng, write(tmp_path / "a.txt", ALPHA), write(tmp_path / "b.txt", BETA))
    shutil.rmtree(settings.store / "lexical")
    (settings.store / "lexical.sqlite").write_bytes(b"an old FTS5 file")
    with Engine(settings) as eng:
        eng.catalog.set_meta("lexical_index", "sqlite-fts5")
        assert indexes_agree(eng)
        assert eng.lexical.search("superconducting qubits", 5)[0].doc_id == eng.catalog.find("default", "b.txt").id
        assert eng.retriever.search("zebrafish heart", mode="lexical")[0].source == "a.txt"
    assert not (settings.store / "lexical.sqlite").exists()


def test_changed_embedding_model_is_refused_then_reindexed(settings, tmp_path):
    with Engine(settings) as eng:
        ingest(eng, write(tmp_path / "a.txt", ALPHA))
    local = tmp_path / "my-minilm"
    shutil.copytree(bundled_model_path(), local)
    other = make_settings(settings.store, embedding={"model": str(local)})
    with pytest.raises(EmbeddingModelMismatch, match="ragchat reindex"):
        Engine(other)
    with Engine(other, allow_model_change=True) as eng:
        (r,) = eng.reindex()
        assert r.chunks >= 1
        assert eng.catalog.documents()[0].embed_model == f"sentence-transformers:{local}"
        assert indexes_agree(eng)
    with Engine(other) as eng:  # now it opens normally
        assert eng.retriever.search("zebrafish heart")[0].source == "a.txt"


def test_second_process_is_refused(settings):
    engine = Engine(settings)
    code = (
        "import sys\nfrom ragchat.core.settings import load_settings\nfrom ragchat.engine import Engine\n"
        "from ragchat.core.errors import StoreError\n"
        f"try:\n    Engine(load_settings(store={str(engine.store)!r}))\nexcept StoreError as e:\n    print(e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    engine.close()
    assert out.returncode == 3, out.stderr
    assert "in use by another ragchat process" in out.stdout


def test_ask_options_override_settings(engine, tmp_path):
    ingest(engine, write(tmp_path / "a.txt", ALPHA), write(tmp_path / "b.txt", BETA))
    events = list(engine.chat.stream("zebrafish heart", options=ChatOptions(top_k=1)))
    assert len(events[-1].answer.retrieved) == 1


def test_store_lock_released_on_close(settings):
    Engine(settings).close()
    with Engine(settings):
        pass
    with Engine(settings):
        with pytest.raises(StoreError):
            Engine(settings)


def test_ollama_embeddings_and_chat_through_the_fake_server(tmp_path, monkeypatch):
    from ollama_fake import FakeOllama

    with FakeOllama(models=("nomic-embed-text", "llama3.2"),
                    reply=lambda req: "Kelp grows in cold water [1].") as fake:
        s = make_settings(tmp_path / "store", embedding={"provider": "ollama", "model": "nomic-embed-text"},
                          llm={"provider": "auto", "ollama_url": fake.url})
        with Engine(s) as eng:
            ingest(eng, write(tmp_path / "a.txt", "Kelp forests grow quickly in cold water."),
                   write(tmp_path / "b.txt", BETA))
            assert eng.catalog.documents()[0].embed_model == "ollama:nomic-embed-text"
            assert any(p == "/api/embed" for _, p, _ in fake.requests)
            events = list(eng.chat.stream("Where does kelp grow?"))
            answer = events[-1].answer
            assert (answer.provider, answer.model) == ("ollama", "llama3.2")
            assert answer.text == "Kelp grows in cold water [1].\n\n> Kelp forests grow quickly in cold water. [1]"
            assert answer.sources[0].source == "a.txt"


def test_each_builtin_model_can_be_picked(settings):
    """The Settings tab's list: the model picked for this machine and every bundled one, each reached
    through llm_for (the path every chat takes) whatever llm.builtin_model says."""
    from ragchat.core.errors import LLMError
    from ragchat.llm.models import BUILTIN_MODELS, auto_builtin

    with Engine(settings) as eng:  # llm.builtin_model = "smollm2-135m" (conftest)
        listed = dict(eng.builtin_models())
        assert set(listed) == {"builtin:auto", "builtin:smollm2-135m", "builtin:qwen2.5-0.5b", "builtin:qwen2.5-1.5b"}
        picked = BUILTIN_MODELS[auto_builtin()[0]]
        assert listed["builtin:auto"] == f"Built-in, picked for this machine: {picked.title}"
        for value in listed:
            name = auto_builtin()[0] if value == "builtin:auto" else value.split(":")[1]
            llm = eng.llm_for(ChatOptions(model=value))
            assert (llm.provider, llm.model_name) == ("llamacpp", BUILTIN_MODELS[name].file)
        assert eng.llm_for(ChatOptions(model="builtin")).model_name == BUILTIN_MODELS["smollm2-135m"].file  # as configured
        title, why = eng.describe_llm("builtin:auto", "llamacpp", picked.file)
        # the reason is the logged line (its free-memory figure is read when the choice is made)
        assert title == picked.title and why.startswith(f"{picked.name} (auto: ") and "physical core" in why
        assert eng.describe_llm("builtin:smollm2-135m", "llamacpp", BUILTIN_MODELS["smollm2-135m"].file) == ("SmolLM2-135M", "")
        with pytest.raises(LLMError, match="no built-in model 'qwen9'.*builtin:auto"):
            eng.llm_for(ChatOptions(model="builtin:qwen9"))
