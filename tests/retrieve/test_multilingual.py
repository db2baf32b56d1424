"""The default multilingual embedder (EmbeddingGemma-300M, ragchat.embed.gemma), for real: joined from its
downloaded wheels and exported to int8 ONNX on first use (in the user's cache, once), then used through
the engine. A Chinese question finds an English passage and an English question a Chinese one, with no
word in common; a store built with the English MiniLM keeps it until `ragchat reindex`."""

import logging

import pytest

from conftest import make_settings
from ragchat.embed import gemma
from ragchat.core.settings import BUNDLED_EMBEDDER, MULTILINGUAL_EMBEDDER
from ragchat.engine import Engine
from ragchat.core.errors import RagchatError
from ragchat.ingest.pipeline import collect

pytestmark = [pytest.mark.slow]  # EmbeddingGemma, exported on first use

EN = {
    "heart.txt": "The zebrafish heart regenerates after injury: cardiomyocytes near the wound divide and rebuild the muscle.",
    "qubits.txt": "Quantum annealing solves optimisation problems on a chip of superconducting qubits cooled near absolute zero.",
    "bread.txt": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour for many hours.",
}
ZH = {
    "battery.txt": "磷酸铁锂刀片电池不容易起火，针刺试验中表面温度只有三四十摄氏度。",
    "tea.txt": "龙井茶产于杭州西湖一带，采摘后要经过杀青和揉捻，冲泡时水温约八十摄氏度。",
    "train.txt": "京沪高速铁路全长一千三百多公里，最高运营时速三百五十公里，北京到上海最快四个多小时。",
}


def write_all(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in texts]


@pytest.fixture
def multilingual(tmp_path, monkeypatch):
    monkeypatch.delenv("RAGCHAT_EMBEDDING__MODEL", raising=False)
    settings = make_settings(tmp_path / "store", embedding={"model": "auto"})
    with Engine(settings) as eng:
        yield eng


def top(eng, query):
    return eng.retriever.search(query, k=1, mode="dense")[0].source


def test_questions_cross_languages_through_the_engine(multilingual, tmp_path):
    eng = multilingual
    assert eng.embedder.model_id == f"sentence-transformers:{MULTILINGUAL_EMBEDDER}" and eng.embedder.multilingual
    results = eng.ingestor.ingest(collect(write_all(tmp_path / "docs", {**EN, **ZH})), "default")
    assert all(r.outcome == "added" for r in results), results
    assert top(eng, "斑马鱼的心脏受伤后会怎样？") == "heart.txt"
    assert top(eng, "超导量子比特用来解决什么问题？") == "qubits.txt"
    assert top(eng, "酸面包为什么会发起来？") == "bread.txt"
    assert top(eng, "Which battery does not catch fire in the nail penetration test?") == "battery.txt"
    assert top(eng, "At what water temperature should this green tea be brewed?") == "tea.txt"
    assert top(eng, "How long does the fastest train from Beijing to Shanghai take?") == "train.txt"
    # hybrid, the default mode, keeps the dense answer when BM25 shares no word with the question
    assert eng.retriever.search("斑马鱼的心脏受伤后会怎样？", k=1)[0].source == "heart.txt"


def test_bm25_noise_across_languages_does_not_outrank_the_dense_answer(multilingual, tmp_path):
    """An English question about a Chinese passage shares one number with an unrelated English note.
    BM25 finds only that note; min-max fusion would give it a full match's weight. With
    retrieval.adaptive_lexical (the default) its weight follows the share of the question it holds."""
    eng = multilingual
    eng.ingestor.ingest(collect(write_all(tmp_path / "docs", {**EN, **ZH, "gate.txt": "Gate 350 opens at noon."})), "default")
    question = "What is the top operating speed of the Beijing Shanghai line, 350?"
    assert eng.retriever.search(question, k=1)[0].source == "train.txt"  # the defaults
    eng.settings.retrieval.lexical_weight = 1.0  # even at MiniLM's weight
    assert eng.retriever.search(question, k=1)[0].source == "train.txt"
    eng.settings.retrieval.adaptive_lexical = False
    assert eng.retriever.search(question, k=1)[0].source == "gate.txt", "the case the setting is for"


def test_the_closeness_gate_compares_a_question_with_passages_in_its_own_language(multilingual, tmp_path):
    """Cosines across languages run lower, so the answer gates (chat.unanswered_below) read only the
    passages in the question's language, and none when a passage in the other language is closer."""
    eng = multilingual
    eng.ingestor.ingest(collect(write_all(tmp_path / "docs", {**EN, **ZH})), "default")
    question = "斑马鱼的心脏受伤后会怎样？"
    hits = eng.retriever.search(question, k=4)
    english = [h for h in hits if h.source in EN]
    assert english[0].source == "heart.txt" and english[0].dense is not None
    assert eng.retriever.closeness(question, english) is None
    chinese = [h for h in hits if h.source in ZH]
    assert eng.retriever.closeness(question, chinese) == max(h.dense for h in chinese)
    # the English answer is closer than any Chinese passage: the question is about it, not gated
    assert english[0].dense > max(h.dense for h in chinese) and eng.retriever.closeness(question, hits) is None


def test_queries_and_documents_get_their_own_prompts(multilingual):
    enc = multilingual.embedder.model
    text = "The zebrafish heart regenerates after injury."
    as_query = enc.encode([text], gemma.QUERY_PROMPT)[0]
    as_doc = enc.encode([text], gemma.DOCUMENT_PROMPT)[0]
    assert abs(float(as_query @ as_query) - 1) < 1e-3 and 0.5 < float(as_query @ as_doc) < 0.999


def test_a_minilm_store_keeps_minilm_until_reindexed(tmp_path, monkeypatch, caplog):
    store = tmp_path / "store"
    with Engine(make_settings(store, embedding={"model": BUNDLED_EMBEDDER})) as eng:
        eng.ingestor.ingest(collect(write_all(tmp_path / "docs", EN)), "default")
    monkeypatch.delenv("RAGCHAT_EMBEDDING__MODEL", raising=False)
    with caplog.at_level(logging.WARNING, logger="ragchat.engine"), Engine(make_settings(store, embedding={"model": "auto"})) as eng:
        assert eng.embedder.model_id == f"sentence-transformers:{BUNDLED_EMBEDDER}"
        assert eng.retriever.search("zebrafish heart", k=1)[0].source == "heart.txt"
    assert "ragchat reindex" in caplog.text and MULTILINGUAL_EMBEDDER in caplog.text
    with Engine(make_settings(store, embedding={"model": "auto"}), allow_model_change=True) as eng:
        assert len(eng.reindex()) == 3
        assert {d.embed_model for d in eng.catalog.documents()} == {f"sentence-transformers:{MULTILINGUAL_EMBEDDER}"}
    with Engine(make_settings(store, embedding={"model": "auto"})) as eng:  # now multilingual, without asking
        assert eng.embedder.model_id.endswith(MULTILINGUAL_EMBEDDER)
        assert top(eng, "斑马鱼的心脏受伤后会怎样？") == "heart.txt"


def test_missing_wheels_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGCHAT_GEMMA_WHEELS", str(tmp_path / "nowhere"))
    with pytest.raises(RagchatError, match="make install"):
        gemma.ensure_model(tmp_path / "cache")
