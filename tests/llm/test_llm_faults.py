"""LLM faults seen through ChatEngine.stream: what the person gets, and that nothing is left hanging.

Ollama is the fake server from ollama_fake.py (real HTTP, real ollama client and ChatOllama); the
documents, embedder and indexes are real. For every fault: the answer says what happened in words
a person can act on, an answer cut after some text is kept and marked partial (``Answer.partial``
and ``Answer.error``), the LLM slot is given back, no generation thread outlives the answer by
more than the client timeout, and the next question is answered normally.

(The same faults at the ``stream_text`` level are in test_llm.py.)
"""

from __future__ import annotations

import threading
import time

import pytest
from ollama_fake import FakeOllama

from conftest import free_port, make_settings
from ragchat.answer.engine import ChatEngine, ChatOptions
from ragchat.core.settings import LLMSettings
from ragchat.engine import Engine
from ragchat.ingest.pipeline import SourceFile
from ragchat.llm.providers import resolve_llm

DOC = "The lighthouse keeper logs the weather at dawn. Storm warnings are raised when the barometer falls fast."
QUESTION = "When are storm warnings raised by the lighthouse keeper?"
REPLY = "Storm warnings are raised when the barometer falls fast [1], as the lighthouse keeper logs at dawn."
TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    (root / "keeper.txt").write_text(DOC)
    e = Engine(make_settings(root / "store"))
    e.ingestor.ingest([SourceFile(root / "keeper.txt", "keeper.txt")], "default")
    yield e
    e.close()


@pytest.fixture
def fake():
    with FakeOllama(models=["llama3.2"], reply=REPLY) as server:
        yield server


def chat_for(eng, url: str, model: str = "llama3.2") -> ChatEngine:
    """The engine's chat, answering with Ollama at url (resolved for every question)."""
    llm = LLMSettings(provider="ollama", ollama_url=url, ollama_model=model, timeout_s=TIMEOUT_S, connect_timeout_s=1,
                      max_answer_tokens=200)
    return ChatEngine(eng.settings.chat, eng.retriever, lambda options: resolve_llm(llm, options.model), eng.gate,
                      TIMEOUT_S, eng.has_documents)


def ask(chat: ChatEngine, question: str = QUESTION, limit_s: float = 15.0):
    started = time.monotonic()
    events = list(chat.stream(question, options=ChatOptions()))
    elapsed = time.monotonic() - started
    assert elapsed < limit_s, f"the answer took {elapsed:.1f} s: something waited without a bound"
    tokens = "".join(e.text for e in events if e.kind == "token")
    assert events[-1].kind == "done"
    return events[-1].answer, tokens


def no_worker_left(eng, within_s: float = TIMEOUT_S + 3) -> None:
    deadline = time.monotonic() + within_s
    while any(t.name == "ragchat-llm" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a generation thread outlived its answer"
        time.sleep(0.05)
    assert eng.gate._active == 0 and eng.gate._waiting == 0, "the LLM slot was not given back"


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_healthy_answer_is_whole(eng, fake):
    answer, tokens = ask(chat_for(eng, fake.url))
    assert not answer.partial and answer.error is None
    assert "barometer" in answer.text and answer.sources and answer.sources[0].source == "keeper.txt"
    assert tokens.strip() in answer.text


def test_unreachable(eng):
    answer, tokens = ask(chat_for(eng, closed_port_url()))
    assert "Ollama is not running" in answer.error and "ollama serve" in answer.error
    assert answer.text == answer.error and not answer.partial and tokens == ""
    no_worker_left(eng)


def test_model_missing(eng, fake):
    answer, _ = ask(chat_for(eng, fake.url, model="mistral-nope"))
    assert "no model 'mistral-nope'" in answer.error and "ollama pull mistral-nope" in answer.error
    assert not answer.partial


def test_model_removed_between_probe_and_answer(eng, fake):
    chat = chat_for(eng, fake.url)
    resolved = resolve_llm(LLMSettings(provider="ollama", ollama_url=fake.url, timeout_s=TIMEOUT_S, connect_timeout_s=1))
    chat.llm_for = lambda options: resolved  # resolved while the model was there, as the engine caches it
    fake.models = []
    answer, _ = ask(chat)
    assert "ollama pull llama3.2" in answer.error and not answer.partial
    no_worker_left(eng)


def test_slow_times_out_without_hanging(eng, fake):
    fake.fault, fake.slow_s = "slow", 30
    answer, tokens = ask(chat_for(eng, fake.url), limit_s=TIMEOUT_S + 8)
    assert "did not answer in time" in answer.error or "sent nothing for" in answer.error
    assert "timeout_s" in answer.error
    assert not answer.partial and tokens == ""
    no_worker_left(eng)


@pytest.mark.parametrize("fault,says", [
    ("cut", "stopped in the middle of the answer"),
    ("truncate", "stopped in the middle of the answer"),
    ("malformed", "cannot read"),
    ("error", "answered with an error"),
])
def test_broken_stream_keeps_the_partial_answer_marked_partial(eng, fake, fault, says):
    fake.fault = fault
    answer, tokens = ask(chat_for(eng, fake.url))
    assert says in answer.error, answer.error
    assert answer.partial, "text was shown before the fault, so the answer must say it is partial"
    assert tokens and answer.text.startswith(tokens.strip()[:5])
    assert len(answer.text) < len(REPLY)
    no_worker_left(eng)


def test_next_question_works_after_every_fault(eng, fake):
    for fault in ("cut", "malformed", "error", None):
        fake.fault = fault
        ask(chat_for(eng, fake.url))
    answer, _ = ask(chat_for(eng, fake.url))
    assert answer.error is None and not answer.partial
    no_worker_left(eng)
