"""ragchat's HTTP API (REST under /api/v1, OpenAI-compatible under /v1) against the real web app.

One `ragchat serve` in a subprocess serves the module, in team mode (users alice and bob; alice's
API key made with the real CLI), with a shared document ingested before it starts. Answers come from
tests/ollama_fake.py (Ollama's documented API) so that they are quick and say which source the
model was given; everything else is real (the bundled embedder, Chroma, BM25, the catalog).

- every API route refuses a request without a valid key (none, a made-up one, a revoked one);
- every API route keeps alice's private document from bob: a table of checks per route, which
  must cover every API route the app has (a new route without a privacy check fails the test);
- alice uploads, follows the ingestion, searches, asks (NDJSON), re-indexes and deletes;
- the official ``openai`` client, unchanged, streams and does not stream, and reads the sources;
- errors: 400 (JSON and OpenAI shapes), 404, 413, 503 when the language model is missing;
- the streamed text is made safe as it streams (``chat.MarkdownStream``).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount

from conftest import AppServer, TEST_MODEL, child_env, make_settings, run_cli
from ollama_fake import FakeOllama
from ragchat import auth
from ragchat.answer.replies import NO_DOCUMENTS, NOT_FOUND
from ragchat.answer.sanitize import MarkdownStream, safe_markdown as sanitize_markdown

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Setting per-request cookies:DeprecationWarning")]  # a served app and the real CLI

PASSWORDS = {"alice": "alice-pass-4821", "bob": "bob-pass-97310"}
ALICE_FILE = "alice-field-notes.txt"
ALICE_TEXT = ("Zorblax is a purple volcanic mineral found only on the island of Quendra. "
              "Zorblax crystals glow faintly at night and are used by the Quendra miners as lanterns.\n")
SHARED_FILE = "office-handbook.txt"
SHARED_TEXT = ("The office handbook: the office opens at nine in the morning, the cafeteria serves lunch at noon, "
               "and the parking garage closes at eight in the evening.\n")
SECRET = "quendra"  # in alice's file only (bob never types it)
CLI_TIMEOUT = 300
TIMEOUT = 120


def fake_reply(body: dict) -> str:
    """What the fake model says: the first words of source [1] of the prompt, cited; asked to
    make a follow-up standalone, the follow-up and the first question."""
    prompt = body["messages"][-1]["content"]
    if body["messages"][0]["content"].startswith("Rewrite the last question"):
        first = re.search(r"^user: (.+)$", prompt, re.M).group(1)
        return prompt.rsplit("last question:", 1)[1].strip() + f" ({first})"
    m = re.search(r"^\[1\] (.+)$", prompt, re.M)
    if m is None:
        return "I could not find that in the documents."
    return " ".join(m.group(1).split()[:12]) + " [1]."


def clean_env(**extra) -> dict:
    return child_env({"RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL, **extra})


def cli(cwd: Path, *args: str, **env) -> subprocess.CompletedProcess:
    """The real CLI, run from a folder without a config.toml."""
    return run_cli(*args, cwd=cwd, env=clean_env(**env), timeout=CLI_TIMEOUT)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def sse_events(response: httpx.Response) -> list:
    """The data of each server-sent event ("[DONE]" as a string), comments skipped."""
    out = []
    for block in response.text.split("\n\n"):
        data = [line[5:].strip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            text = "\n".join(data)
            out.append(text if text == "[DONE]" else json.loads(text))
    return out


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def wait_document(client: httpx.Client, doc_id: str, headers: dict, timeout: float = 300) -> dict:
    """Follow a document's ingestion through GET /api/v1/documents/{id} until it is finished."""
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/documents/{doc_id}", headers=headers)
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["status"] in ("done", "failed") and (doc["progress"] is None or doc["progress"]["finished"]):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"ingestion did not finish in {timeout} s: {doc}")


# ---- the server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=["llama3.2"], reply=fake_reply) as server:
        yield server


@pytest.fixture(scope="module")
def team(tmp_path_factory, fake):
    """The store (users alice and bob, a shared document, keys), then the server over it."""
    root = tmp_path_factory.mktemp("api")
    store = root / "store"
    for name, password in PASSWORDS.items():
        done = cli(root, "--store", str(store), "users", "add", name, "--password", password)
        assert done.returncode == 0, done.stderr
    (root / SHARED_FILE).write_text(SHARED_TEXT)
    done = cli(root, "--store", str(store), "ingest", str(root / SHARED_FILE))
    assert done.returncode == 0, done.stdout + done.stderr

    # API keys with the real CLI: the key alone on stdout, shown once, never stored
    made = cli(root, "--store", str(store), "users", "key", "create", "alice", "--label", "tests")
    assert made.returncode == 0, made.stderr
    alice_key = made.stdout.strip()
    assert re.fullmatch(r"rck_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", alice_key), made.stdout
    assert "shown only this once" in made.stderr
    keys = {}
    for label in ("bob", "revoked"):
        made = cli(root, "--store", str(store), "users", "key", "create", "bob" if label == "bob" else "alice")
        keys[label] = made.stdout.strip()
    listed = cli(root, "--store", str(store), "users", "key", "list")
    assert listed.returncode == 0 and alice_key not in listed.stdout and keys["bob"] not in listed.stdout
    assert alice_key[4:16] in listed.stdout and "tests" in listed.stdout and "never" in listed.stdout
    revoked_id = keys["revoked"][4:16]
    done = cli(root, "--store", str(store), "users", "key", "revoke", revoked_id)
    assert done.returncode == 0 and revoked_id in done.stdout, done.stderr
    assert cli(root, "--store", str(store), "users", "key", "revoke", revoked_id).returncode == 1
    assert (store / "catalog.sqlite").read_bytes().find(alice_key.encode()) == -1, "only a hash is stored"

    server = AppServer(store, root / "server", max_answer_tokens=48, env={
        "RAGCHAT_LLM__PROVIDER": "ollama", "RAGCHAT_LLM__OLLAMA_URL": fake.url, "RAGCHAT_LLM__OLLAMA_MODEL": "llama3.2",
        "RAGCHAT_INGEST__MAX_FILE_MB": "1",
    })
    server.start(timeout=300)
    client = httpx.Client(base_url=server.url.rstrip("/"), timeout=TIMEOUT)
    try:
        yield {"server": server, "client": client, "alice": bearer(alice_key), "bob": bearer(keys["bob"]),
               "revoked": bearer(keys["revoked"]), "alice_key": alice_key, "root": root}
    finally:
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def alice_doc(team) -> dict:
    """alice uploads her file through the API and follows it until it is indexed."""
    client = team["client"]
    r = client.post("/api/v1/documents", headers=team["alice"], files={"file": (ALICE_FILE, ALICE_TEXT.encode())})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["collection"] == "~alice/default", body
    (doc,) = body["documents"]
    assert doc["name"] == ALICE_FILE and re.fullmatch(r"[0-9a-f]{32}", doc["id"]) and doc["url"].endswith(doc["id"])
    final = wait_document(client, doc["id"], team["alice"])
    assert final["status"] == "done" and final["chunks"] >= 1 and final["collection"] == "~alice/default", final
    job = client.get(body["job"]["url"], headers=team["alice"]).json()
    assert job["finished"] and [(f["source"], f["stage"]) for f in job["files"]] == [(ALICE_FILE, "done")], job
    return {"id": doc["id"], "job": body["job"]["id"]}


# ---- 1. no valid key, no data ----------------------------------------------------------------------


def iter_routes(routes, prefix=""):
    """(path, methods) of every route, inside mounts and included routers too."""
    for r in routes:
        if isinstance(r, Mount):
            sub = getattr(r.app, "routes", None)
            if sub:
                yield from iter_routes(sub, prefix + r.path)
            else:
                yield prefix + r.path + "/x", {"GET"}
        elif hasattr(r, "original_router"):  # FastAPI's included router
            yield from iter_routes(r.original_router.routes, prefix + r.include_context.prefix)
        elif hasattr(r, "path"):
            yield prefix + r.path, set(getattr(r, "methods", None) or {"GET"})


def api_routes(app) -> set[tuple[str, str]]:
    return {(m, path) for path, methods in iter_routes(app.routes) if path.startswith(("/api/", "/v1/"))
            for m in methods if m != "HEAD"}


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> set[tuple[str, str]]:
    """The API routes of the app as serve() builds it (on a store of its own, without users: the
    API is then open on loopback, like the page)."""
    from fastapi.testclient import TestClient

    from ragchat.engine import Engine
    from ragchat.ui.server import build_app

    tmp = tmp_path_factory.mktemp("api-routes")
    engine = Engine(make_settings(tmp / "store"))
    try:
        app, _ = build_app(engine, workdir=tmp)
        try:
            assert not app.state.ragchat_security.login_required
            local = TestClient(app, base_url="http://127.0.0.1:7860")
            assert local.get("/api/v1/documents").json() == {"documents": []}
            assert [m["id"] for m in local.get("/v1/models").json()["data"]] == ["ragchat"]
            return api_routes(app)
        finally:
            app.state.webapp.jobs.close()
    finally:
        engine.close()


def concrete(path: str, fill: dict[str, str]) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: fill.get(m.group(1), "x"), path)


def test_every_api_route_needs_a_valid_key(team, routes, alice_doc):
    client = team["client"]
    assert len(routes) >= 13, routes
    fill = {"doc_id": alice_doc["id"], "job_id": alice_doc["job"], "model": "ragchat"}
    made_up = bearer("rck_0123456789ab_" + "A" * 43)
    for method, path in sorted(routes):
        target = concrete(path, fill)
        for name, headers in (("no key", {}), ("made-up key", made_up), ("revoked key", team["revoked"]),
                              ("not a bearer", {"Authorization": f"Basic {team['alice_key']}"})):
            r = client.request(method, target, headers=headers, json={} if method == "POST" else None)
            assert r.status_code == 401, f"{name}: {method} {path} answered {r.status_code}: {r.text[:200]}"
            body = r.json()
            assert "login" in body["detail"] and body["error"]["type"] == "authentication_error", body
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert SECRET not in r.text.lower()
    # a wrong key is refused even next to a good session cookie
    login = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    cookie = {auth.SESSION_COOKIE: login.cookies[auth.SESSION_COOKIE]}
    r = client.get("/api/v1/documents", headers=made_up, cookies=cookie)
    assert r.status_code == 401 and "invalid or revoked" in r.json()["detail"]
    client.cookies.clear()


def test_the_session_cookie_of_the_page_works_too(team, alice_doc):
    client = team["client"]
    login = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    cookie = {auth.SESSION_COOKIE: login.cookies[auth.SESSION_COOKIE]}
    client.cookies.clear()
    names = {d["name"] for d in client.get("/api/v1/documents", cookies=cookie).json()["documents"]}
    assert names == {ALICE_FILE, SHARED_FILE}
    # a browser opening the API's docs without a session is sent to the login page
    r = client.get("/api/docs", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


# ---- 2. alice's private document never reaches bob, through any route --------------------------------


def bob_checks(team, alice_doc) -> dict:
    """(method, path) -> a check that bob's key gets nothing of alice's through that route."""
    c, bob, alice, doc_id = team["client"], team["bob"], team["alice"], alice_doc["id"]

    def clean(r: httpx.Response) -> httpx.Response:
        assert SECRET not in r.text.lower() and doc_id not in r.text.replace(f"/documents/{doc_id}", ""), r.text[:300]
        return r

    def alice_still_has_it():
        r = c.get(f"/api/v1/documents/{doc_id}", headers=alice)
        assert r.status_code == 200 and r.json()["status"] == "done", r.text

    def collections():
        names = {x["name"] for x in clean(c.get("/api/v1/collections", headers=bob)).json()["collections"]}
        assert names == {"default"}, names  # not even his own empty private one is listed: it has no documents

    def list_documents():
        docs = clean(c.get("/api/v1/documents", headers=bob)).json()["documents"]
        assert [d["name"] for d in docs] == [SHARED_FILE]
        mine = clean(c.get("/api/v1/documents", params={"collection": "~alice/default"}, headers=bob)).json()
        assert mine == {"documents": []}

    def upload():
        r = c.post("/api/v1/documents", headers=bob, data={"collection": "~alice/default"},
                   files={"file": (ALICE_FILE, b"bob overwrites alice's notes")})
        assert r.status_code == 403 and "another user's private collection" in r.json()["detail"], r.text
        alice_still_has_it()
        assert "Quendra" in c.post("/api/v1/search", headers=alice, json={"query": "zorblax purple mineral"}).text

    def get_document():
        r = clean(c.get(f"/api/v1/documents/{doc_id}", headers=bob))
        missing = c.get(f"/api/v1/documents/{'0' * 32}", headers=bob)
        assert r.status_code == missing.status_code == 404
        assert r.json() == missing.json()

    def delete_document():
        assert clean(c.delete(f"/api/v1/documents/{doc_id}", headers=bob)).status_code == 404
        alice_still_has_it()

    def reindex():
        assert clean(c.post(f"/api/v1/documents/{doc_id}/reindex", headers=bob)).status_code == 404

    def job():
        assert clean(c.get(f"/api/v1/jobs/{alice_doc['job']}", headers=bob)).status_code == 404

    def search():
        for body in ({"query": "zorblax purple volcanic mineral island miners lanterns"},
                     {"query": "zorblax purple volcanic mineral", "document_ids": [doc_id]},
                     {"query": "zorblax purple volcanic mineral", "collections": ["~alice/default"]},
                     {"query": "zorblax purple volcanic mineral", "mode": "lexical", "top_k": 50},
                     {"query": "zorblax purple volcanic mineral", "mode": "dense", "top_k": 50}):
            r = clean(c.post("/api/v1/search", headers=bob, json=body))
            assert r.status_code == 200 and all(h["document_id"] != doc_id for h in r.json()["results"]), body

    def ask():
        r = clean(c.post("/api/v1/ask", headers=bob, json={"question": "What is zorblax?", "stream": False}))
        assert r.status_code == 200 and all(s["doc_id"] != doc_id for s in r.json()["retrieved"])
        r = clean(c.post("/api/v1/ask", headers=bob, json={"question": "What is zorblax?",
                                                            "collections": ["~alice/default"], "stream": False}))
        assert r.json()["answer"] == NO_DOCUMENTS
        r = clean(c.post("/api/v1/ask", headers=bob, json={"question": "zorblax purple volcanic mineral", "document_ids": [doc_id]}))
        assert ndjson(r)[-1]["answer"] == NO_DOCUMENTS

    def models():
        ids = [m["id"] for m in clean(c.get("/v1/models", headers=bob)).json()["data"]]
        assert ids == ["ragchat", "ragchat/default"], ids

    def model():
        assert c.get("/v1/models/ragchat/default", headers=bob).status_code == 200
        assert clean(c.get("/v1/models/ragchat/~alice/default", headers=bob)).status_code == 404

    def chat():
        asked = {"messages": [{"role": "user", "content": "What is zorblax? Where do the miners find it?"}]}
        r = c.post("/v1/chat/completions", headers=bob, json={"model": "ragchat/~alice/default", **asked})
        assert clean(r).status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = clean(c.post("/v1/chat/completions", headers=bob, json={"model": "ragchat", **asked}))
        assert r.status_code == 200 and all(s["doc_id"] != doc_id for s in r.json()["sources"])
        r = clean(c.post("/v1/chat/completions", headers=bob, json={"model": "ragchat", "stream": True, **asked}))
        assert sse_events(r)[-1] == "[DONE]"

    def rate():
        cited = {"doc_id": doc_id, "id": 1, "text": "Zorblax is a purple volcanic mineral."}
        asked = {"rating": "up", "question": "What is zorblax?", "answer": "A purple mineral [1]."}
        r = clean(c.post("/api/v1/feedback", headers=bob, json={**asked, "sources": [cited]}))
        missing = c.post("/api/v1/feedback", headers=bob, json={**asked, "sources": [{**cited, "doc_id": "0" * 32}]})
        assert r.status_code == missing.status_code == 403 and r.json() == missing.json(), r.text
        assert c.get("/api/v1/feedback", headers=bob).json() == {"feedback": []}  # nothing refused was kept

    def list_feedback():
        mine = {"rating": "down", "question": "Where is zorblax found?", "answer": "On Quendra [1].",
                "sources": [{"doc_id": doc_id, "id": 1}], "note": "private note of alice"}
        assert c.post("/api/v1/feedback", headers=alice, json=mine).status_code == 201
        r = clean(c.get("/api/v1/feedback", headers=bob))
        assert r.status_code == 200 and "private note of alice" not in r.text, r.text[:300]
        r = clean(c.get("/api/v1/feedback", params={"all": "true"}, headers=bob))
        assert r.status_code == 403 and "admin" in r.json()["detail"]

    def docs_page():
        assert clean(c.get("/api/docs", headers=bob)).status_code == 200

    def unknown():
        for path in ("/api/v1/documents/x/y", "/v1/chat/completion", "/v1/v1/models"):
            r = clean(c.get(path, headers=bob))
            assert r.status_code == 404 and "no such API route" in r.text, (path, r.text)

    def openapi():
        r = clean(c.get("/api/openapi.json", headers=bob))
        assert r.status_code == 200 and "/v1/chat/completions" in r.json()["paths"]

    return {
        ("GET", "/api/v1/collections"): collections,
        ("GET", "/api/v1/documents"): list_documents,
        ("POST", "/api/v1/documents"): upload,
        ("GET", "/api/v1/documents/{doc_id}"): get_document,
        ("DELETE", "/api/v1/documents/{doc_id}"): delete_document,
        ("POST", "/api/v1/documents/{doc_id}/reindex"): reindex,
        ("GET", "/api/v1/jobs/{job_id}"): job,
        ("POST", "/api/v1/search"): search,
        ("POST", "/api/v1/ask"): ask,
        ("POST", "/api/v1/feedback"): rate,
        ("GET", "/api/v1/feedback"): list_feedback,
        ("GET", "/v1/models"): models,
        ("GET", "/v1/models/{model:path}"): model,
        ("POST", "/v1/chat/completions"): chat,
        ("GET", "/api/docs"): docs_page,
        ("GET", "/api/openapi.json"): openapi,
        **{(m, p): unknown for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY")
           for p in ("/api/v1/{path:path}", "/v1/{path:path}")},
    }


def test_every_api_route_keeps_alices_document_from_bob(team, routes, alice_doc):
    checks = bob_checks(team, alice_doc)
    assert set(checks) == routes, f"routes without a privacy check: {routes - set(checks)}; gone: {set(checks) - routes}"
    for (method, path), check in sorted(checks.items()):
        try:
            check()
        except AssertionError as exc:
            raise AssertionError(f"{method} {path}: {exc}") from exc


# ---- 3. alice uses every route -------------------------------------------------------------------------


def test_alice_searches_with_scores_pages_and_offsets(team, alice_doc):
    r = team["client"].post("/api/v1/search", headers=team["alice"], json={"query": "purple volcanic mineral", "top_k": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results and results[0]["document_id"] == alice_doc["id"] and results[0]["rank"] == 1
    top = results[0]
    assert top["relevant"] and top["score"] > 0 and top["collection"] == "~alice/default" and top["source"] == ALICE_FILE
    assert top["text"] == ALICE_TEXT.strip() and top["end"] - top["start"] == len(top["text"]) and "page" in top
    assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
    for weight, status in ((0.0, 200), (1, 200), (1.5, 400), ("0.5", 400)):  # the retrieval test tab's fusion weight
        r = team["client"].post("/api/v1/search", headers=team["alice"], json={"query": "purple mineral", "weight": weight})
        assert r.status_code == status, (weight, r.text)


def test_alice_asks_and_gets_a_streamed_cited_answer(team, alice_doc):
    r = team["client"].post("/api/v1/ask", headers=team["alice"], json={"question": "What is zorblax?"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson"), r.text
    events = ndjson(r)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "status" and "sources" in kinds and kinds[-1] == "done" and kinds.count("token") > 1, kinds
    done = events[-1]
    streamed = "".join(e["text"] for e in events if e["type"] == "token")
    assert "Zorblax" in streamed and "[1]" in streamed and done["answer"] == streamed.strip()
    assert done["provider"] == "ollama" and done["error"] is None and not done["partial"]
    (source,) = done["sources"]
    assert source["id"] == 1 and source["doc_id"] == alice_doc["id"] and source["source"] == ALICE_FILE
    assert source["collection"] == "~alice/default" and "Quendra" in source["text"] and source["score"] > 0

    # not streamed, with history: one JSON object
    r = team["client"].post("/api/v1/ask", headers=team["alice"], json={
        "question": "Where is it found?", "stream": False,
        "history": [{"role": "user", "content": "What is zorblax?"}, {"role": "assistant", "content": streamed}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["sources"] and "zorblax" in r.json()["question"].lower()  # the follow-up was made standalone


def test_openai_client_unchanged_streaming_and_not(team, alice_doc):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=team["server"].url + "v1", api_key=team["alice_key"], max_retries=0, timeout=TIMEOUT)
    models = [m.id for m in client.models.list()]
    assert models == ["ragchat", "ragchat/default", "ragchat/~alice/default"], models
    assert client.models.retrieve("ragchat/~alice/default").id == "ragchat/~alice/default"

    completion = client.chat.completions.create(
        model="ragchat/~alice/default",
        messages=[{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "What is zorblax?"}])
    text = completion.choices[0].message.content
    assert "Zorblax" in text and "[1]" in text and completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.model == "ragchat/~alice/default"
    (source,) = completion.sources  # the documented extra field
    assert source["id"] == 1 and source["doc_id"] == alice_doc["id"] and source["source"] == ALICE_FILE

    stream = client.chat.completions.create(model="ragchat", stream=True,
                                            messages=[{"role": "user", "content": [{"type": "text", "text": "What is zorblax?"}]}])
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and "Zorblax" in streamed and "[1]" in streamed
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.answer == streamed.strip()
    assert [s["doc_id"] for s in last.sources] == [alice_doc["id"]]

    # a scope with nothing about it: ragchat's refusal comes whole, without sources
    completion = client.chat.completions.create(model="ragchat/default",
                                                messages=[{"role": "user", "content": "What is zorblax?"}])
    assert completion.choices[0].message.content in (NOT_FOUND, NO_DOCUMENTS) or completion.sources == [] or all(
        s["doc_id"] != alice_doc["id"] for s in completion.sources)

    # errors come back as the client's exceptions, with ragchat's message
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message must be the user's question"):
        client.chat.completions.create(model="ragchat", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=team["server"].url + "v1", api_key="sk-wrong", max_retries=0).models.list()
    foreign = openai.OpenAI(base_url=team["server"].url + "v1", api_key=team["alice_key"], max_retries=0,
                            default_headers={"Origin": "https://evil.example"})
    with pytest.raises(openai.PermissionDeniedError) as refused:  # a foreign page's request, in OpenAI's shape
        foreign.models.list()
    assert refused.value.body["type"] == "permission_error" and "origin" in refused.value.message.lower()


def test_the_builtin_model_answers_through_the_api(team, alice_doc):
    """The real built-in model (llama.cpp, in the server's process) behind the REST ask, streamed."""
    r = team["client"].post("/api/v1/ask", headers=team["alice"], json={
        "question": "What is zorblax?", "model": "builtin", "collections": ["~alice/default"]}, timeout=300)
    assert r.status_code == 200, r.text
    events = ndjson(r)
    done = events[-1]
    assert done["type"] == "done" and done["provider"] == "llamacpp" and done["error"] is None, done
    assert [e for e in events if e["type"] == "token"] and done["answer"].strip()
    assert [s["doc_id"] for s in done["retrieved"]] == [alice_doc["id"]]


def test_alice_rates_an_answer_with_what_ask_gave_her(team, alice_doc):
    c, alice = team["client"], team["alice"]
    asked = c.post("/api/v1/ask", headers=alice, json={"question": "What is zorblax?", "stream": False}).json()
    assert [s["doc_id"] for s in asked["sources"]] == [alice_doc["id"]], asked
    r = c.post("/api/v1/feedback", headers=alice, json={
        "rating": "up", "question": asked["question"], "answer": asked["answer"], "sources": asked["sources"],
        "note": "right and cited"})
    assert r.status_code == 201 and re.fullmatch(r"[0-9a-f]{32}", r.json()["id"]), r.text
    (row,) = [f for f in c.get("/api/v1/feedback", headers=alice).json()["feedback"] if f["id"] == r.json()["id"]]
    assert row["rating"] == 1 and row["answer"] == asked["answer"] and row["note"] == "right and cited"
    assert [s["doc_id"] for s in row["sources"]] == [alice_doc["id"]] and row["setup"]["mode"] == "hybrid"
    for bad in ({"rating": "meh"}, {"question": ""}, {"sources": [{"doc_id": "not-an-id"}]}):
        body = {"rating": "down", "question": "q", "answer": "a", **bad}
        assert c.post("/api/v1/feedback", headers=alice, json=body).status_code == 400, bad


def test_sse_wire_format(team, alice_doc):
    r = team["client"].post("/v1/chat/completions", headers=team["alice"], json={
        "model": "ragchat", "stream": True, "messages": [{"role": "user", "content": "What is zorblax?"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == "[DONE]" and events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop" and events[-2]["sources"]


def test_alice_reindexes_then_deletes_her_document(team, alice_doc):
    client, alice, doc_id = team["client"], team["alice"], alice_doc["id"]
    r = client.post(f"/api/v1/documents/{doc_id}/reindex", headers=alice)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    deadline = time.monotonic() + 300
    while not job["finished"] and time.monotonic() < deadline:
        time.sleep(0.3)
        job = client.get(job["url"], headers=alice).json()
    assert [(f["source"], f["stage"], f["doc_id"]) for f in job["files"]] == [(ALICE_FILE, "done", doc_id)], job
    assert wait_document(client, doc_id, alice)["status"] == "done"

    r = client.delete(f"/api/v1/documents/{doc_id}", headers=alice)
    if r.status_code == 202:  # an ingestion was running: removed right after it
        deadline = time.monotonic() + 120
        while client.get(f"/api/v1/documents/{doc_id}", headers=alice).status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.3)
    else:
        assert r.status_code == 200 and r.json() == {"removed": True, "id": doc_id}
    assert client.get(f"/api/v1/documents/{doc_id}", headers=alice).status_code == 404
    hits = client.post("/api/v1/search", headers=alice, json={"query": "zorblax Quendra"}).json()["results"]
    assert all(h["document_id"] != doc_id for h in hits)


# ---- 4. errors -------------------------------------------------------------------------------------------


def test_errors_are_json_with_the_right_status(team, fake):
    client, alice = team["client"], team["alice"]
    r = client.post("/api/v1/search", headers=alice, json={"top_k": 3})
    assert r.status_code == 400 and r.json()["detail"].startswith("bad request: query"), r.text
    r = client.post("/api/v1/search", headers={**alice, "content-type": "application/json"}, content=b"{not json")
    assert r.status_code == 400 and "bad request" in r.json()["detail"]
    r = client.post("/v1/chat/completions", headers=alice, json={"model": "ragchat", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    r = client.post("/v1/chat/completions", headers=alice, json={"model": "ragchat", "n": 2,
                                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    r = client.post("/api/v1/documents", headers=alice, data={"collection": "notes"})
    assert r.status_code == 400 and "no file" in r.json()["detail"]
    r = client.get("/api/v1/nothing-here", headers=alice)
    assert r.status_code == 404 and "no such API route" in r.json()["detail"]
    r = client.post("/v1/completions", headers=alice, json={})
    assert r.status_code == 404 and "no such API route" in r.json()["error"]["message"]
    # a known path with a method it does not have: 405, with the methods it allows
    r = client.put("/api/v1/documents", headers=alice)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST" and r.json()["code"] == "method_not_allowed"
    r = client.request("TRACE", "/v1/models", headers=alice)
    assert r.status_code == 405 and r.headers["allow"] == "GET" and r.json()["error"]["code"] == "method_not_allowed"
    r = client.get(f"/api/v1/jobs/{'f' * 12}", headers=alice)
    assert r.status_code == 404 and r.json()["code"] == "not_found"

    # larger than ingest.max_file_mb (1 MB on this server): 413; a request past the limit is
    # refused before it is read
    r = client.post("/api/v1/documents", headers=alice, files={"file": ("big.txt", b"x" * 1_500_000)})
    assert r.status_code == 413 and "big.txt" in r.json()["detail"] and "max_file_mb" in r.json()["detail"], r.text
    r = client.post("/api/v1/documents", headers=alice, files={"file": ("bigger.txt", b"x" * 2_500_000)})
    assert r.status_code == 413 and "max_file_mb" in r.json()["detail"], r.text
    r = client.post("/v1/chat/completions", headers=alice, json={
        "model": "ragchat", "messages": [{"role": "user", "content": "x" * 5_000_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    # the language model is gone (Ollama lost its model): 503 before any byte of the answer
    fake.models.clear()
    try:
        for stream in (False, True):
            r = client.post("/api/v1/ask", headers=alice, json={"question": "When does the office open?", "stream": stream})
            assert r.status_code == 503 and "llama3.2" in r.json()["detail"], r.text
            r = client.post("/v1/chat/completions", headers=alice, json={
                "model": "ragchat", "stream": stream, "messages": [{"role": "user", "content": "When does the office open?"}]})
            assert r.status_code == 503 and r.json()["error"]["code"] == "llm_unavailable", r.text
    finally:
        fake.models.append("llama3.2:latest")


# ---- 5. keys, in process ---------------------------------------------------------------------------------


def test_api_keys_store_a_hash_and_die_with_revocation_or_their_user(tmp_path):
    from ragchat.store.catalog import Catalog
    from ragchat.store.tables import ApiKey

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    try:
        from argon2 import PasswordHasher

        cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        auth.add_user(catalog, "carol", "carol-pass-123", hasher=cheap)
        info, key = auth.create_key(catalog, "carol", "ci  job")
        assert info.label == "ci job" and key.startswith("rck_" + info.id + "_")
        with catalog.session() as s:
            (row,) = s.query(ApiKey).all()
            assert key not in (row.secret_hash, row.id) and len(row.secret_hash) == 64
        assert auth.user_for_key(catalog, key) == "carol"
        assert auth.list_keys(catalog, "carol")[0].last_used_at is not None
        for bad in (key[:-1] + ("A" if key[-1] != "A" else "B"), key + "x", "", None, "rck_" + info.id):
            assert auth.user_for_key(catalog, bad) is None
        with pytest.raises(auth.AuthError):
            auth.create_key(catalog, "nobody")
        auth.revoke_key(catalog, info.id)
        assert auth.user_for_key(catalog, key) is None
        with pytest.raises(auth.AuthError, match="no API key"):
            auth.revoke_key(catalog, info.id)
        _, key2 = auth.create_key(catalog, "carol")
        auth.remove_user(catalog, "carol")
        assert auth.user_for_key(catalog, key2) is None and auth.list_keys(catalog) == []
    finally:
        catalog.close()


# ---- 6. streamed text is made safe as it streams ------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Zorblax glows [1]. ![x](https://evil.example/?q=secret) and [a link](http://evil.example/a) [2].",
    "Line one.\n[x]: https://evil.example/img.png\n![a][x] end",
    "see <img src=https://evil.example/x> and <https://evil.example> end",
    "中文回答[1]。更多内容<b>粗体</b>，![图](https://evil.example/p.png)。",
    "[1] starts the line; then ](\nhttps://evil.example/y) and ` code ![c](http://evil.example/c) `",
])
def test_markdown_stream_is_safe_at_every_split(text):
    rng = random.Random(7)
    whole = sanitize_markdown(text)
    for _ in range(200):
        stream, parts, i = MarkdownStream(), [], 0
        while i < len(text):
            n = rng.randint(1, 5)
            parts.append(stream.feed(text[i:i + n]))
            i += n
        parts.append(stream.flush())
        out = "".join(parts)
        assert not re.search(r"\]\(\s*<?\s*https?:", out) and "<img" not in out and "<b>" not in out, out
        assert not re.search(r"^\s{0,3}\[[^\]]+\]:\s*<?https?:", out, re.M), out
        if "`" not in text:
            assert out == whole  # the same as the whole answer made safe at once
    # text is released as it comes, held only while a construct may be open
    s = MarkdownStream()
    assert [s.feed(p) for p in ["The ", "answer ", "is ", "42 ", "[1", "]", "."]] == ["The ", "answer ", "is ", "42 ", "", "", "[1]."]
    s = MarkdownStream()
    assert "".join(s.feed(c) for c in "中文回答") == "中文回答"
