"""What every provider builds on: the resolved model, a chat model defined by its stream, and the
LangChain client of an OpenAI-compatible server (``langchain_openai``, imported on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ragchat.core.settings import LLMSettings


def estimate_tokens(text: str) -> int:
    """A tokenizer-free guess of a text's length in tokens: about 4 UTF-8 bytes per token holds for
    English with current tokenizers and for Chinese (3 bytes a character) with multilingual ones."""
    return -(-len(text.encode("utf-8")) // 4)


@dataclass
class ResolvedLLM:
    """The chat model to use, and what to tell the person about the choice."""

    model: BaseChatModel
    provider: str  # "ollama" | "openai" | "llamacpp" (built-in)
    model_name: str
    notice: str | None = None
    base_url: str = ""  # the server's URL(s), for error messages
    count_tokens: Callable[[str], int] = estimate_tokens  # the model's own tokenizer where ragchat has it


class StreamingChatModel(BaseChatModel):
    """A chat model defined by its ``_stream``; a whole answer is the stream joined."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        text, metadata = [], {}
        for chunk in self._stream(messages, stop, run_manager, **kwargs):
            text.append(chunk.text)
            metadata.update(chunk.message.response_metadata)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="".join(text), response_metadata=metadata))])

    @staticmethod
    def _relay(chunk, run_manager) -> ChatGenerationChunk:
        out = ChatGenerationChunk(message=chunk)
        if run_manager and chunk.text:
            run_manager.on_llm_new_token(str(chunk.text), chunk=out)
        return out


def openai_chat_model(settings: LLMSettings, base_url: str, api_key: str, model: str) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key or "none",  # the client insists on one; servers without keys ignore it
        temperature=settings.temperature,
        max_tokens=settings.max_answer_tokens,
        seed=0 if settings.temperature == 0 else None,
        timeout=http_timeout(settings),
        max_retries=0,  # a retry would ask twice; moving to another server is FailoverChatModel's job
        stream_usage=False,
    )


def http_timeout(settings: LLMSettings):
    import httpx

    # A read timeout bounds the wait for each streamed piece, not the whole answer.
    return httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
