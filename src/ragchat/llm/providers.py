"""Which language model writes the answers: ``resolve_llm`` picks one from the settings, and says
why when it falls back.

Three providers, all streaming, all behind one LangChain chat-model interface:

- **Ollama** (``langchain_ollama.ChatOllama``) when a server is reachable and has the model;
- **openai**: any OpenAI-compatible server (vLLM, llama.cpp's server, LM Studio, Ollama's ``/v1``)
  through ``langchain_openai.ChatOpenAI``; several base URLs share the load and stand in for each
  other (``failover.FailoverChatModel``);
- **built-in** (``llamacpp``): a GGUF model run in-process by llama.cpp's own server
  (``builtin.py``), reached through the same OpenAI-compatible code path.

``langchain_ollama``, ``ollama`` and ``httpx`` are imported on first use.
"""

from __future__ import annotations

from ragchat.core.errors import LLMError
from ragchat.core.settings import LLMSettings
from ragchat.llm.builtin import resolve_builtin
from ragchat.llm.chat_model import ResolvedLLM, http_timeout, openai_chat_model
from ragchat.llm.failover import FailoverChatModel, short_error

BUILTIN = "builtin"  # the model_override value that picks the built-in model


# -- OpenAI-compatible servers (vLLM, llama.cpp's server, LM Studio, Ollama's /v1) ----------------


def _openai(settings: LLMSettings) -> ResolvedLLM:
    urls = settings.base_urls()
    if not urls or not settings.model:
        raise LLMError('llm.provider = "openai" needs llm.base_url (for example "http://127.0.0.1:8000/v1") and llm.model')
    models = [openai_chat_model(settings, url, settings.api_key, settings.model) for url in urls]
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
            down.append(f"{url} ({short_error(exc)})")
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


def not_running(url: str) -> str:
    return f"Ollama is not running at {url}: start it with `ollama serve`"


def no_model(name: str) -> str:
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
        client_kwargs={"timeout": http_timeout(settings)},
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
        return resolve_builtin(settings)
    if model_override is None and settings.provider == "openai":
        return _openai(settings)
    name = model_override or settings.ollama_model
    models = _probe_ollama(settings)
    problem = None
    if models is None:
        problem = not_running(settings.ollama_url)
    elif _canonical(name) not in {_canonical(m) for m in models}:
        problem = no_model(name)
    if problem is None:
        return _ollama(settings, name)
    if model_override is None and settings.provider == "auto":
        return resolve_builtin(settings, notice=f"{problem}. Using the built-in model.")
    if models is None:
        problem += ', or set llm.provider = "llamacpp"'
    raise LLMError(problem)
