"""What the LLM reads of each source (chat.source_tokens), and that citations still mean whole chunks.

The built-in model gets each source as its excerpt that best matches the question, counted in the
model's own tokens; Ollama gets whole chunks. The excerpt tests use the real SmolLM2 tokenizer; the
end-to-end ones a real store and the real built-in model (or the fake Ollama server for that path).
"""

from __future__ import annotations

import threading

import pytest
from conftest import PDFS, TEST_MODEL
from ollama_fake import FakeOllama

import ragchat.answer.engine as chat_module
from ragchat.answer.citations import cite
from ragchat.answer.engine import AUTO_SOURCE_TOKENS, ChatEngine, ChatOptions
from ragchat.answer.events import Source
from ragchat.answer.prompt import SOURCES_BEGIN, SOURCES_END, excerpt
from ragchat.core.settings import LLMSettings, load_settings
from ragchat.core.errors import ConfigError
from ragchat.ingest.pipeline import collect
from ragchat.llm.chat_model import estimate_tokens
from ragchat.llm.providers import resolve_llm

CHUNK = (
    "Table recognition has a long history in document analysis. Early systems used hand-written rules "
    "for ruling lines and whitespace. TableFormer predicts the structure of a table and the bounding box "
    "of every cell from the image. Its decoder is trained on PubTabNet with a tree edit distance metric. "
    "The authors release their code and weights under an open licence. Several later papers build on it."
)


@pytest.fixture(scope="module")
def builtin():
    return resolve_llm(LLMSettings(provider="llamacpp", builtin_model=TEST_MODEL, max_answer_tokens=48))


def source(n: int, text: str) -> Source:
    return Source(n, "doc.pdf", 1, text, 0.5, "d", f"c{n}", "default", 0, len(text))


# ---- excerpts ----------------------------------------------------------------------------------------


def test_excerpt_keeps_the_relevant_sentence_within_the_budget(builtin):
    count = builtin.count_tokens
    assert count(CHUNK) > 60
    got = excerpt(CHUNK, "How are cell bounding boxes predicted?", 40, count)
    assert "TableFormer predicts the structure of a table and the bounding box of every cell" in got
    assert count(got) <= 40
    assert "open licence" not in got


def test_excerpt_keeps_sentences_in_their_order_and_marks_gaps(builtin):
    count = builtin.count_tokens
    got = excerpt(CHUNK, "TableFormer decoder PubTabNet licence", 50, count)
    kept = [s for s in ("TableFormer predicts", "Its decoder", "open licence") if s in got]
    assert len(kept) == 3 and count(got) <= 50
    assert sorted(kept, key=got.index) == sorted(kept, key=CHUNK.index)
    assert "Early systems" not in got  # no query term, and far from the best sentence
    gapped = excerpt(CHUNK, "ruling lines; code and weights", 40, count)
    assert "ruling lines" in gapped and "code and weights" in gapped and " … " in gapped


def test_short_chunks_are_sent_whole_and_unrelated_ones_from_their_start(builtin):
    count = builtin.count_tokens
    assert excerpt(CHUNK, "anything", 500, count) == CHUNK
    got = excerpt(CHUNK, "zebrafish heart regeneration", 30, count)
    assert got.startswith("Table recognition has a long history") and count(got) <= 30


def test_a_chunk_without_sentence_ends_is_cut_to_the_budget(builtin):
    count = builtin.count_tokens
    table = " ".join(f"row{i} {i * 7} {i * 13} units" for i in range(80)) + " TEDS 93.6 overall"
    got = excerpt(table, "What is the overall TEDS?", 32, count)
    assert "TEDS 93.6 overall" in got and count(got) <= 32


def test_chinese_excerpt_keeps_the_matching_sentence(builtin):
    count = builtin.count_tokens
    text = ("本期介绍几个开源项目。通义千问是阿里云推出的大语言模型系列，支持中文和英文。"
            "另外，向量数据库也在快速发展。我们还整理了一些学习资料和社区活动的链接。")
    got = excerpt(text, "通义千问是什么模型？", 40, count)
    assert "通义千问是阿里云推出的大语言模型系列" in got and count(got) <= 40


def test_sentences_already_sent_for_an_earlier_source_come_last(builtin):
    count = builtin.count_tokens
    sent: set[str] = set()
    first = excerpt(CHUNK, "TableFormer cell bounding box", 30, count, sent)
    second = excerpt(CHUNK, "TableFormer cell bounding box", 30, count, sent)
    assert "TableFormer predicts" in first and "TableFormer predicts" not in second
    assert second and count(second) <= 30


def test_the_budget_follows_the_setting_and_the_provider(builtin, tmp_path):
    ollama = type(builtin)(model=builtin.model, provider="ollama", model_name="llama3.2")

    def budget(value, llm):
        settings = load_settings(store=tmp_path, chat={"source_tokens": value}).chat
        return ChatEngine(settings, None, None, None, 1, None).source_budget(llm)

    assert budget("auto", builtin) == AUTO_SOURCE_TOKENS
    assert budget("auto", ollama) is None  # large context: whole chunks
    assert budget(0, builtin) is None and budget("0", builtin) is None
    assert budget("90", ollama) == 90
    with pytest.raises(ConfigError, match="source_tokens"):
        load_settings(store=tmp_path, chat={"source_tokens": "lots"})
    assert estimate_tokens("four byte word") == 4


# ---- citations ---------------------------------------------------------------------------------------


def test_attribution_counts_the_whole_chunk_not_only_the_excerpt(builtin):
    """The reader of [n] sees the whole chunk highlighted, so a sentence it supports is cited even
    when its words lie outside the excerpt the model read."""
    src = source(1, CHUNK)
    sent = excerpt(CHUNK, "How are cell bounding boxes predicted?", 40, builtin.count_tokens)
    assert "open licence" not in sent
    text, cited = cite("The authors release the code and weights under an open licence.", [src])
    assert cited == [src] and text.endswith("[1]")


def prompt_recorder(monkeypatch) -> list:
    seen: list = []
    real = chat_module.stream_text

    def recording(llm, messages, timeout_s):
        seen.append(messages)
        return real(llm, messages, timeout_s)

    monkeypatch.setattr(chat_module, "stream_text", recording)
    return seen


def source_blocks(user_message: str) -> list[str]:
    body = user_message.split(SOURCES_BEGIN, 1)[1].split(SOURCES_END, 1)[0]
    return [b.strip() for b in body.strip().split("\n\n")]


def test_builtin_model_reads_excerpts_and_citations_mean_whole_chunks(engine, monkeypatch, builtin):
    engine.ingestor.ingest(collect([PDFS / "mineru__demo3.pdf"]), "default")
    seen = prompt_recorder(monkeypatch)
    events = list(engine.chat.stream("What does TableFormer predict?"))
    answer = events[-1].answer
    assert answer.provider == "llamacpp" and not answer.error and len(answer.retrieved) == 4

    messages = seen[-1]
    assert messages[0].type == "system"  # the constant part first: llama.cpp keeps it cached
    blocks = source_blocks(messages[-1].text)
    assert len(blocks) == 4
    for block, src in zip(blocks, answer.retrieved):
        assert block.startswith(f"[{src.id}] ")
        assert builtin.count_tokens(block.split(" ", 1)[1]) <= AUTO_SOURCE_TOKENS
    assert any("tableform" in b.lower() and "predict" in b.lower() for b in blocks)
    assert sum(builtin.count_tokens(s.text) for s in answer.retrieved) > 1.5 * sum(builtin.count_tokens(b) for b in blocks)

    doc = engine.catalog.find("default", "mineru__demo3.pdf")
    for src in answer.retrieved:  # what the panel and the viewer get: the whole chunk, where it lies
        page_text = engine.catalog.page_text(doc.id, src.page)
        assert page_text[src.start : src.end] == src.text
        assert builtin.count_tokens(src.text) > AUTO_SOURCE_TOKENS or " ".join(src.text.split()) in messages[-1].text
    assert answer.sources or answer.unsupported, answer.text  # cited, or marked as not supported
    for src in answer.sources:
        assert f"[{src.id}]" in answer.text and src in answer.retrieved


def test_ollama_reads_whole_chunks(engine):
    engine.ingestor.ingest(collect([PDFS / "mineru__demo3.pdf"]), "default")
    with FakeOllama(models=["llama3.2"], reply="TableFormer predicts table structure [1].") as fake:
        llm = LLMSettings(provider="ollama", ollama_url=fake.url, timeout_s=10, connect_timeout_s=1)
        chat = ChatEngine(engine.settings.chat, engine.retriever, lambda o: resolve_llm(llm), engine.gate, 10,
                          engine.has_documents)
        answer = list(chat.stream("What does TableFormer predict?"))[-1].answer
        user = fake.requests[-1][2]["messages"][-1]["content"]
    assert answer.provider == "ollama" and answer.retrieved
    for src in answer.retrieved:
        assert " ".join(src.text.split()) in user


def test_a_chat_searches_with_the_mode_and_fusion_weight_it_is_given(engine):
    """ChatOptions.mode and .weight (saved from the retrieval test tab) reach the search: the sources
    the model reads are the ones the retriever ranks with them, and a lexical-only and a dense-only
    fusion give the model different sources here."""
    engine.ingestor.ingest(collect([PDFS / "mineru__demo3.pdf"]), "default")
    question = "How is the structure of a table recognised?"
    with FakeOllama(models=["llama3.2"], reply="It predicts the structure [1].") as fake:
        llm = LLMSettings(provider="ollama", ollama_url=fake.url, timeout_s=10, connect_timeout_s=1)
        chat = ChatEngine(engine.settings.chat, engine.retriever, lambda o: resolve_llm(llm), engine.gate, 10,
                          engine.has_documents)
        given = {}
        for name, options in (("lexical", ChatOptions(weight=0.0)), ("dense", ChatOptions(weight=1.0)),
                              ("mode", ChatOptions(mode="lexical"))):
            answer = list(chat.stream(question, options=options))[-1].answer
            given[name] = [s.chunk_id for s in answer.retrieved]
    expected = {name: [h.chunk_id for h in engine.retriever.search(question, mode=mode, weight=weight) if h.relevant]
                for name, mode, weight in (("lexical", None, 0.0), ("dense", None, 1.0), ("mode", "lexical", None))}
    assert given == expected and given["lexical"] != given["dense"]


# ---- the system prompt is read once -------------------------------------------------------------------


def _prompt_tokens_read(llm) -> float:
    """Prompt tokens llama.cpp has evaluated so far (its /metrics); cached ones are not counted."""
    import httpx

    server = llm.model.server()
    text = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=5).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("llamacpp:prompt_tokens_total")))


def test_the_system_prompt_is_read_once_then_kept_in_the_cache(builtin):
    """A second question with the same system prompt reads only what follows the system prompt, and
    the same question asked twice in a row gets the same greedy answer."""
    from langchain_core.messages import HumanMessage, SystemMessage

    from ragchat.llm.streaming import stream_text

    system = "You answer in one short sentence, in plain English, without lists. " * 3
    ask = lambda q: "".join(stream_text(builtin, [SystemMessage(system), HumanMessage(q)], 120))  # noqa: E731
    ask("Name a large river in Africa.")
    before = _prompt_tokens_read(builtin)
    first = ask("What is the capital of France?")
    read = _prompt_tokens_read(builtin) - before
    assert 0 < read < builtin.count_tokens(system), "the system prompt came from the cache"
    assert ask("What is the capital of France?") == first and first


# ---- the web app starts the engine before its first update --------------------------------------------


def test_pump_starts_the_stream_at_once_and_ticks_while_it_is_silent():
    from ragchat.core.streams import BackgroundIterator as _Pump
    from ragchat.ui.chat import STOP_TICK_S

    started, release = threading.Event(), threading.Event()

    def events():
        started.set()
        release.wait(30)  # like llama.cpp reading a long prompt
        yield "token"

    pump = iter(_Pump(events(), tick=0.05))
    assert started.wait(30), "the engine must start before anyone reads the pump (the first update)"
    assert next(pump) is None  # a short step while nothing arrives, so that "stop" can act
    release.set()
    assert [e for e in pump if e is not None] == ["token"]
    assert STOP_TICK_S <= 0.5


def test_streamed_updates_send_set_outputs_again_instead_of_skipping_them():
    """Gradio rebuilds every gr.skip() output on every update; outputs already set are sent again as
    plain values (an empty diff for the page), and the textbox is only ever set once."""
    import gradio as gr

    from ragchat.ui.chat import _Frame

    skip = gr.skip()
    state = {"cid": "c1"}
    frame = _Frame(state)
    chat = [{"role": "assistant", "content": "…"}]
    first = frame(chat, message="", sources="<p>pending</p>", conversations=gr.update(choices=[("A", "c1")], value="c1"))
    assert first[0] == "" and first[1] is chat and first[2] is state
    assert first[3] == "<p>pending</p>" and first[4]["choices"] == [("A", "c1")]  # the update itself, once
    assert first[5] == skip and first[6] == skip  # badge and notice: not set by this answer yet

    tick = frame(chat)
    assert tick == (skip, chat, state, "<p>pending</p>", "c1", skip, skip)

    frame(chat, badge="<b>model</b>", notice=gr.update(value="", visible=False))
    assert frame(chat) == (skip, chat, state, "<p>pending</p>", "c1", "<b>model</b>", "")


def test_a_model_that_cannot_load_is_an_answer_error_not_a_crash(tmp_path):
    """Excerpts count tokens with the model's tokenizer, which loads the model before generation."""
    from conftest import make_settings

    from ragchat.engine import Engine

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    doc = tmp_path / "kelp.txt"
    doc.write_text("Kelp forests grow in cold coastal water. Sea otters eat the urchins that graze on kelp.")
    with Engine(make_settings(tmp_path / "store", llm={"gguf_path": str(bad)})) as eng:
        eng.ingestor.ingest(collect([doc]), "default")
        answer = list(eng.chat.stream("Where do kelp forests grow?"))[-1].answer
    assert answer.retrieved and "cannot load the GGUF model" in (answer.error or "")
    assert answer.text == answer.error and not answer.partial
