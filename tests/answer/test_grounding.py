"""The grounding check: each answer sentence against the sources it cites (ragchat.answer.grounding), on
its own and through the chat engine with a real store, the real embedder and an LLM whose reply is
known (the fake Ollama server), so that an invented sentence is there to be caught."""

from __future__ import annotations

from types import SimpleNamespace

from ollama_fake import FakeOllama

from ragchat.answer.engine import ChatEngine
from ragchat.core.settings import LLMSettings
from ragchat.answer.grounding import UNSUPPORTED, UNSUPPORTED_ZH, check, sentences, support
from ragchat.ingest.pipeline import collect
from ragchat.llm.providers import resolve_llm

SOURCES = [
    SimpleNamespace(id=1, text="TableFormer predicts the structure of a table and the bounding box of every cell from the image."),
    SimpleNamespace(id=2, text="The PubTabNet data set holds 516,000 tables taken from scientific articles."),
    SimpleNamespace(id=3, text="昆仑万维开源的 Skywork-13B 系列包含两大版本：Skywork-13B-Base 和 Skywork-13B-Math。"),
]


def test_a_supported_sentence_keeps_its_citation():
    text, verdicts = check("TableFormer predicts the table structure and the bounding box of each cell [1].", SOURCES)
    assert text == "TableFormer predicts the table structure and the bounding box of each cell [1]."
    assert verdicts[0].supported_by == 1 and verdicts[0].checked


def test_a_citation_to_the_wrong_source_moves_to_the_right_one():
    text, _ = check("PubTabNet holds 516,000 tables from scientific articles [1].", SOURCES)
    assert text == "PubTabNet holds 516,000 tables from scientific articles [2]."


def test_an_invented_sentence_is_marked_and_loses_its_citation():
    answer = "TableFormer predicts the bounding box of every cell [1]. It was trained on ten million receipts from Norway [1]."
    text, verdicts = check(answer, SOURCES)
    assert text == ("TableFormer predicts the bounding box of every cell [1]. "
                    f"It was trained on ten million receipts from Norway {UNSUPPORTED}.")
    assert [v.supported_by for v in verdicts] == [1, None]


def test_a_wrong_number_is_not_supported_even_with_the_right_words():
    assert support("PubTabNet holds 516,000 tables.", SOURCES[1].text) == 1.0
    assert support("PubTabNet holds 600,000 tables.", SOURCES[1].text) == 0.0
    text, _ = check("PubTabNet holds 600,000 tables [2].", SOURCES)
    assert UNSUPPORTED in text and "[2]" not in text


def test_the_questions_own_numbers_repeated_are_not_claims():
    answer = "In 2022 the PubTabNet data set holds 516,000 tables [2]."
    text, _ = check(answer, SOURCES, question="How many tables did PubTabNet hold in 2022?")
    assert text == answer
    text, _ = check(answer, SOURCES, question="How many tables does PubTabNet hold?")
    assert UNSUPPORTED in text  # a year nobody asked about is a claim
    text, _ = check("In 2022 the PubTabNet data set holds 600,000 tables [2].", SOURCES, question="How many in 2022?")
    assert UNSUPPORTED in text  # the figure itself still has to be in the source


def test_an_answer_in_the_other_language_is_checked_on_its_numbers_and_names():
    """A Chinese answer from an English source shares no words with it: its figures and Latin names
    are compared; with neither, it is left unmarked rather than called unsupported."""
    assert support("PubTabNet 数据集包含 516,000 张表格。", SOURCES[1].text) == 1.0
    assert support("PubTabNet 数据集包含 600,000 张表格。", SOURCES[1].text) == 0.0
    assert support("Skywork-13B comes in two versions, Base and Math.", SOURCES[2].text) == 1.0  # its number
    text, verdicts = check("PubTabNet 数据集包含 516,000 张表格 [2]。", SOURCES)
    assert text == "PubTabNet 数据集包含 516,000 张表格 [2]。" and verdicts[0].supported_by == 2
    text, verdicts = check("这个数据集的表格来自科学文章 [2]。", SOURCES)
    assert text == "这个数据集的表格来自科学文章 [2]。" and not verdicts[0].checked
    text, _ = check("PubTabNet 数据集包含 600,000 张表格 [2]。", SOURCES)
    assert UNSUPPORTED_ZH in text and "[2]" not in text


def test_chinese_sentences_are_checked_too():
    text, _ = check("Skywork-13B 系列包含 Skywork-13B-Base 和 Skywork-13B-Math 两大版本。", SOURCES)
    assert text == "Skywork-13B 系列包含 Skywork-13B-Base 和 Skywork-13B-Math 两大版本 [3]。"
    text, _ = check("Skywork-13B 由清华大学在二零一九年训练完成并获得图灵奖。[3]", SOURCES)
    assert text == f"Skywork-13B 由清华大学在二零一九年训练完成并获得图灵奖 {UNSUPPORTED_ZH}。"  # marked in Chinese


def test_refusals_and_short_sentences_are_left_alone():
    for reply in ("I could not find the answer in the documents.", "Yes [1].", "资料中没有找到答案。"):
        text, verdicts = check(reply, SOURCES)
        assert text == reply and not any(v.checked for v in verdicts)


def test_markers_after_the_full_stop_belong_to_the_sentence_before():
    text, verdicts = check("TableFormer predicts the bounding box of every cell. [1] PubTabNet holds 516,000 tables. [2]", SOURCES)
    assert text == "TableFormer predicts the bounding box of every cell [1]. PubTabNet holds 516,000 tables [2]."
    assert [v.supported_by for v in verdicts] == [1, 2]
    lines = "Kinds:\n- e.g. the bounding box of every cell [1]\n- 第三句。第四句"
    assert [lines[a:b] for a, b in sentences(lines)] == ["Kinds:", "- e.g. the bounding box of every cell [1]", "- 第三句。", "第四句"]


def test_the_chat_engine_marks_an_invented_sentence(engine, tmp_path):
    doc = tmp_path / "kelp.txt"
    doc.write_text("Kelp forests grow in cold, nutrient-rich coastal water. Sea otters eat the urchins that graze on kelp, "
                   "so where otters live the forests stay healthy.")
    engine.ingestor.ingest(collect([doc]), "default")
    reply = ("Kelp forests grow in cold, nutrient-rich coastal water [1]. "
             "Kelp forests were first planted by Roman sailors in the year 312 [1].")
    with FakeOllama(models=["llama3.2"], reply=reply) as fake:
        llm = LLMSettings(provider="ollama", ollama_url=fake.url, timeout_s=10, connect_timeout_s=1)
        chat = ChatEngine(engine.settings.chat, engine.retriever, lambda o: resolve_llm(llm), engine.gate, 10,
                          engine.has_documents)
        answer = list(chat.stream("Where do kelp forests grow?"))[-1].answer
    assert answer.text.startswith("Kelp forests grow in cold, nutrient-rich coastal water [1]. "
                                  f"Kelp forests were first planted by Roman sailors in the year 312 {UNSUPPORTED}.\n\n> ")
    assert answer.unsupported == ["Kelp forests were first planted by Roman sailors in the year 312 [1]."]
    assert [s.id for s in answer.sources] == [1]
