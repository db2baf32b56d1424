"""The language models that write answers (stage 1): choosing one, running the built-in one,
streaming its text and bounding how many generations run at once.

- ``providers``: ``resolve_llm`` picks Ollama, an OpenAI-compatible server or the built-in model
  from the settings, and says why when it falls back;
- ``chat_model``: ``ResolvedLLM``, the chat model defined by its stream, the OpenAI-compatible client;
- ``builtin``: the built-in model, a GGUF file served in-process by llama.cpp (``xllamacpp``);
- ``models``: the bundled GGUF models, where their files are, and which one suits this machine;
- ``failover``: several OpenAI-compatible servers as one chat model;
- ``streaming``: ``stream_text``, a model's text with a bounded wait, every failure an ``LLMError``;
- ``gate``: ``LLMGate``, how many generations run and wait at once.

Left out: prompts, retrieval and citations (``ragchat.answer``), embeddings (``ragchat.embed``).
Only this package imports ``xllamacpp``, ``langchain_openai``, ``openai``, ``langchain_ollama`` or
``ollama``, on first use.

A new LLM provider: build its LangChain chat model in a module here (or in ``providers`` when it is
a few lines), return a ``ResolvedLLM`` for it from ``resolve_llm`` under a new ``llm.provider``
value (``core.settings.LLMSettings``), and teach ``streaming._explain`` its errors.
"""
