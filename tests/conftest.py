"""Shared test helpers: where the shared data lives."""

from pathlib import Path

# The repository is /work/main and the shared data /work/shared, so two levels up from tests/.
SHARED = Path(__file__).resolve().parents[2] / "shared"


import pytest  # noqa: E402

from ragchat.config import load_settings  # noqa: E402

PDFS = SHARED / "data" / "pdfs"
SEEDS = SHARED / "samples" / "seeds"


def make_settings(store: Path, **overrides):
    """Settings for a test store: the built-in LLM (tests never depend on Ollama), short answers."""
    llm = {"provider": "llamacpp", "max_answer_tokens": 64, **overrides.pop("llm", {})}
    return load_settings(store=store, llm=llm, **overrides)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("RAGCHAT_")]:
        monkeypatch.delenv(key)
    return make_settings(tmp_path / "store")


@pytest.fixture
def engine(settings):
    from ragchat.engine import Engine

    eng = Engine(settings)
    yield eng
    eng.close()
