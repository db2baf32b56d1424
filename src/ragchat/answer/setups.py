"""A set-up for the side-by-side view: a model choice and, optionally, retrieval settings.

``Setup.options()`` is what ``ChatEngine.stream`` takes for the model, the search mode and the
number of sources. ``key()`` names the set-up in the catalog's votes and the win-rate table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragchat.answer.engine import ChatOptions

MODES = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class Setup:
    model: str | None = None  # a ChatOptions.model value; None: the configured provider
    mode: str | None = None  # hybrid | dense | lexical; None: retrieval.mode
    top_k: int | None = None  # sources given to the model; None: the chat's default

    def __post_init__(self):
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"retrieval mode must be one of {', '.join(MODES)}")

    def key(self, resolved: str = "") -> str:
        """The set-up's name in votes: "builtin:qwen2.5-0.5b, lexical, 2 sources"; the automatic choice
        names the model it ``resolved`` to when known: "auto (SmolLM2-135M)"."""
        parts = [self.model or (f"auto ({resolved})" if resolved else "auto")]
        if self.mode:
            parts.append(self.mode)
        if self.top_k:
            parts.append(f"{self.top_k} source{'s' if self.top_k != 1 else ''}")
        return ", ".join(parts)

    def options(self) -> ChatOptions:
        return ChatOptions(top_k=self.top_k or None, model=self.model, mode=self.mode)
