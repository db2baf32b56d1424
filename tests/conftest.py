"""Shared test helpers: the fixture files (tests/fixtures, see its README for sources and licences),
the environment of every process a test starts, the real CLI, free ports, waiting for a server's
health, and the web app launched for real. The tests read nothing outside the repository.

tests/ mirrors the packages (tests/ingest/, tests/answer/, ...); pytest puts this folder on the
path (``pythonpath`` in pyproject.toml), so every test imports these helpers as ``from conftest import``.
"""

import os as _os
import socket as _socket
import subprocess as _subprocess
import sys as _sys
import time as _time
from pathlib import Path

import httpx
import pytest

from ragchat.core.settings import BUNDLED_EMBEDDER, load_settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
DATA = TESTS / "data"
PDFS = FIXTURES / "pdfs"
ZH_TEXT = FIXTURES / "text" / "zh_llm_weekly.txt"  # a Chinese newsletter about open LLMs
# The built-in model the tests run: the smallest bundled one, so the suite stays fast. The default
# model (config.LLMSettings.builtin_model) answers in tests/eval/test_answer_eval.py.
TEST_MODEL = "smollm2-135m"
# The embedder the tests run: the bundled English MiniLM, three times faster to ingest with, and the
# model the suite's expectations were written for. Every process a test starts inherits it. The
# default multilingual embedder (EmbeddingGemma) runs in tests/retrieve/test_multilingual.py.
TEST_EMBEDDER = BUNDLED_EMBEDDER
_os.environ["RAGCHAT_EMBEDDING__MODEL"] = TEST_EMBEDDER


def child_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of a process a test starts: none of the caller's RAGCHAT_* settings but the
    test embedder, offline, no analytics; ``extra`` adds or overrides."""
    env = {k: v for k, v in _os.environ.items() if not k.startswith("RAGCHAT_")}
    env.update({"RAGCHAT_EMBEDDING__MODEL": TEST_EMBEDDER, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    return {**env, **(extra or {})}


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> _subprocess.CompletedProcess:
    """The real ``ragchat`` command in a child process (``child_env(env)``), its output captured.
    Run it from a folder without a config.toml (``cwd``) so the repository's is not read."""
    return _subprocess.run([_sys.executable, "-m", "ragchat.cli", *args], cwd=cwd, env=child_env(env),
                           capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A loopback port nobody listens on now (bind to port 0; a race is possible but rare)."""
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, timeout: float, proc: _subprocess.Popen | None = None, log=lambda: "",
                       headers: dict | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` exits, with ``log()`` in the message."""
    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        _time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log()}")


def make_settings(store: Path, **overrides):
    """Settings for a test store: the built-in LLM (tests never depend on Ollama), short answers."""
    llm = {"provider": "llamacpp", "builtin_model": TEST_MODEL, "max_answer_tokens": 64, **overrides.pop("llm", {})}
    embedding = {"model": TEST_EMBEDDER, **overrides.pop("embedding", {})}
    return load_settings(store=store, llm=llm, embedding=embedding, **overrides)


def ask_and_save(engine, owner: str | None, question: str, cid: str | None = None) -> tuple[str, int]:
    """Ask through the engine's chat as the page does, saving the question and the answer in a
    conversation (``cid``'s, or a new one); (conversation id, the answer's index in it)."""
    from ragchat.answer.engine import ChatOptions

    cid, history = engine.conversations.ask(cid, question, owner)
    engine.conversations.save_question(cid, question)
    final = None
    for event in engine.chat.stream(question, history, engine.filters_for(owner), ChatOptions()):
        final = event.answer if event.kind == "done" else final
    engine.conversations.save_answer(cid, final)
    return cid, len(engine.catalog.messages(cid)) - 1


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for key in [k for k in _os.environ if k.startswith("RAGCHAT_") and k != "RAGCHAT_EMBEDDING__MODEL"]:
        monkeypatch.delenv(key)
    return make_settings(tmp_path / "store")


@pytest.fixture
def engine(settings):
    from ragchat.engine import Engine

    eng = Engine(settings)
    yield eng
    eng.close()


# ---- the web app, launched for real (tests/ui/, tests/api/, tests/auth/) ------------------------


class AppServer:
    """`ragchat serve` in a subprocess on a free loopback port, over a store of its own.

    By default the built-in LLM answers (never Ollama), briefly; ``env`` adds RAGCHAT_* settings.
    The working directory is a temporary folder, so the repository's config.toml is not read."""

    def __init__(self, store: Path, workdir: Path, max_answer_tokens: int = 48, env: dict | None = None):
        self.store, self.workdir = store, workdir
        self.max_answer_tokens = max_answer_tokens
        self.env = env or {}
        self.port = 0
        self.proc: _subprocess.Popen | None = None
        self.log = workdir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 120) -> "AppServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = child_env({
            "RAGCHAT_LLM__PROVIDER": "llamacpp",
            "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL,
            "RAGCHAT_LLM__MAX_ANSWER_TOKENS": str(self.max_answer_tokens),
            "RAGCHAT_LLM__OLLAMA_URL": "http://127.0.0.1:9",  # nothing listens there
            "GRADIO_TEMP_DIR": str(self.workdir / "gradio"),
            **self.env,
        })
        with open(self.log, "ab") as log:
            self.proc = _subprocess.Popen(
                [_sys.executable, "-m", "ragchat.cli", "serve", "--store", str(self.store), "--port", str(self.port)],
                cwd=self.workdir, env=env, stdout=log, stderr=_subprocess.STDOUT,
            )
        wait_until_healthy(self.url + "ragchat/health", timeout, self.proc, self.log_tail)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except _subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def launch_app(tmp_path_factory):
    """launch_app(store=None, env=None) -> a started AppServer; every server is stopped at the end."""
    servers: list[AppServer] = []

    def launch(store: Path | None = None, **kw) -> AppServer:
        work = tmp_path_factory.mktemp("webapp")
        server = AppServer(store or work / "store", work, **kw)
        servers.append(server)
        return server.start()

    yield launch
    for s in servers:
        s.stop()


# ---- shared mode's real services (tests/services.py) ------------------------------------------


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """PostgreSQL, a Chroma server and an OpenAI-compatible LLM server on loopback ports, for the session."""
    from services import Services

    started = Services(tmp_path_factory.mktemp("services"))
    try:
        yield started.start()
    finally:
        started.stop()
