"""ragchat: chat with your own documents, on your own machine.

The packages follow the data, lowest stage first (docs/ARCHITECTURE.md); a package imports only
its own stage and the ones below it (tests/test_layout.py):

- ``core/``      settings, errors, the text rules (analyzer, sentences, CJK, citation marks), access naming
- ``store/``     the catalog (SQL), the vectors (Chroma) and the BM25 index: what is kept on disk
- ``embed/``     text -> vectors: the bundled embedders (EmbeddingGemma, MiniLM) and Ollama's
- ``llm/``       text -> text: Ollama, OpenAI-compatible servers, the built-in model, failover
- ``ingest/``    files -> chunks in the store: detect, decode, one module per format, OCR, chunking,
                 the isolated parser, jobs, the shared queue, watched folders
- ``auth/``      users, passwords, API keys, sessions and the login pages
- ``retrieve/``  question -> ranked passages: dense + BM25 fusion, scoped to what a user may read
- ``answer/``    passages -> a streamed, cited answer: prompt, citations, grounding, quotes, refusals
- ``engine.py``  the one place the parts are built from the settings and wired together
- ``eval/``      measured retrieval and answer quality (``ragchat eval``)
- ``api/``       REST (/api/v1) and OpenAI-compatible (/v1) routes
- ``ui/``        the Gradio web page and the server that carries page, API and login
- ``cli.py``     the ``ragchat`` command
"""
