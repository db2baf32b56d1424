"""The page: Gradio Blocks layout and the wiring of events to ``WebApp`` callbacks. Nothing else.

Left: conversations. Middle: the chat. Right: adding documents (with per-file progress), the
sources of the answer, and the passage viewer. Tabs hold the document library and the settings.

Every event a client may call has an ``api_name``; JSON endpoints for scripts and tests are
declared with ``gr.api``. See ``server.py`` for the list.
"""

from __future__ import annotations

import gradio as gr

from ragchat.ui import render
from ragchat.ui.compare import build_compare_tab
from ragchat.ui.evaluation import build_evaluation_tab
from ragchat.ui.library import WELCOME
from ragchat.ui.retrieval_view import build_retrieval_tab
from ragchat.ui.session import ALL, AUTO, new_state
from ragchat.ui.webapp import WebApp
from ragchat.ui.style import SOURCES_JS, VIEWER_JS

LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
]
CHAT_CONCURRENCY = 32  # chat generators that may run at once; the LLM itself is bounded by engine.gate


def build_blocks(app: WebApp, warmup=None) -> gr.Blocks:
    """warmup: a ``server.Warmup``; the sidebar says "Loading models…" until it is done."""
    settings = app.settings
    with gr.Blocks(title="ragchat", analytics_enabled=False, fill_width=True) as demo:
        state = gr.State(new_state())
        remembered = gr.BrowserState("", storage_key="ragchat-open-conversation")
        timer = gr.Timer(1.0, active=False)

        # ---- conversations ---------------------------------------------------------------------
        with gr.Sidebar(open=True, width=270, elem_id="rc-sidebar"):
            gr.HTML('<div class="rc-brand"><span class="rc-logo">◆</span> ragchat</div>'
                    '<div class="rc-tagline">Chat with your documents, privately.</div>')
            if warmup is not None:  # "Loading models…" until the background warm-up is done
                loading = gr.HTML(lambda: _loading_html(warmup), elem_id="rc-loading")
                loading_timer = gr.Timer(1.0)
                loading_timer.tick(lambda: (_loading_html(warmup), gr.Timer(active=warmup.state == "loading")),
                                   None, [loading, loading_timer], api_visibility="private", queue=False,
                                   show_progress="hidden")
            new_btn = gr.Button("+  New chat", variant="primary", elem_id="rc-new-chat")
            conversations = gr.Radio(label="Conversations", choices=[], elem_id="rc-conversations", container=False)
            with gr.Accordion("Rename or delete", open=False, elem_id="rc-chat-tools"):
                title_box = gr.Textbox(label="Title", placeholder="A short title", max_lines=1)
                with gr.Row():
                    rename_btn = gr.Button("Rename", size="sm")
                    delete_chat_btn = gr.Button("Delete chat", size="sm", variant="stop")

        # ---- header --------------------------------------------------------------------------
        with gr.Row(elem_id="rc-header", equal_height=True):
            gr.HTML('<div class="rc-title">Chat with your documents</div>', elem_id="rc-title")
            badge = gr.HTML('<div class="rc-badge rc-badge-off">Checking the model…</div>', elem_id="rc-badge")
        notice = gr.Markdown(visible=False, elem_id="rc-notice")

        with gr.Tabs(elem_id="rc-tabs"):
            # ---- chat ------------------------------------------------------------------------
            with gr.Tab("Chat", id="chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=420):
                        chatbot = gr.Chatbot(
                            elem_id="rc-chat", height="calc(100vh - 330px)", min_height=360, show_label=False,
                            placeholder=WELCOME, buttons=["copy", "copy_all"], feedback_options=("Like", "Dislike"),
                            latex_delimiters=LATEX, layout="bubble", autoscroll=True, sanitize_html=True,
                            allow_tags=False,
                        )
                        with gr.Row(elem_id="rc-input-row", equal_height=True):
                            message = gr.Textbox(
                                placeholder="Ask a question about your documents…", show_label=False, scale=8,
                                lines=1, max_lines=6, autofocus=True, elem_id="rc-message", container=False,
                            )
                            send_btn = gr.Button("Send", variant="primary", scale=0, min_width=90, elem_id="rc-send")
                            stop_btn = gr.Button("Stop", scale=0, min_width=90, elem_id="rc-stop")
                        with gr.Row(elem_id="rc-chat-tools-row", equal_height=True):
                            regen_btn = gr.Button("↻ Regenerate", size="sm", scale=0, min_width=130,
                                                  elem_id="rc-regenerate")
                            scope = gr.Dropdown(
                                choices=[("Search in all documents", ALL)], value=[ALL], multiselect=True, show_label=False,
                                allow_custom_value=True, container=False, scale=4, elem_id="rc-scope",
                            )
                        with gr.Group(visible=False, elem_id="rc-feedback") as feedback_form:
                            note = gr.Textbox(label="What was good or wrong? (optional)", max_lines=4,
                                              elem_id="rc-feedback-note")
                            correction = gr.Textbox(label="The right answer (makes this question a test question)",
                                                    max_lines=6, elem_id="rc-feedback-correction")
                            note_btn = gr.Button("Save note", size="sm", elem_id="rc-feedback-save")
                    with gr.Column(scale=2, min_width=320, elem_id="rc-side"):
                        upload = gr.File(
                            label="Add documents", file_count="multiple", type="filepath",
                            height=110, elem_id="rc-upload",
                        )
                        progress = gr.HTML("", elem_id="rc-progress")
                        sources = gr.HTML(render.sources_html([], []), elem_id="rc-sources-panel", js_on_load=SOURCES_JS,
                                          label="Sources")
                        viewer = gr.HTML(render.viewer_placeholder(), elem_id="rc-viewer-panel", js_on_load=VIEWER_JS,
                                         label="Passage")

            # ---- library ---------------------------------------------------------------------
            with gr.Tab("Documents", id="documents"):
                with gr.Row(equal_height=True):
                    upload_lib = gr.File(label="Add documents", file_count="multiple", type="filepath", height=96,
                                         scale=3, elem_id="rc-upload-library")
                    collection = gr.Dropdown(
                        label="Add to collection", choices=[settings.collection], value=settings.collection,
                        allow_custom_value=True, scale=1, info="Type a new name to start a collection",
                    )
                library = gr.Dataframe(
                    headers=render.LIBRARY_HEADERS, value=[], interactive=False, wrap=True, elem_id="rc-library",
                    label="Library (click a row to select it)", column_widths=["28%", "11%", "7%", "7%", "9%", "14%", "24%"],
                )
                with gr.Row(equal_height=True):
                    picked = gr.Dropdown(label="Selected documents", choices=[], value=[], multiselect=True, scale=4,
                                         allow_custom_value=True,
                                         elem_id="rc-picked")
                    with gr.Column(scale=2, min_width=260):
                        with gr.Row():
                            delete_btn = gr.Button("Delete selected", variant="stop", size="sm", elem_id="rc-delete-docs")
                            reindex_btn = gr.Button("Re-index selected", size="sm", elem_id="rc-reindex-docs")
                        with gr.Row():
                            rebuild_btn = gr.Button("Rebuild whole index", size="sm")
                            refresh_btn = gr.Button("Refresh", size="sm")
                progress_lib = gr.HTML("")
                clear_btn = gr.Button("Clear finished uploads from the list", size="sm", variant="secondary")

            build_compare_tab(app, scope)  # ---- side by side (ui/compare.py) ----------------------
            build_evaluation_tab(app)  # ---- evaluation (ui/evaluation.py) ---------------------

            # ---- settings --------------------------------------------------------------------
            with gr.Tab("Settings", id="settings"):
                with gr.Row(equal_height=False):
                    model = gr.Dropdown(
                        label="Model", choices=[("Automatic", AUTO)], value=AUTO, scale=4, allow_custom_value=True,
                        info="The built-in models, and the installed Ollama models when Ollama runs", elem_id="rc-model",
                    )
                    models_btn = gr.Button("↻ Refresh models", scale=0, min_width=160, size="sm",
                                           elem_id="rc-refresh-models")
                with gr.Row():
                    temperature = gr.Slider(0.0, 1.5, value=settings.llm.temperature, step=0.05, label="Temperature",
                                            info="0 gives the same answer every time; higher is more varied")
                    top_k = gr.Slider(0, 12, value=0, step=1, label="Number of sources",
                                      info="Passages given to the model for each question; 0: automatic "
                                      f"({settings.chat.builtin_sources or settings.retrieval.top_k} for the built-in "
                                      f"model, {settings.retrieval.top_k} otherwise)")
                system_prompt = gr.Textbox(label="System prompt", value=settings.chat.system_prompt, lines=5,
                                           info="Instructions given to the model before the sources")
                reset_btn = gr.Button("Reset settings", size="sm")

            build_retrieval_tab(app, sources=top_k, state=state)  # ---- retrieval test (retrieval_view.py)

        # hidden: let API clients open a source by number and a conversation by id (the page uses clicks)
        source_n = gr.Number(visible=False, precision=0)
        show_source_btn = gr.Button(visible=False)
        open_cid = gr.Textbox(visible=False)
        open_btn = gr.Button(visible=False)

        # ---- events ------------------------------------------------------------------------------
        chat_inputs = [state, scope, model, temperature, top_k, system_prompt]
        chat_outputs = [message, chatbot, state, sources, conversations, badge, notice]
        chat_kw = dict(concurrency_limit=CHAT_CONCURRENCY, concurrency_id="chat", show_progress="hidden")
        ask_ev = send_btn.click(app.ask, [message, *chat_inputs], chat_outputs, api_name="ask", **chat_kw)
        submit_ev = message.submit(app.ask, [message, *chat_inputs], chat_outputs, api_visibility="private", **chat_kw)
        regen_ev = regen_btn.click(app.regenerate, chat_inputs, chat_outputs, api_name="regenerate", **chat_kw)
        for ev in (ask_ev, submit_ev, regen_ev):
            ev.then(lambda s: (s or {}).get("cid") or "", state, remembered, api_visibility="private", queue=False)
        for trigger in (send_btn.click, message.submit, regen_btn.click):  # a new answer: the old passage goes
            trigger(render.viewer_placeholder, None, viewer, api_visibility="private", queue=False, show_progress="hidden")
        stop_btn.click(None, None, None, cancels=[ask_ev, submit_ev, regen_ev], api_name="stop")

        sources.click(app.source_clicked, [state], viewer, api_visibility="private", show_progress="hidden")
        show_source_btn.click(app.show_source, [source_n, state], viewer, api_name="show_source")
        chatbot.select(app.select_message, [state], [state, sources, viewer], api_visibility="private")
        chatbot.like(app.rate, [state], [state, feedback_form, note, correction], api_visibility="private")
        note_btn.click(app.add_note, [note, correction, state], feedback_form, api_visibility="private")

        library_outputs = [library, picked, scope, collection, chatbot]
        for box in (upload, upload_lib):
            box.upload(app.upload, [box, collection], [box, progress, timer],
                       api_name="upload" if box is upload else None,
                       api_visibility="public" if box is upload else "private", show_progress="hidden")
        timer.tick(app.poll, [picked], [progress, *library_outputs, timer], api_visibility="private",
                   show_progress="hidden", concurrency_limit=None)
        progress.change(lambda html: html, progress, progress_lib, api_visibility="private", queue=False,
                        show_progress="hidden")
        clear_btn.click(app.clear_progress, None, progress, api_visibility="private")

        library.select(app.pick_row, [picked], picked, api_visibility="private")
        delete_btn.click(app.delete_documents, [picked], [progress, *library_outputs, timer], api_name="delete_documents")
        reindex_btn.click(app.reindex_documents, [picked], [progress, timer], api_name="reindex_documents")
        rebuild_btn.click(app.rebuild_index, None, [progress, timer], api_name="rebuild_index")
        refresh_btn.click(app.library_view, [picked], library_outputs, api_name="library")
        if app.watchers is not None:  # the library follows what the watched folders do (ragchat.ingest.watch)
            seen = gr.State(-1)
            gr.Timer(2.0).tick(app.watch_tick, [picked, seen], [*library_outputs, seen], api_visibility="private",
                               show_progress="hidden", concurrency_limit=None)

        conv_outputs = [chatbot, state, sources, viewer, title_box, remembered]
        new_btn.click(app.new_conversation, [state], [*conv_outputs, conversations], api_name="new_chat")
        conversations.input(app.open_conversation, [conversations, state], conv_outputs, api_visibility="private")
        open_btn.click(app.open_conversation, [open_cid, state], conv_outputs, api_name="open_chat")
        rename_btn.click(app.rename_conversation, [title_box, state], conversations, api_name="rename_chat")
        title_box.submit(app.rename_conversation, [title_box, state], conversations, api_visibility="private")
        delete_chat_btn.click(app.delete_conversation, [state], [*conv_outputs, conversations], api_name="delete_chat")

        model.change(app.model_status, [model, temperature], [badge, notice], api_visibility="private")
        models_btn.click(app.refresh_models, [model], [model, badge, notice], api_name="models")
        reset_btn.click(lambda: (settings.llm.temperature, 0, settings.chat.system_prompt, AUTO),
                        None, [temperature, top_k, system_prompt, model], api_visibility="private")

        demo.load(app.restore, [remembered, state], [*conv_outputs, conversations], api_visibility="private")
        demo.load(app.library_view, [picked], library_outputs, api_visibility="private")
        demo.load(app.refresh_models, [model], [model, badge, notice], api_visibility="private")
        demo.unload(app.forget_session)

        # ---- JSON endpoints for scripts and tests -------------------------------------------------
        gr.api(app.list_documents, api_name="list_documents")
        gr.api(app.ingest_status, api_name="ingest_status")
        gr.api(app.conversation_list, api_name="list_conversations")
        gr.api(app.conversation_messages, api_name="conversation_messages")
    return demo


def _loading_html(warmup) -> str:
    state = warmup.state
    if state == "loading" and warmup.first_start:
        return ('<div class="rc-badge rc-badge-off" title="Joining and converting the multilingual embedder, once per user; '
                'documents you add meanwhile wait for it">Preparing the search model (first start only, about 2 minutes)…</div>')
    if state == "loading":
        return ('<div class="rc-badge rc-badge-off" title="You can add documents meanwhile; a question waits for them">'
                'Loading models…</div>')
    if state == "failed":
        return '<div class="rc-badge rc-badge-off" title="See the app\'s log">Models failed to load</div>'
    return ""
