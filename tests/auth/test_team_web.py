"""Team mode against the real web app: `ragchat serve` in a subprocess, over a store whose users were
made with the real CLI (`ragchat users add`) before the server started.

One server serves the module (loopback, built-in LLM, short answers). It checks, through real
HTTP and gradio_client, what tests/auth/test_auth.py checks on small in-process apps:

- nobody gets data without signing in, on any route of the app (the routes are enumerated from the
  app that ``build_app`` makes, and asked of the running server and of an in-process copy);
- a user's uploads, answers, originals and conversations stay theirs;
- a foreign Origin (or Host) is refused even with a valid session;
- a non-loopback bind without users refuses to start, before it binds.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, AuthenticationError
from starlette.routing import Mount

from conftest import AppServer, TEST_MODEL, child_env, free_port, make_settings, run_cli
from ragchat import auth
from ragchat.answer.replies import NO_DOCUMENTS, NOT_FOUND

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Setting per-request cookies:DeprecationWarning")]  # served apps in team mode

PASSWORDS = {"alice": "alice-pass-4821", "bob": "bob-pass-97310"}
ALICE_FILE = "alice-field-notes.txt"
ALICE_TEXT = ("Zorblax is a purple volcanic mineral found only on the island of Quendra. "
              "Zorblax crystals glow faintly at night and are used by the Quendra miners as lanterns.\n")
SHARED_FILE = "office-handbook.txt"
SHARED_TEXT = ("The office handbook: the office opens at nine in the morning, the cafeteria serves lunch at noon, "
               "and the parking garage closes at eight in the evening.\n")
CLI_TIMEOUT = 300
ANSWER_TIMEOUT = 300
SESSION = auth.SESSION_COOKIE
OPEN_PATHS = {"/login", "/logout", "/ragchat/health", "/favicon.ico", "/robots.txt", "/manifest.json", "/pwa_icon"}
OPEN_PREFIXES = ("/static/", "/assets/", "/svelte/", "/pwa_icon/")  # Gradio's built front-end files


# ---- helpers -------------------------------------------------------------------------------------


def clean_env(**extra) -> dict:
    return child_env({"RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL,
                      "RAGCHAT_LLM__OLLAMA_URL": "http://127.0.0.1:9", **extra})


def cli(cwd: Path, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """The real CLI, run from a folder without a config.toml."""
    return run_cli(*args, cwd=cwd, env=clean_env(), timeout=timeout)


def wait_ingested(client: Client, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = client.predict(api_name="/ingest_status")
        if not status["active"]:
            return status
        time.sleep(0.5)
    raise AssertionError(f"ingestion did not finish in {timeout} s: {status}")


def text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def ask(client: Client, question: str, scope: list[str] | None = None) -> tuple:
    """Final outputs of /ask: textbox, chatbot, sources panel, conversation list, model badge, notice."""
    args = (question,) if scope is None else (question, scope)
    return client.submit(*args, api_name="/ask").result(timeout=ANSWER_TIMEOUT)


def last_saved(client: Client) -> tuple[str, dict]:
    """(conversation id, last saved message) of this client's newest conversation."""
    cid = client.predict(api_name="/list_conversations")[0]["id"]
    return cid, client.predict(cid, api_name="/conversation_messages")[-1]


def iter_routes(routes, prefix=""):
    """(path, methods) of every route, inside mounts (Gradio's app) and included routers too."""
    for r in routes:
        if isinstance(r, Mount):
            sub = getattr(r.app, "routes", None)
            if sub:
                yield from iter_routes(sub, prefix + r.path)
            else:
                yield prefix + r.path + "/x", {"GET"}
        elif hasattr(r, "original_router"):  # FastAPI's included router (gradio_api)
            yield from iter_routes(r.original_router.routes, prefix + r.include_context.prefix)
        elif hasattr(r, "path"):
            yield prefix + r.path, set(getattr(r, "methods", None) or {"GET"})


def concrete(path: str, fill: dict[str, str]) -> str:
    """A request path for a route pattern: known parameters get real values, the rest "x"."""
    def sub(m):
        return fill.get(m.group(1).split(":")[0], "x")
    return re.sub(r"\{([^}]+)\}", sub, path) or "/"


def request(client, method: str, path: str, **kw):
    if method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        return client.request(method, path, **kw)
    return client.request(method, path, json={"data": [], "fn_index": 0, "session_hash": "anon"}, **kw)


def assert_refused(r, what: str) -> None:
    """401 (API clients) or 303 to /login (browsers); never a body with data."""
    if r.status_code == 303:
        assert r.headers["location"].startswith("/login"), f"{what} redirected elsewhere: {r.headers['location']}"
        return
    assert r.status_code == 401, f"{what} answered {r.status_code} without login: {r.text[:200]!r}"
    if r.request.method != "HEAD":
        assert "login" in r.json()["detail"], what


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def team_store(tmp_path_factory) -> Path:
    """A store with users alice and bob and one shared document, all made with the real CLI."""
    root = tmp_path_factory.mktemp("team-web")
    store = root / "store"
    for name, password in PASSWORDS.items():
        done = cli(root, "--store", str(store), "users", "add", name, "--password", password)
        assert done.returncode == 0, done.stderr
        assert password not in done.stdout + done.stderr
    shared = root / SHARED_FILE
    shared.write_text(SHARED_TEXT)
    done = cli(root, "--store", str(store), "ingest", str(shared))
    assert done.returncode == 0, done.stdout + done.stderr
    listed = cli(root, "--store", str(store), "users", "list")
    assert re.search(r"alice\s+user", listed.stdout) and re.search(r"bob\s+user", listed.stdout), listed.stdout
    return store


@pytest.fixture(scope="module")
def server(team_store, tmp_path_factory):
    app = AppServer(team_store, tmp_path_factory.mktemp("team-web-server"), max_answer_tokens=32)
    try:
        yield app.start(timeout=300)
    finally:
        app.stop()


@pytest.fixture(scope="module")
def alice(server) -> Client:
    return Client(server.url, auth=("alice", PASSWORDS["alice"]), verbose=False)


@pytest.fixture(scope="module")
def bob(server) -> Client:
    return Client(server.url, auth=("bob", PASSWORDS["bob"]), verbose=False)


@pytest.fixture(scope="module")
def alice_doc(server, alice, tmp_path_factory) -> dict:
    """alice uploads a file with a word found nowhere else; it is ingested into her private collection."""
    folder = tmp_path_factory.mktemp("alice-upload")
    path = folder / ALICE_FILE
    path.write_text(ALICE_TEXT)
    alice.predict([handle_file(str(path))], "default", api_name="/upload")
    status = wait_ingested(alice)
    assert [(f["source"], f["stage"]) for f in status["files"]] == [(ALICE_FILE, "done")], status
    docs = {d["name"]: d for d in alice.predict(api_name="/list_documents")}
    doc = docs[ALICE_FILE]
    assert doc["status"] == "done" and doc["collection"] == "~alice/default", doc
    return doc


@pytest.fixture(scope="module")
def alice_chat(alice, alice_doc) -> dict:
    """alice asks about her file: (conversation id, final outputs, saved answer)."""
    alice.predict(api_name="/new_chat")
    final = ask(alice, "What is zorblax?")
    cid, saved = last_saved(alice)
    return {"cid": cid, "final": final, "saved": saved}


# ---- 1. anonymous requests are refused everywhere ------------------------------------------------


def test_anonymous_requests_get_no_data(server, alice_doc):
    url = server.url
    page = httpx.get(url, headers={"accept": "text/html"}, follow_redirects=False, timeout=30)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
    login = httpx.get(url + "login", timeout=30)
    assert login.status_code == 200 and 'name="password"' in login.text
    for path in ("", "config", "gradio_api/info", "gradio_api/info?all_endpoints=True", f"ragchat/original/{alice_doc['id']}",
                 "gradio_api/file=" + str(server.store / "catalog.sqlite"), "monitoring", "theme.css",
                 "static/%2e%2e/%2e%2e/config", "assets/..%2f..%2fconfig"):
        r = httpx.get(url + path, timeout=30)
        assert r.status_code in (401, 404), f"/{path} answered {r.status_code}"
        assert "zorblax" not in r.text.lower() and "SQLite format" not in r.text
        if not path.startswith(("static/", "assets/")):
            assert_refused(r, "/" + path)
    r = httpx.post(url + "gradio_api/call/list_documents", json={"data": []}, timeout=30)
    assert_refused(r, "POST /gradio_api/call/list_documents")
    # gradio_client cannot even load the app without signing in, nor with a wrong password
    with pytest.raises(AuthenticationError):
        Client(url, verbose=False)
    with pytest.raises(AuthenticationError):
        Client(url, auth=("alice", "not-her-password"), verbose=False)
    assert httpx.get(url + "ragchat/health", timeout=30).json() == {"ok": True}


def test_every_route_of_the_app_refuses_anonymous_requests(server, alice_doc, tmp_path):
    """Enumerate the routes of the app as serve() builds it (a second store: the running server
    holds the first), then ask each one without a session, in process and of the running server."""
    from fastapi.testclient import TestClient

    from ragchat.engine import Engine
    from ragchat.ui.server import build_app

    settings = make_settings(tmp_path / "store")
    engine = Engine(settings)
    try:
        from argon2 import PasswordHasher

        auth.add_user(engine.catalog, "carol", "carol-pass-123",
                      hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
        assert auth.require_auth_for_bind(settings.server.host, settings, auth.user_count(engine.catalog)) == "login"
        app, _ = build_app(engine, workdir=tmp_path)
        try:
            assert app.state.ragchat_security.login_required
            routes = sorted({(p, m) for p, methods in iter_routes(app.routes) for m in methods})
            assert len(routes) > 40, routes  # ours and Gradio's
            paths = {p for p, _ in routes}
            assert {"/ragchat/original/{doc_id}", "/ragchat/page/{doc_id}/{page}.png", "/config", "/gradio_api/info", "/gradio_api/queue/join",
                    "/gradio_api/upload", "/gradio_api/file={path_or_url:path}"} <= paths, paths

            fill = {"doc_id": alice_doc["id"], "path_or_url": str(server.store / "catalog.sqlite"),
                    "api_name": "list_documents"}
            local = TestClient(app, base_url="http://127.0.0.1:7860")
            live = httpx.Client(base_url=server.url.rstrip("/"), timeout=30)
            refused, public = 0, []
            for path, method in routes:
                target = concrete(path, fill)
                if auth.is_public(target):
                    public.append(target)
                    continue
                for name, client in (("in-process", local), ("running server", live)):
                    r = request(client, method, target)
                    assert_refused(r, f"{name}: {method} {path}")
                    if method == "GET":  # a browser is sent to the login page
                        r = client.get(target, headers={"accept": "text/html"}, follow_redirects=False)
                        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), \
                            f"{name}: {path} -> {r.status_code}"
                refused += 1
            live.close()
            assert refused > 40
            # only the login routes, the health check and Gradio's front-end files are open (a
            # fixed list here, so that widening auth's allow-list fails this test)
            assert set(public) <= OPEN_PATHS | {p for p in public if p.startswith(OPEN_PREFIXES)}, public
            assert {"/login", "/logout", "/ragchat/health"} <= set(public)
        finally:
            app.state.webapp.jobs.close()
    finally:
        engine.close()


# ---- 2. a user's documents and conversations stay theirs -----------------------------------------


def test_alice_sees_and_cites_her_own_upload(server, alice, alice_doc, alice_chat):
    names = {d["name"] for d in alice.predict(api_name="/list_documents")}
    assert names == {ALICE_FILE, SHARED_FILE}
    saved = alice_chat["saved"]
    assert saved["role"] == "assistant" and saved["content"].strip()
    assert alice_doc["id"] in {s["doc_id"] for s in saved["meta"]["retrieved"]}
    assert alice_doc["id"] in {s["doc_id"] for s in saved["sources"]}, saved
    assert ALICE_FILE in alice_chat["final"][2], "the sources panel names her file"
    r = httpx.get(f"{server.url}ragchat/original/{alice_doc['id']}", cookies={SESSION: alice.cookies[SESSION]},
                  timeout=30)
    assert r.status_code == 200 and "Quendra" in r.text


def test_bob_cannot_see_alices_document(server, bob, alice_doc):
    docs = bob.predict(api_name="/list_documents")
    assert [d["name"] for d in docs] == [SHARED_FILE], "bob sees the shared document only"
    table, picker, scope, *_ = bob.predict([], api_name="/library")
    assert ALICE_FILE not in str(table) + str(picker) + str(scope)
    # the stored original: 404, the same as for a document that does not exist
    cookie = {SESSION: bob.cookies[SESSION]}
    r = httpx.get(f"{server.url}ragchat/original/{alice_doc['id']}", cookies=cookie, timeout=30)
    assert r.status_code == 404 and "Quendra" not in r.text
    missing = httpx.get(f"{server.url}ragchat/original/{'0' * 32}", cookies=cookie, timeout=30)
    assert missing.status_code == 404 and missing.text == r.text


def test_bob_asking_about_alices_word_finds_nothing(bob, alice_doc):
    bob.predict(api_name="/new_chat")
    final = ask(bob, "What is zorblax?")
    answer = text_of(final[1][-1])
    assert answer in (NOT_FOUND, NO_DOCUMENTS), answer
    assert ALICE_FILE not in final[2] and "Quendra" not in final[2]
    _, saved = last_saved(bob)
    assert saved["sources"] == [] and all(s["doc_id"] != alice_doc["id"] for s in saved["meta"].get("retrieved", []))
    assert "quendra" not in saved["content"].lower()
    assert "Quendra" not in bob.predict(1, api_name="/show_source")

    # naming her document in "Search in" does not get around it
    bob.predict(api_name="/new_chat")
    final = ask(bob, "zorblax purple volcanic mineral", [f"doc:{alice_doc['id']}"])
    assert text_of(final[1][-1]) in (NOT_FOUND, NO_DOCUMENTS)
    _, saved = last_saved(bob)
    assert saved["sources"] == [] and all(s["doc_id"] != alice_doc["id"] for s in saved["meta"].get("retrieved", []))


def test_bob_cannot_read_alices_conversation(alice, bob, alice_chat):
    cid = alice_chat["cid"]
    assert cid in {c["id"] for c in alice.predict(api_name="/list_conversations")}
    assert cid not in {c["id"] for c in bob.predict(api_name="/list_conversations")}
    try:
        got = bob.predict(cid, api_name="/conversation_messages")
    except AppError as exc:
        assert "No such conversation" in str(exc)
        got = None
    assert not got
    chatbot, *_ = bob.predict(cid, api_name="/open_chat")
    assert not chatbot, "opening her conversation id shows bob an empty chat"
    assert alice.predict(cid, api_name="/conversation_messages")[-1] == alice_chat["saved"], "hers is intact"


def test_page_images_follow_the_documents_access_rule(server, alice, bob, alice_doc, tmp_path):
    """The page route (ragchat.ui.pageview) answers like the original's: alice sees her PDF's page,
    bob gets the very 404 a missing document gets, and nobody signed out gets anything."""
    import hostile

    path = tmp_path / "alice-cave-map.pdf"
    path.write_bytes(hostile.normal("Quendra lantern caves, northern passage"))
    alice.predict([handle_file(str(path))], "default", api_name="/upload")
    status = wait_ingested(alice)
    assert ("alice-cave-map.pdf", "done") in [(f["source"], f["stage"]) for f in status["files"]], status
    doc = {d["name"]: d for d in alice.predict(api_name="/list_documents")}["alice-cave-map.pdf"]
    assert doc["collection"] == "~alice/default"
    url = f"{server.url}ragchat/page/{doc['id']}/1.png?w=400"
    mine = httpx.get(url, cookies={SESSION: alice.cookies[SESSION]}, timeout=60)
    assert mine.status_code == 200 and mine.content.startswith(b"\x89PNG"), mine.text[:200]
    theirs = httpx.get(url, cookies={SESSION: bob.cookies[SESSION]}, timeout=60)
    missing = httpx.get(f"{server.url}ragchat/page/{'0' * 32}/1.png?w=400", cookies={SESSION: bob.cookies[SESSION]},
                        timeout=60)
    assert theirs.status_code == 404 and not theirs.content.startswith(b"\x89PNG")
    assert (missing.status_code, missing.text) == (404, theirs.text)
    assert_refused(httpx.get(url, timeout=60), "the page route without login")
    assert "alice-cave-map.pdf" not in {d["name"] for d in bob.predict(api_name="/list_documents")}


# ---- 3. foreign origins and hosts --------------------------------------------------------------------


def test_foreign_origin_is_refused_even_with_a_session(server, alice, alice_doc):
    cookie = {SESSION: alice.cookies[SESSION]}
    own = server.url.rstrip("/")
    call = server.url + "gradio_api/call/list_documents"
    ok = httpx.post(call, json={"data": []}, cookies=cookie, headers={"origin": own}, timeout=30)
    assert ok.status_code == 200 and ok.json().get("event_id"), ok.text
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{free_port()}"):
        r = httpx.post(call, json={"data": []}, cookies=cookie, headers={"origin": origin}, timeout=30)
        assert r.status_code == 403, (origin, r.status_code, r.text)
        assert "event_id" not in r.text
    r = httpx.post(server.url + "gradio_api/upload", files={"files": ("x.txt", b"zorblax")}, cookies=cookie,
                   headers={"origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403
    r = httpx.get(f"{server.url}ragchat/original/{alice_doc['id']}", cookies=cookie,
                  headers={"origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403 and "Quendra" not in r.text
    # DNS rebinding: evil.example resolving to 127.0.0.1 reaches us with its own Host
    r = httpx.get(f"{server.url}ragchat/original/{alice_doc['id']}", cookies=cookie,
                  headers={"host": f"evil.example:{server.port}"}, timeout=30)
    assert r.status_code == 403 and "Quendra" not in r.text


# ---- 4. a non-loopback bind without users ------------------------------------------------------------


def test_non_loopback_bind_without_users_refuses_before_binding(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragchat.cli", "--store", str(tmp_path / "empty"), "serve", "--host", "0.0.0.0",
         "--port", str(port)],
        cwd=tmp_path, env=clean_env(GRADIO_TEMP_DIR=str(tmp_path / "gradio")), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    proc.kill()
                    pytest.fail("ragchat serve bound 0.0.0.0 without any user")
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            pytest.fail("ragchat serve --host 0.0.0.0 neither refused nor exited in time")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 2, (proc.returncode, out, err)
    assert "--insecure-no-auth" in err and "0.0.0.0" in err, err
    assert "is running at" not in out
