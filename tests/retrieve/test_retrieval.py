"""Lexical analysis, BM25 ranking and fusion on small fixtures with a known ranking."""

import pytest

from ragchat.core.text import analyze, cjk_share
from ragchat.store.lexical import LexicalIndex


def test_english_terms_are_stemmed_without_stopwords():
    assert analyze("The cells were regenerating quickly") == ["cell", "regener", "quick"]
    assert analyze("regenerates") == analyze("regeneration") == ["regener"]


def test_chinese_is_segmented_into_words():
    terms = analyze("机器学习模型的本地部署")
    assert {"机器", "学习", "模型", "部署"} <= set(terms)
    assert "的" not in terms


def test_mixed_text_keeps_both():
    terms = analyze("Qwen-7B模型支持中文 and English")
    assert {"qwen", "7b", "模型", "支持", "中文", "english"} <= set(terms)


def test_cjk_share():
    assert cjk_share("磷酸铁锂电池的安全性") == 1.0
    assert cjk_share("What is LiFePO4?") == 0.0
    assert cjk_share("Skywork-13B 有多少参数") > 0.5


@pytest.fixture
def lex(tmp_path):
    idx = LexicalIndex(tmp_path / "lex")
    idx.add([
        ("c1", "d1", "a", "Heart regeneration in zebrafish. Zebrafish hearts regenerate."),
        ("c2", "d2", "a", "The zebrafish is a small fish."),
        ("c3", "d3", "b", "Heart disease in humans."),
        ("c4", "d4", "b", "刀片电池的安全性很高，磷酸铁锂电池不易起火。"),
        ("c5", "d5", "a", "电池管理系统监控电压。"),
    ])
    yield idx
    idx.close()


def test_bm25_known_ranking(lex):
    assert [h.chunk_id for h in lex.search("heart regeneration", 10)] == ["c1", "c3"]
    assert [h.chunk_id for h in lex.search("zebrafish", 10)] == ["c1", "c2"]  # two mentions beat one
    assert [h.chunk_id for h in lex.search("磷酸铁锂电池安全", 10)][0] == "c4"
    assert lex.search("nothing matches this", 10) == []
    assert lex.search("the of and", 10) == []  # stop words only


def test_bm25_filters(lex):
    assert {h.chunk_id for h in lex.search("heart zebrafish", 10, collections=["b"])} == {"c3"}
    assert {h.chunk_id for h in lex.search("heart zebrafish", 10, doc_ids=["d2"])} == {"c2"}


def test_bm25_update_and_delete(lex):
    lex.add([("c2", "d2", "a", "Quantum annealing hardware.")])  # same id replaces
    assert lex.count() == 5
    assert [h.chunk_id for h in lex.search("quantum", 10)] == ["c2"]
    assert "c2" not in {h.chunk_id for h in lex.search("small fish", 10)}
    lex.delete(["c1", "c3"])
    assert lex.chunk_ids() == {"c2", "c4", "c5"}
    lex.delete_doc("d4")
    assert lex.chunk_ids() == {"c2", "c5"}


def test_query_syntax_is_not_interpreted(lex):
    for q in ['"unbalanced', "AND OR NOT", "heart*", "col:value", "NEAR(a b)", "'; DROP TABLE fts; --"]:
        lex.search(q, 5)  # no exception
    assert lex.count() == 5


def test_dense_weight_adapts_to_language(engine):
    r = engine.retriever
    assert r.dense_weight("What is a blade battery?") == engine.settings.retrieval.dense_weight
    assert r.dense_weight("刀片电池是什么？") == engine.settings.retrieval.cjk_dense_weight
