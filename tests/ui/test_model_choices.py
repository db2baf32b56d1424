"""The model picker (Settings tab, side by side) lists a choice for every configured provider."""

from __future__ import annotations

import pytest
from conftest import make_settings

from ragchat.engine import Engine
from ragchat.ui.chat import ChatCallbacks
from ragchat.ui.session import AUTO


class Picker(ChatCallbacks):
    def __init__(self, engine):
        self.engine, self.settings = engine, engine.settings


@pytest.mark.parametrize("llm", [
    {"provider": "auto"}, {"provider": "ollama", "ollama_url": "http://127.0.0.1:9"}, {"provider": "llamacpp"},
    {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "qwen2.5-0.5b"},
])
def test_every_provider_has_its_configured_choice_first(tmp_path, llm):
    with Engine(make_settings(tmp_path / "store", llm=llm)) as engine:
        choices = Picker(engine).model_choices()
    assert choices[0][1] == AUTO and len(choices) > 1, choices  # then the built-in models
    if llm["provider"] == "openai":
        assert "qwen2.5-0.5b" in choices[0][0]
