"""The built-in model: a GGUF file run in-process by llama.cpp's own server, from the prebuilt
``xllamacpp`` wheel (imported on first use).

``BuiltinServer`` serves one model on a loopback port with a key made for this process;
``BuiltinChatModel`` starts it on first use and asks it like any OpenAI-compatible server.
``serve_builtin`` serves it to other processes (`ragchat llm-server`). Which file is used comes from
``llm.gguf_path`` or the bundled models (``ragchat.llm.models``).
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.outputs import ChatGenerationChunk

from ragchat.core.errors import LLMError
from ragchat.core.settings import LLMSettings, user_cache_dir
from ragchat.llm.chat_model import ResolvedLLM, StreamingChatModel, openai_chat_model
from ragchat.llm.models import builtin_name, model_path


def _gguf_path(settings: LLMSettings) -> Path:
    if not settings.gguf_path:
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
    server (``openai_chat_model``) while nobody else on the machine can use it. The server is
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


class BuiltinChatModel(StreamingChatModel):
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
        client = openai_chat_model(self.settings, f"{server.url}/v1", server.key, Path(self.path).name)
        for chunk in client.stream(messages, stop=stop, **kwargs):
            yield self._relay(chunk, run_manager)


def resolve_builtin(settings: LLMSettings, notice: str | None = None) -> ResolvedLLM:
    path = _gguf_path(settings)
    model = BuiltinChatModel(settings=settings, path=str(path))
    return ResolvedLLM(model=model, provider="llamacpp", model_name=path.name, notice=notice, count_tokens=model.count_tokens)
