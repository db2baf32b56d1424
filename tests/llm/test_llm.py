"""The LLM providers: the real bundled GGUF through llama.cpp's server, OpenAI-compatible servers,
and Ollama through a fake server.

The built-in tests run real generation with SmolLM2-135M (a few seconds). The "openai" provider is
tested against a real OpenAI-compatible server: llama.cpp's, the one that serves the built-in model.
The Ollama tests talk HTTP to ``ollama_fake.FakeOllama`` through the real ``ollama`` client and
``ChatOllama``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import ollama
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from conftest import TEST_MODEL, free_port
from ollama_fake import FakeOllama, hashed_embedding

from ragchat.core.settings import LLMSettings
from ragchat.core.errors import BusyError, LLMError
from ragchat.llm.chat_model import ResolvedLLM
from ragchat.llm.gate import LLMGate
from ragchat.llm.providers import list_ollama_models, resolve_llm
from ragchat.llm.streaming import stream_text

QUESTION = [
    SystemMessage("You answer in one short sentence."),
    HumanMessage("What is the capital of France?"),
]
REPLY = "Paris is the capital of France [1], and it lies on the Seine."


def closed_port_url() -> str:
    """A URL where nothing listens: bind a port, then free it."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def fake():
    with FakeOllama(models=["llama3.2", "qwen2.5:7b"], reply=REPLY) as server:
        yield server


def ollama_settings(url: str, **kw) -> LLMSettings:
    return LLMSettings(ollama_url=url, timeout_s=5, connect_timeout_s=1, **kw)


# -- built-in model (real llama.cpp) ---------------------------------------------------------


@pytest.fixture(scope="module")
def builtin():
    llm = resolve_llm(LLMSettings(provider="llamacpp", builtin_model=TEST_MODEL, max_answer_tokens=40, context_tokens=2048))
    assert llm.provider == "llamacpp" and llm.notice is None
    return llm


def test_bundled_gguf_is_shipped():
    from ragchat.core.settings import user_cache_dir
    from ragchat.llm.models import model_path

    path = model_path("smollm2-135m", user_cache_dir())
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_builtin_streams_real_text_in_several_pieces(builtin):
    assert builtin.model_name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    pieces = list(stream_text(builtin, QUESTION, timeout_s=120))
    assert len(pieces) >= 3
    assert "paris" in "".join(pieces).lower()


def test_builtin_temperature_zero_is_deterministic(builtin):
    messages = [HumanMessage("Write one sentence about rivers.")]
    first = "".join(stream_text(builtin, messages, timeout_s=120))
    second = "".join(stream_text(builtin, messages, timeout_s=120))
    assert first and first == second


def test_builtin_works_as_a_langchain_chat_model(builtin):
    answer = builtin.model.invoke(QUESTION)
    assert answer.content.strip()
    assert answer.response_metadata["finish_reason"] in {"stop", "length"}


def test_builtin_context_overflow_is_explained():
    llm = resolve_llm(LLMSettings(provider="llamacpp", builtin_model=TEST_MODEL, context_tokens=512, max_answer_tokens=16))
    with pytest.raises(LLMError, match="context"):
        list(stream_text(llm, [HumanMessage("word " * 2000)], timeout_s=120))


def _requests_processing(llm: ResolvedLLM) -> float:
    """llama.cpp's own count of the requests it is generating for (its /metrics)."""
    import httpx

    server = builtin_server_of(llm)
    text = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=5).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("llamacpp:requests_processing")))


def builtin_server_of(llm: ResolvedLLM):
    return llm.model.server()


def test_closing_the_stream_early_stops_generation(builtin):
    # A long answer (~1000 tokens, many seconds) that the reader abandons after its first piece.
    model = builtin.model.model_copy(update={"settings": builtin.model.settings.model_copy(update={"max_answer_tokens": 1000})})
    long = ResolvedLLM(model=model, provider="llamacpp", model_name=builtin.model_name)
    pieces = stream_text(long, [HumanMessage("Write a long story about a dragon who learns to cook.")], timeout_s=120)
    next(pieces)
    assert _requests_processing(builtin) == 1
    pieces.close()  # the reader went away (a closed browser tab)
    deadline = time.monotonic() + 5
    while _requests_processing(builtin) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _requests_processing(builtin) == 0


def test_missing_gguf_file_says_what_to_set(tmp_path):
    with pytest.raises(LLMError, match="llm.gguf_path"):
        resolve_llm(LLMSettings(provider="llamacpp", builtin_model=TEST_MODEL, gguf_path=str(tmp_path / "nope.gguf")))


def test_auto_picks_the_model_the_machine_calls_for():
    from ragchat.llm.models import AUTO_MIN_AVAILABLE_MB, AUTO_MIN_CORES, Machine, choose_builtin, explain_choice

    assert choose_builtin(physical_cores=2, available_mb=24 * 1024) == "qwen2.5-0.5b"  # this machine
    assert choose_builtin(physical_cores=16, available_mb=32 * 1024) == "qwen2.5-1.5b"
    assert choose_builtin(physical_cores=16, available_mb=1024) == "qwen2.5-0.5b"  # the 1.5B would not fit
    assert choose_builtin(AUTO_MIN_CORES, AUTO_MIN_AVAILABLE_MB) == "qwen2.5-1.5b"
    assert choose_builtin(AUTO_MIN_CORES - 1, AUTO_MIN_AVAILABLE_MB) == "qwen2.5-0.5b"
    why = explain_choice("qwen2.5-0.5b", Machine(2, 20 * 1024))
    assert why == (f"qwen2.5-0.5b (auto: 2 physical cores, 20 GB free; qwen2.5-1.5b needs {AUTO_MIN_CORES} cores "
                   "for a first token within 1.5 s)")
    assert explain_choice("qwen2.5-0.5b", Machine(16, 1024)).endswith("qwen2.5-1.5b needs 4 GB free)")
    assert explain_choice("qwen2.5-1.5b", Machine(16, 32 * 1024)) == "qwen2.5-1.5b (auto: 16 physical cores, 32 GB free)"


def test_the_machine_is_read_within_its_limits(tmp_path):
    from ragchat.llm.models import _cgroup_limits, machine

    m = machine()
    assert 1 <= m.physical_cores <= len(os.sched_getaffinity(0)) and m.available_mb > 0
    assert _cgroup_limits(tmp_path) == (None, None)  # not in a container
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    (tmp_path / "memory.max").write_text(f"{4 << 30}\n")
    (tmp_path / "memory.current").write_text(f"{1 << 30}\n")
    assert _cgroup_limits(tmp_path) == (2, 3 << 30)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert _cgroup_limits(tmp_path) == (None, None)


def test_auto_resolves_to_an_installed_model_and_logs_the_choice_once(caplog):
    from ragchat.llm.models import BUILTIN_MODELS, auto_builtin, choose_builtin, machine

    settings = LLMSettings(provider="llamacpp")
    assert settings.builtin_model == "auto"  # the default
    auto_builtin.cache_clear()
    with caplog.at_level(logging.INFO, logger="ragchat.llm.models"):
        first, second = resolve_llm(settings), resolve_llm(settings)
    m = machine()
    chosen = BUILTIN_MODELS[choose_builtin(m.physical_cores, m.available_mb)]
    assert first.model_name == second.model_name == chosen.file
    assert Path(first.model.path).is_file() and Path(first.model.path).stat().st_size > 50_000_000
    lines = [r.getMessage() for r in caplog.records if r.name == "ragchat.llm.models"]
    assert lines == [f"built-in model: {auto_builtin()[1]}"]
    assert lines[0].startswith(f"built-in model: {chosen.name} (auto: {m.physical_cores} physical core")


def test_the_loaded_model_is_shared():
    settings = LLMSettings(provider="llamacpp", builtin_model=TEST_MODEL, max_answer_tokens=40, context_tokens=2048)
    a, b = resolve_llm(settings).model, resolve_llm(settings).model
    assert a is not b and a.server() is b.server()  # one llama.cpp server for both


def test_a_corrupt_gguf_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 40)
    llm = resolve_llm(LLMSettings(provider="llamacpp", builtin_model=TEST_MODEL, gguf_path=str(bad)))
    with pytest.raises(LLMError, match="cannot load the GGUF model .*broken.gguf.*complete GGUF"):
        list(stream_text(llm, QUESTION, timeout_s=60))


def test_the_builtin_server_wants_its_key(builtin):
    import httpx

    assert httpx.post(f"{builtin_server_of(builtin).url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 401


# -- OpenAI-compatible servers (the real llama.cpp server of the built-in model) ----------------


def openai_settings(urls, builtin, **kw) -> LLMSettings:
    key = builtin_server_of(builtin).key
    return LLMSettings(provider="openai", base_url=urls, model=builtin.model_name, api_key=key, max_answer_tokens=40,
                       timeout_s=30, connect_timeout_s=1, **kw)


def test_openai_provider_answers_through_a_real_server(builtin):
    llm = resolve_llm(openai_settings(builtin_server_of(builtin).url + "/v1", builtin))
    assert (llm.provider, llm.model_name) == ("openai", builtin.model_name)
    assert "paris" in "".join(stream_text(llm, QUESTION, timeout_s=60)).lower()


def test_openai_provider_skips_a_server_that_is_down_and_takes_turns(builtin):
    down = closed_port_url() + "/v1"
    llm = resolve_llm(openai_settings([down, builtin_server_of(builtin).url + "/v1"], builtin))
    for _ in range(3):  # starts at each server in turn; the dead one always hands over
        assert "paris" in "".join(stream_text(llm, QUESTION, timeout_s=60)).lower()
    assert llm.model.turn[0] == 3


def test_openai_provider_names_every_server_that_failed():
    down = [closed_port_url() + "/v1", closed_port_url() + "/v1"]
    llm = resolve_llm(LLMSettings(provider="openai", base_url=down, model="m", connect_timeout_s=1))
    with pytest.raises(LLMError) as err:
        list(stream_text(llm, QUESTION, timeout_s=30))
    assert all(url in str(err.value) for url in down) and "llm.base_url" in str(err.value)


def test_openai_provider_explains_a_wrong_key_and_missing_settings(builtin):
    llm = resolve_llm(LLMSettings(provider="openai", base_url=builtin_server_of(builtin).url + "/v1", model="m", api_key="wrong"))
    with pytest.raises(LLMError, match="refused the API key .*llm.api_key"):
        list(stream_text(llm, QUESTION, timeout_s=30))
    with pytest.raises(LLMError, match="llm.base_url .* and llm.model"):
        resolve_llm(LLMSettings(provider="openai"))


# -- choosing a provider ---------------------------------------------------------------------


def test_auto_falls_back_to_builtin_when_ollama_is_down():
    url = closed_port_url()
    started = time.monotonic()
    llm = resolve_llm(ollama_settings(url))
    assert time.monotonic() - started < 5
    assert llm.provider == "llamacpp"
    assert llm.notice == f"Ollama is not running at {url}: start it with `ollama serve`. Using the built-in model."


def test_auto_falls_back_when_ollama_lacks_the_model(fake):
    llm = resolve_llm(ollama_settings(fake.url, ollama_model="mistral"))
    assert llm.provider == "llamacpp"
    assert "ollama pull mistral" in llm.notice


def test_auto_picks_ollama_when_it_is_up_and_has_the_model(fake):
    llm = resolve_llm(ollama_settings(fake.url, max_answer_tokens=77))
    assert (llm.provider, llm.model_name, llm.notice) == ("ollama", "llama3.2", None)
    pieces = list(stream_text(llm, QUESTION, timeout_s=5))
    assert "".join(pieces) == REPLY and len(pieces) > 3
    method, path, body = fake.requests[-1]
    assert (method, path, body["model"], body["stream"]) == ("POST", "/api/chat", "llama3.2", True)
    assert body["options"]["num_predict"] == 77 and body["options"]["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_ollama_num_predict_caps_the_answer(fake):
    llm = resolve_llm(ollama_settings(fake.url, max_answer_tokens=16))
    fake.reply = "word " * 40
    assert len("".join(stream_text(llm, QUESTION, timeout_s=5)).split()) == 16


def test_scripted_reply_sees_the_request(fake):
    fake.reply = lambda body: f"I was given {len(body['messages'])} messages."
    llm = resolve_llm(ollama_settings(fake.url))
    assert "".join(stream_text(llm, QUESTION, timeout_s=5)) == "I was given 2 messages."


def test_provider_ollama_says_how_to_start_it():
    url = closed_port_url()
    with pytest.raises(LLMError) as err:
        resolve_llm(ollama_settings(url, provider="ollama"))
    assert str(err.value) == (
        f'Ollama is not running at {url}: start it with `ollama serve`, or set llm.provider = "llamacpp"'
    )


def test_provider_ollama_missing_model_names_ollama_pull(fake):
    with pytest.raises(LLMError, match=r"Ollama has no model 'phi4': run `ollama pull phi4`"):
        resolve_llm(ollama_settings(fake.url, provider="ollama", ollama_model="phi4"))


def test_model_override_picks_builtin_or_a_named_ollama_model(fake):
    settings = ollama_settings(fake.url, provider="ollama")
    assert resolve_llm(settings, model_override="builtin").provider == "llamacpp"
    chosen = resolve_llm(settings, model_override="qwen2.5:7b")
    assert (chosen.provider, chosen.model_name) == ("ollama", "qwen2.5:7b")
    with pytest.raises(LLMError, match="ollama pull gemma3"):
        resolve_llm(ollama_settings(fake.url), model_override="gemma3")


def test_list_ollama_models(fake):
    assert list_ollama_models(ollama_settings(fake.url)) == ["llama3.2:latest", "qwen2.5:7b"]
    assert list_ollama_models(ollama_settings(closed_port_url())) == []


def test_list_ollama_models_is_bounded_when_the_server_never_answers():
    # A listening socket that never accepts: the TCP handshake succeeds, no reply ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        started = time.monotonic()
        assert list_ollama_models(LLMSettings(ollama_url=url, connect_timeout_s=0.5)) == []
        assert time.monotonic() - started < 3


# -- Ollama failures while answering ----------------------------------------------------------


def collect(llm, timeout_s=5.0):
    """Pieces received before the error, the error, and how long it took."""
    pieces, started = [], time.monotonic()
    with pytest.raises(LLMError) as err:
        for piece in stream_text(llm, QUESTION, timeout_s=timeout_s):
            pieces.append(piece)
    return pieces, str(err.value), time.monotonic() - started


def test_ollama_gone_after_resolve(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.close()
    _, message, elapsed = collect(llm)
    assert message.startswith(f"Ollama is not running at {fake.url}: start it with `ollama serve`")
    assert elapsed < 5


def test_ollama_slow_times_out(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.fault, fake.slow_s = "slow", 30
    _, message, elapsed = collect(llm, timeout_s=0.5)
    assert "sent nothing for 0.5 s" in message and "llm.timeout_s" in message
    assert elapsed < 3


def test_ollama_client_timeout_is_explained_too(fake):
    llm = resolve_llm(LLMSettings(ollama_url=fake.url, timeout_s=0.5, connect_timeout_s=1))
    fake.fault, fake.slow_s = "slow", 30
    _, message, elapsed = collect(llm, timeout_s=10)  # the HTTP read timeout fires first
    assert "did not answer in time" in message and "llm.timeout_s" in message
    assert elapsed < 3


def test_ollama_cut_midway(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.fault = "cut"
    pieces, message, elapsed = collect(llm)
    assert pieces == ["Paris", " is"]  # what arrived before the cut was shown
    assert "stopped in the middle of the answer" in message
    assert elapsed < 5


def test_ollama_stream_that_ends_without_done(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.fault = "truncate"
    pieces, message, _ = collect(llm)
    assert pieces == ["Paris", " is"] and "stopped in the middle of the answer" in message


def test_ollama_malformed_response(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.fault = "malformed"
    _, message, elapsed = collect(llm)
    assert "sent a response ragchat cannot read" in message and "llm.ollama_url" in message
    assert elapsed < 5


def test_ollama_error_midstream(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.fault = "error"
    _, message, _ = collect(llm)
    assert "an error was encountered while running the model" in message


def test_ollama_model_removed_after_resolve(fake):
    llm = resolve_llm(ollama_settings(fake.url))
    fake.models = []
    _, message, _ = collect(llm)
    assert message == "Ollama has no model 'llama3.2': run `ollama pull llama3.2`"


# -- the fake itself, checked with the real ollama client --------------------------------------


def test_fake_follows_the_ollama_client_types(fake):
    client = ollama.Client(host=fake.url, timeout=5)
    assert [m.model for m in client.list().models] == ["llama3.2:latest", "qwen2.5:7b"]
    assert client.show("llama3.2").details.format == "gguf"
    whole = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert whole.message.content == REPLY and whole.done and whole.done_reason == "stop" and whole.eval_count > 0
    parts = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content for p in parts) == REPLY and parts[-1].done and not parts[0].done
    one = client.embed(model="llama3.2", input="the red fox")
    many = client.embed(model="llama3.2", input=["the red fox", "a red fox", "stock prices fell"])
    assert one.embeddings[0] == many.embeddings[0] == hashed_embedding("the red fox", 64)
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731 - vectors are unit length
    assert cos(*many.embeddings[:2]) > cos(many.embeddings[0], many.embeddings[2])
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[])
    assert err.value.status_code == 404 and err.value.error == "model 'nope' not found"


# -- the gate --------------------------------------------------------------------------------


def test_gate_refuses_past_the_queue_and_lets_the_queue_through():
    gate = LLMGate(max_concurrent=1, max_queue=1)
    release = threading.Event()
    order: list[str] = []

    def work(name: str) -> None:
        with gate.slot():
            order.append(name)
            release.wait(5)

    running = threading.Thread(target=work, args=("first",))
    running.start()
    while not order:
        time.sleep(0.01)
    queued = threading.Thread(target=work, args=("queued",))
    queued.start()
    while gate._waiting < 1:
        time.sleep(0.01)

    with pytest.raises(BusyError, match=r"ragchat is busy answering other questions \(1 waiting\); try again in a moment"):
        with gate.slot():
            pass

    release.set()
    running.join(5)
    queued.join(5)
    assert order == ["first", "queued"]
    with gate.slot():  # free again
        pass


def test_gate_bounds_concurrency_under_load():
    gate = LLMGate(max_concurrent=2, max_queue=20)
    active, peak, done = [0], [0], []
    lock = threading.Lock()

    def work() -> None:
        with gate.slot():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1
                done.append(1)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(done) == 12 and peak[0] == 2
