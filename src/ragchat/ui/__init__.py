"""The web app (stage 7): a Gradio page mounted on a FastAPI app, over the same Engine as the CLI.

- ``server``: ``serve(settings)`` and ``build_app(engine)``: the FastAPI app, our own HTTP routes
  (originals, page images, health), the HTTP API (``ragchat.api``) and login in front of them all;
- ``layout``: the Blocks layout and the wiring of events to ``WebApp``;
- ``webapp``: ``WebApp``, the page's callbacks, made of ``library`` (documents and ingestion),
  ``conversations`` (saved conversations, the sources panel) and ``chat`` (answers, the model
  picker);
- ``session``: who is asking, and the per-tab state;
- ``render``: safe Markdown and the HTML of the sources, viewer and progress panels;
- ``pageview``: page images with a cited passage highlighted;
- ``style``: CSS, theme and the few lines of browser code.

Left out: retrieval, prompting and LLM logic (the callbacks only call the engine), background
ingestion (``ragchat.ingest.jobs``, shared with the API) and login (``ragchat.auth``).

Nothing is imported here, so ``import ragchat.ui`` stays cheap.
"""
