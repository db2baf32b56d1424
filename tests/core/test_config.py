"""Settings precedence (flags > env > file > defaults) and errors that name the key."""

from pathlib import Path

import pytest

from conftest import REPO
from ragchat.core.settings import load_settings
from ragchat.core.errors import ConfigError


@pytest.fixture
def toml(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text('store = "from_file"\n[llm]\nprovider = "ollama"\ntemperature = 0.5\n')
    return p


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.toml here
    monkeypatch.delenv("RAGCHAT_EMBEDDING__MODEL", raising=False)  # conftest's test embedder
    s = load_settings()
    assert s.store == Path("docs_store")
    assert s.llm.provider == "auto"
    assert s.embedding.model == "auto"


def test_auto_fusion_weight_and_gates_follow_the_embedder(monkeypatch):
    from ragchat.core.settings import ChatSettings, RetrievalSettings

    minilm, gemma = "sentence-transformers:all-MiniLM-L6-v2", "sentence-transformers:embeddinggemma-300m"
    auto = RetrievalSettings()
    assert (auto.lexical_weight_for(minilm), auto.lexical_weight_for(gemma), auto.lexical_weight_for("ollama:bge-m3")) == (1.0, 0.3, 1.0)
    assert RetrievalSettings(lexical_weight=0.7).lexical_weight_for(gemma) == 0.7
    assert ChatSettings().similarity_gates(gemma) == (0.45, 0.5)
    assert ChatSettings().similarity_gates(gemma, chinese=True) == (0.4, 0.5)
    monkeypatch.setenv("RAGCHAT_RETRIEVAL__LEXICAL_WEIGHT", "11")
    with pytest.raises(ConfigError, match="retrieval.lexical_weight"):
        load_settings()


def test_file_then_env_then_flags(monkeypatch, toml):
    s = load_settings(toml)
    assert (s.store, s.llm.provider, s.llm.temperature) == (Path("from_file"), "ollama", 0.5)
    monkeypatch.setenv("RAGCHAT_LLM__PROVIDER", "llamacpp")
    monkeypatch.setenv("RAGCHAT_STORE", "from_env")
    s = load_settings(toml)
    assert (s.store, s.llm.provider, s.llm.temperature) == (Path("from_env"), "llamacpp", 0.5)
    s = load_settings(toml, store=Path("from_flag"))
    assert s.store == Path("from_flag")


def test_wrong_value_names_key_and_choices(monkeypatch, toml):
    monkeypatch.setenv("RAGCHAT_LLM__PROVIDER", "gpt4")
    with pytest.raises(ConfigError) as e:
        load_settings(toml)
    msg = str(e.value)
    assert "llm.provider" in msg and "'auto'" in msg and "'llamacpp'" in msg and "RAGCHAT_LLM__PROVIDER" in msg


def test_unknown_key_and_bad_number(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[retrieval]\ntop_kk = 3\n")
    with pytest.raises(ConfigError, match="retrieval.top_kk: unknown setting"):
        load_settings(p)
    p.write_text("[retrieval]\ntop_k = -1\n")
    with pytest.raises(ConfigError, match="retrieval.top_k"):
        load_settings(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_builtin_model_auto_is_the_default_and_validates(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.toml here
    assert load_settings().llm.builtin_model == "auto"
    monkeypatch.setenv("RAGCHAT_LLM__BUILTIN_MODEL", "qwen2.5-1.5b")
    assert load_settings().llm.builtin_model == "qwen2.5-1.5b"
    (tmp_path / "config.toml").write_text('[llm]\nbuiltin_model = "auto"\n')
    monkeypatch.delenv("RAGCHAT_LLM__BUILTIN_MODEL")
    assert load_settings(tmp_path / "config.toml").llm.builtin_model == "auto"
    monkeypatch.setenv("RAGCHAT_LLM__BUILTIN_MODEL", "qwen9")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert "llm.builtin_model" in str(e.value) and "'auto'" in str(e.value) and "'qwen2.5-0.5b'" in str(e.value)


def test_the_shipped_config_uses_auto():
    import tomllib

    shipped = REPO / "config.toml"
    assert tomllib.loads(shipped.read_text(encoding="utf-8"))["llm"]["builtin_model"] == "auto"
