"""The web app: a Gradio page mounted on a FastAPI app, over the same Engine as the CLI.

- ``server.py``: ``serve(settings)`` and ``build_app(engine)``; our own HTTP routes
- ``layout.py``: the Blocks layout and the wiring of events
- ``callbacks.py``: what each event does (calls the engine; no retrieval or LLM logic)
- ``jobs.py``: ingestion in a background thread, with per-file progress
- ``render.py``: safe Markdown and the HTML of the sources, viewer and progress panels
- ``style.py``: CSS, theme and the few lines of browser code

Nothing is imported here, so ``import ragchat.ui`` stays cheap.
"""
