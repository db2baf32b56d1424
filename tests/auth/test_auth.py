"""Team mode: users and passwords, private collections, the bind rule, login and CORS on web routes.

Privacy is checked through the real engine (Chroma on disk, the bundled embedder, BM25): another
user's private chunks are never returned by Retriever.search in any mode, nor given to the model by
ChatEngine.stream, nor served by the web app's routes. The web security is checked on a tiny FastAPI
app (every route enumerated), on Gradio mounted with our sync and async auth dependencies, and on the
real ragchat app (build_app) with every one of its routes, Gradio's included.
"""

from __future__ import annotations

import argparse
import re
import time

import pytest
from argon2 import PasswordHasher
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from itsdangerous.encoding import base64_decode, base64_encode
from starlette.routing import Mount

from conftest import make_settings
from ragchat import auth, cli
from ragchat.auth.commands import read_password
from ragchat.core import access
from ragchat.core.access import AccessError
from ragchat.answer.replies import NO_DOCUMENTS
from ragchat.engine import Engine
from ragchat.core.errors import ConfigError
from ragchat.ingest.pipeline import SourceFile
from ragchat.retrieve.search import Filters
from ragchat.store.catalog import Catalog
from ragchat.store.tables import User

pytestmark = pytest.mark.filterwarnings("ignore:Setting per-request cookies:DeprecationWarning")

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)  # tests only: fast argon2id
PASSWORD = "correct horse battery"
BASE = "http://127.0.0.1:7860"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    monkeypatch.setattr(auth.users, "HASHER", CHEAP)


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield cat
    cat.close()


# ---- users and passwords ------------------------------------------------------------------------


def users_args(action, name=None, admin=False, password=None):
    return argparse.Namespace(action=action, name=name, admin=admin, password=password)


def test_users_cli_add_list_passwd_remove_never_echoes_passwords(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for k in [k for k in __import__("os").environ if k.startswith("RAGCHAT_")]:
        monkeypatch.delenv(k)
    store = str(tmp_path / "store")

    assert cli.main(["--store", store, "users", "add", "alice", "--admin", "--password", "alice-secret-1"]) == 0
    monkeypatch.setenv("RAGCHAT_PASSWORD", "bob-secret-22")
    assert cli.main(["--store", store, "users", "add", "bob"]) == 0
    assert cli.main(["--store", store, "users", "add", "bob"]) == 1  # exists
    assert cli.main(["--store", store, "users", "add", "../evil"]) == 1  # not a user name
    monkeypatch.setenv("RAGCHAT_PASSWORD", "short")
    assert cli.main(["--store", store, "users", "add", "carol"]) == 1  # too short
    assert cli.main(["--store", store, "users", "list"]) == 0
    monkeypatch.setenv("RAGCHAT_PASSWORD", "bob-new-secret-3")
    assert cli.main(["--store", store, "users", "passwd", "bob"]) == 0
    assert cli.main(["--store", store, "users", "passwd", "nobody"]) == 1
    assert cli.main(["--store", store, "users", "remove", "alice"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    for secret in ("alice-secret-1", "bob-secret-22", "bob-new-secret-3"):
        assert secret not in text
    assert re.search(r"alice\s+admin", text) and re.search(r"bob\s+user", text)
    assert "command line can be seen" in out.err  # --password is discouraged, not forbidden

    cat = Catalog(make_settings(tmp_path / "store").catalog_sqlalchemy_url)
    try:
        assert [u.name for u in auth.list_users(cat)] == ["bob"]
        with cat.session() as s:
            stored = s.get(User, "bob").password_hash
        assert stored.startswith("$argon2id$") and "bob-new-secret-3" not in stored
        assert auth.authenticate(cat, "bob", "bob-new-secret-3")
        assert not auth.authenticate(cat, "bob", "bob-secret-22")
    finally:
        cat.close()


def test_users_command_prompts_twice_and_refuses_without_a_terminal(tmp_path, capsys):
    settings = make_settings(tmp_path / "store")
    asked = []

    def prompt(text):
        asked.append(text)
        return "prompted-secret-9"

    assert auth.users_command(settings, users_args("add", "dana"), env={}, prompt=prompt) == 0
    assert len(asked) == 2 and "prompted-secret-9" not in capsys.readouterr().out
    answers = iter(["one-password-1", "another-password-2"])
    with pytest.raises(auth.AuthError, match="differ"):
        auth.users_command(settings, users_args("passwd", "dana"), env={}, prompt=lambda _: next(answers))
    with pytest.raises(ConfigError, match="RAGCHAT_PASSWORD"):
        read_password(users_args("add", "eve"), {}, None, stdin_tty=False)


def test_authenticate_costs_one_argon2_verification_whoever_asks(catalog):
    auth.add_user(catalog, "alice", PASSWORD)
    calls = []

    class Counting(PasswordHasher):
        def verify(self, hash, password):
            calls.append(hash)
            return super().verify(hash, password)

    counting = Counting(time_cost=1, memory_cost=64, parallelism=1)
    cases = [("alice", PASSWORD, True), ("alice", "wrong password", False), ("nobody", PASSWORD, False),
             ("../x", PASSWORD, False), ("alice", "x" * 5000, False), ("", "", False)]
    for name, password, expected in cases:
        calls.clear()
        assert auth.authenticate(catalog, name, password, counting) is expected
        assert len(calls) == 1, f"{name!r}: unknown or malformed names must cost the same verification"


def test_old_hash_parameters_are_upgraded_on_login(catalog):
    weak = PasswordHasher(time_cost=1, memory_cost=16, parallelism=1)
    auth.add_user(catalog, "alice", PASSWORD, hasher=weak)
    assert auth.authenticate(catalog, "alice", PASSWORD, CHEAP)
    with catalog.session() as s:
        assert "m=64," in s.get(User, "alice").password_hash


# ---- the bind rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host,users,insecure,expected", [
    ("127.0.0.1", 0, False, "open"), ("localhost", 0, False, "open"), ("::1", 0, False, "open"),
    ("127.0.0.1", 2, False, "login"), ("0.0.0.0", 1, False, "login"), ("192.168.1.5", 0, True, "insecure"),
    ("0.0.0.0", 0, False, None), ("::", 0, False, None), ("my-host.lan", 0, False, None), ("", 0, False, None),
])
def test_non_loopback_bind_needs_users_or_the_insecure_flag(tmp_path, host, users, insecure, expected):
    settings = make_settings(tmp_path, server={"insecure_no_auth": insecure})
    if expected is None:
        with pytest.raises(ConfigError, match="ragchat users add"):
            auth.require_auth_for_bind(host, settings, users)
    else:
        assert auth.require_auth_for_bind(host, settings, users) == expected


# ---- collection rules ------------------------------------------------------------------------------


def test_collection_naming_rules():
    assert access.owned_collection("default", None) == ("default", None)
    assert access.owned_collection("default", "alice") == ("~alice/default", "alice")
    assert access.owned_collection("~alice/notes", "alice") == ("~alice/notes", "alice")
    assert access.owned_collection("~alice/notes", None) == ("~alice/notes", "alice")
    with pytest.raises(AccessError):
        access.owned_collection("~bob/notes", "alice")
    for bad in ("~", "~alice", "~alice/", "~../x/y", "a\x00b", ""):
        with pytest.raises(AccessError):
            access.owned_collection(bad, None)
    assert access.can_read_collection("default", None) and access.can_read_collection("default", "bob")
    assert access.can_read_collection("~bob/x", "bob") and not access.can_read_collection("~bob/x", "alice")
    assert not access.can_read_collection("~bob/x", None)


# ---- privacy through the engine -----------------------------------------------------------------------

ALICE = "Alice's salary negotiation: the codeword is pelican orchid and the raise is twelve percent."
BOB = "Bob's garden journal: the tomatoes need full sun and the basil needs water every morning."
SHARED = "The company handbook: the office opens at nine and the cafeteria serves lunch at noon."
SECRET_Q = "pelican orchid codeword salary negotiation raise"


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """One engine for the module: a shared document, and alice and bob each with a private notes.txt."""
    root = tmp_path_factory.mktemp("team")
    eng = Engine(make_settings(root / "store", llm={"max_answer_tokens": 16}))
    for owner, text in ((None, SHARED), ("alice", ALICE), ("bob", BOB)):
        folder = root / (owner or "shared")
        folder.mkdir()
        (folder / "notes.txt").write_text(text)
        (r,) = eng.ingestor.ingest([SourceFile(folder / "notes.txt", "notes.txt")], "default", owner=owner)
        assert r.outcome == "added", r
    yield eng
    eng.close()


def doc_of(eng, owner):
    (d,) = [d for d in eng.catalog.documents() if d.owner == owner]
    return d


def test_same_file_name_from_two_users_stays_two_private_documents(team):
    docs = {d.owner: d for d in team.catalog.documents()}
    assert set(docs) == {None, "alice", "bob"}
    assert docs["alice"].collection == "~alice/default" and docs["bob"].collection == "~bob/default"
    assert docs[None].collection == "default"
    assert len({d.id for d in docs.values()}) == 3  # nobody overwrote anybody
    assert team.allowed_collections("bob") == ["default", "~bob/default"]
    assert team.allowed_collections(None) == ["default"]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_retrieval_never_returns_another_users_private_chunks(team, mode):
    alice_doc = doc_of(team, "alice").id
    found = lambda user, filters=None: {h.doc_id for h in team.retriever.search(  # noqa: E731
        SECRET_Q, team.filters_for(user, filters), k=50, mode=mode)}
    assert alice_doc in found("alice")
    for user in ("bob", None):
        assert alice_doc not in found(user)
        # asking for her document or collection by name does not get around it
        assert found(user, Filters(doc_ids=[alice_doc])) == set()
        assert found(user, Filters(collections=["~alice/default"])) == set()
    assert doc_of(team, "bob").id in {h.doc_id for h in team.retriever.search(
        "tomatoes basil garden", team.filters_for("bob"), k=50, mode=mode)}


def test_chat_never_hands_another_users_chunks_to_the_model(team):
    def answer(user, question, filters=None):
        return [e for e in team.chat.stream(question, filters=team.filters_for(user, filters))][-1].answer

    bob = answer("bob", "What is the codeword in the salary negotiation?")
    assert all(s.doc_id != doc_of(team, "alice").id for s in bob.retrieved)
    assert "pelican" not in bob.text.lower()
    assert answer("bob", "codeword", Filters(collections=["~alice/default"])).text == NO_DOCUMENTS

    alice = answer("alice", "What is the codeword in the salary negotiation?")
    assert doc_of(team, "alice").id in {s.doc_id for s in alice.retrieved}


# ---- web security on a tiny app --------------------------------------------------------------------------


def iter_routes(routes, prefix=""):
    """(path, methods) of every route, inside mounts and included routers too."""
    for r in routes:
        if isinstance(r, Mount):
            sub = getattr(r.app, "routes", None)
            if sub:
                yield from iter_routes(sub, prefix + r.path)
            else:  # a mounted ASGI app (static files)
                yield prefix + r.path + "/x", {"GET"}
        elif hasattr(r, "original_router"):  # FastAPI's included router
            yield from iter_routes(r.original_router.routes, prefix + r.include_context.prefix)
        elif hasattr(r, "path"):
            yield prefix + r.path, set(getattr(r, "methods", None) or {"GET"})


def concrete(path):
    return re.sub(r"\{[^}]+\}", "x", path) or "/"


def call(client, method, path, **kw):
    if method == "HEAD":
        return client.head(path, **kw)
    if method in ("GET", "DELETE", "OPTIONS"):
        return client.request(method, path, **kw)
    return client.request(method, path, json={}, **kw)


def security_settings(tmp_path, **server):
    return make_settings(tmp_path / "store", server={"host": "127.0.0.1", "port": 7860, **server})


def tiny_app():
    app = FastAPI()

    @app.get("/")
    def home():
        return {"page": "home"}

    @app.get("/api/data")
    def data():
        return {"data": [1, 2, 3]}

    @app.post("/api/data")
    def post_data():
        return {"ok": True}

    @app.get("/items/{item_id}")
    def item(item_id: str):
        return {"item": item_id}

    @app.get("/static/{path:path}")
    def static(path: str):
        return {"static": path}

    @app.get("/ragchat/health")
    def health():
        return {"ok": True}

    @app.get("/whoami-sync")
    def whoami_sync(user: str | None = Depends(auth.current_user)):
        return {"user": user}

    @app.get("/whoami-async")
    async def whoami_async(user: str | None = Depends(auth.current_user_async)):
        return {"user": user}

    return app


@pytest.fixture
def secured(tmp_path, catalog):
    auth.add_user(catalog, "alice", PASSWORD)
    auth.add_user(catalog, "bob", PASSWORD + "!")
    app = tiny_app()
    sec = auth.install_web_security(app, security_settings(tmp_path, allowed_origins=["https://intranet.example"]),
                                    catalog)
    assert sec.login_required  # users exist
    return app, sec, TestClient(app, base_url=BASE)


def login(client, name="alice", password=PASSWORD):
    r = client.post("/login", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    client.cookies.clear()  # each request below says who it is
    return r.cookies[auth.SESSION_COOKIE]


def test_every_route_requires_login_except_the_allow_list(secured):
    app, _, client = secured
    routes = list(iter_routes(app.routes))
    assert len(routes) >= 8
    checked = 0
    for path, methods in routes:
        for method in methods - {"HEAD"}:
            r = call(client, method, concrete(path))
            if auth.is_public(concrete(path)):
                continue
            checked += 1
            assert r.status_code == 401, f"{method} {path} answered {r.status_code} without login"
    assert checked >= 6
    # a browser is sent to the login page, keeping where it wanted to go
    r = client.get("/items/7?tab=2", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fitems%2F7%3Ftab%3D2"
    assert client.get("/static/app.js").status_code == 200 and client.get("/ragchat/health").status_code == 200

    cookie = login(client)
    for path, methods in routes:
        for method in methods - {"HEAD"}:
            assert call(client, method, concrete(path), cookies={auth.SESSION_COOKIE: cookie}).status_code == 200, path


def test_login_logout_and_cookies(secured):
    app, sec, client = secured
    page = client.get("/login?next=/items/1")
    assert page.status_code == 200 and 'name="password"' in page.text and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    r = client.post("/login", data={"username": "alice", "password": "wrong!"})
    assert r.status_code == 401 and auth.SESSION_COOKIE not in r.cookies
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "next": "//evil.example/x"},
                    headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"  # no open redirect
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    token = r.cookies[auth.SESSION_COOKIE]
    client.cookies.clear()
    assert client.get("/whoami-sync", cookies={auth.SESSION_COOKIE: token}).json() == {"user": "alice"}
    assert client.get("/whoami-async", cookies={auth.SESSION_COOKIE: token}).json() == {"user": "alice"}

    # a forged, tampered or expired token is worthless
    body, sig = token.rsplit(".", 1)  # itsdangerous: base64url(JSON payload) "." signature
    forged = base64_encode(base64_decode(body).replace(b'"alice"', b'"bob"')).decode() + "." + sig
    expired = auth.issue_token(sec.secret, "alice", auth.password_fingerprint("x"), now=time.time() - 10, ttl=1)
    for bad in (forged, expired, "garbage", token + "x"):
        assert client.get("/api/data", cookies={auth.SESSION_COOKIE: bad}).status_code == 401

    # a new password or a removed user ends the sessions at once
    bob = login(client, "bob", PASSWORD + "!")
    auth.set_password(sec.catalog, "alice", "a brand new password")
    auth.remove_user(sec.catalog, "bob")
    sec._fp_cache.clear()
    assert client.get("/api/data", cookies={auth.SESSION_COOKIE: token}).status_code == 401
    assert client.get("/api/data", cookies={auth.SESSION_COOKIE: bob}).status_code == 401

    r = client.get("/logout", follow_redirects=False)
    assert r.status_code == 200 and "Max-Age=0" in r.headers["set-cookie"]


def test_failed_logins_are_throttled(secured):
    _, _, client = secured
    for _ in range(10):
        assert client.post("/login", data={"username": "alice", "password": "nope-nope"}).status_code == 401
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 429


def test_two_servers_on_one_catalog_allow_the_throttles_limit_of_wrong_passwords_in_all(secured, tmp_path):
    """Login throttling is shared: a second server (its own app and its own connection to the same
    catalog, as another process would have) counts the first one's failures, so an attacker who
    alternates between them gets `limit` guesses in all, not `limit` per server."""
    _, sec, _ = secured
    limit = 4  # the setting, not the default
    other_catalog = Catalog(sec.catalog.url)
    try:
        clients = []
        for catalog in (sec.catalog, other_catalog):
            app = tiny_app()
            auth.install_web_security(app, security_settings(tmp_path, login_attempts=limit), catalog)
            clients.append(TestClient(app, base_url=BASE))
        first, second = clients
        allowed = 0
        for i in range(3 * limit):
            r = (first, second)[i % 2].post("/login", data={"username": "alice", "password": f"guess {i}"})
            assert r.status_code in (401, 429), r.text
            allowed += r.status_code == 401
        assert allowed == limit
        for client in (first, second):  # the right password too waits, on both servers
            assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 429
        # what is kept names neither the user nor the guesses
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("catalog.sqlite*"))
        assert b"guess 1" not in raw and b"user:alice" not in raw
    finally:
        other_catalog.close()


def test_a_successful_login_does_not_count_and_clears_the_users_failures(catalog):
    for throttle in (auth.LoginThrottle(3, 300), auth.LoginThrottle(3, 300, catalog=catalog)):
        for _ in range(2):
            assert throttle.begin("ip:1", "user:alice") is not None  # two wrong passwords
        ok = throttle.begin("ip:1", "user:alice")
        throttle.succeeded(ok, "user:alice")  # the third was right
        assert throttle.begin("ip:2", "user:alice") is not None  # alice starts afresh
        assert throttle.begin("ip:1", "user:bob") is not None  # the address has 3 failures now: 2 + 1
        assert throttle.begin("ip:1", "user:carol") is None  # the address is at the limit
        assert throttle.begin("ip:3", "user:carol") is not None  # carol, from elsewhere, is not


def test_foreign_origins_and_hosts_are_refused(secured):
    _, _, client = secured
    cookie = {auth.SESSION_COOKIE: login(client)}
    ok = client.get("/api/data", cookies=cookie, headers={"origin": BASE})
    assert ok.status_code == 200 and "access-control-allow-origin" not in ok.headers
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999", "https://intranet.example.evil.com"):
        r = client.post("/api/data", cookies=cookie, headers={"origin": origin})
        assert r.status_code == 403, origin
        assert "allowed_origins" in r.json()["detail"]
    r = client.post("/api/data", cookies=cookie, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    # a login from a foreign page (login CSRF) is refused too
    r = client.post("/login", data={"username": "alice", "password": PASSWORD}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403

    listed = client.get("/api/data", cookies=cookie, headers={"origin": "https://intranet.example"})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == "https://intranet.example"
    pre = client.options("/api/data", headers={"origin": "https://intranet.example", "access-control-request-method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-credentials"] == "true"
    assert client.options("/api/data", headers={"origin": "http://evil.example",
                                                "access-control-request-method": "POST"}).status_code == 403

    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 reaches us with its own Host
    rebound = TestClient(client.app, base_url="http://evil.example:7860")
    assert rebound.get("/ragchat/health").status_code == 403
    assert TestClient(client.app, base_url="http://localhost:7860").get("/ragchat/health").status_code == 200


def test_open_mode_on_loopback_still_checks_origins(tmp_path, catalog):
    app = tiny_app()
    sec = auth.install_web_security(app, security_settings(tmp_path), catalog)  # no users, loopback
    assert not sec.login_required
    client = TestClient(app, base_url=BASE)
    assert client.get("/api/data").status_code == 200
    assert client.get("/whoami-sync").json() == {"user": None}
    assert client.post("/login", data={"username": "a", "password": "b"}).status_code == 404
    assert client.post("/api/data", headers={"origin": "http://evil.example"}).status_code == 403
    with pytest.raises(ConfigError):
        auth.install_web_security(tiny_app(), security_settings(tmp_path, host="0.0.0.0"), catalog)


@pytest.mark.parametrize("dependency", [auth.current_user, auth.current_user_async])
def test_dependencies_alone_refuse_without_login(tmp_path, catalog, dependency):
    """Even without the middleware (a route mounted outside it), the sync and the async dependency
    both fail closed."""
    auth.add_user(catalog, "alice", PASSWORD)
    sec = auth.WebSecurity(security_settings(tmp_path), catalog)
    token = sec.login("alice", PASSWORD)
    app = FastAPI()

    @app.get("/me")
    def me(user: str | None = Depends(dependency)):
        return {"user": user}

    client = TestClient(app, base_url=BASE)
    assert client.get("/me").status_code == 401  # no WebSecurity at all: closed
    app.state.ragchat_security = sec
    assert client.get("/me").status_code == 401
    assert client.get("/me", cookies={auth.SESSION_COOKIE: "x.y"}).status_code == 401
    assert client.get("/me", cookies={auth.SESSION_COOKIE: token}).json() == {"user": "alice"}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_gradio_honours_our_sync_and_async_auth_dependency(tmp_path, catalog, kind):
    """Gradio's async auth_dependency once let everyone in: check the version we run, without our
    middleware, that an anonymous request is refused and a signed-in one sees its user name."""
    import gradio as gr

    auth.add_user(catalog, "alice", PASSWORD)
    sec = auth.WebSecurity(security_settings(tmp_path), catalog)
    with gr.Blocks() as blocks:
        box = gr.Textbox()
        box.submit(lambda x: x, box, box, api_name="echo")
    dependency = sec.auth_dependency if kind == "sync" else sec.auth_dependency_async
    app = gr.mount_gradio_app(FastAPI(), blocks, path="/", auth_dependency=dependency)
    client = TestClient(app, base_url=BASE)
    for path in ("/config", "/gradio_api/info"):
        assert client.get(path).status_code == 401, path
    token = sec.login("alice", PASSWORD)
    r = client.get("/config", cookies={auth.SESSION_COOKIE: token})
    assert r.status_code == 200 and r.json()["username"] == "alice"


# ---- the real ragchat app --------------------------------------------------------------------------------


def test_real_app_routes_all_need_login_and_originals_stay_private(team, tmp_path):
    server = pytest.importorskip("ragchat.ui.server")
    catalog = team.catalog
    for name in ("alice", "bob"):
        if name not in {u.name for u in auth.list_users(catalog)}:
            auth.add_user(catalog, name, PASSWORD)
    app, _ = server.build_app(team, workdir=tmp_path)
    sec = auth.install_web_security(app, team.settings, catalog)
    assert sec.login_required
    client = TestClient(app, base_url=BASE)

    routes = list(iter_routes(app.routes))
    assert len(routes) > 30  # ours and Gradio's
    refused = 0
    for path, methods in routes:
        if auth.is_public(concrete(path)):
            continue
        for method in sorted(methods - {"HEAD"}):
            r = call(client, method, concrete(path))
            assert r.status_code == 401, f"{method} {path} answered {r.status_code} without login"
            refused += 1
    assert refused > 30
    assert client.get("/", headers={"accept": "text/html"}, follow_redirects=False).status_code == 303
    assert client.get("/gradio_api/file=" + str(team.store / "catalog.sqlite")).status_code == 401

    alice_doc = doc_of(team, "alice")
    as_bob = {auth.SESSION_COOKIE: login(client, "bob")}
    as_alice = {auth.SESSION_COOKIE: login(client, "alice")}
    assert client.get(f"/ragchat/original/{alice_doc.id}", cookies=as_bob).status_code == 404
    r = client.get(f"/ragchat/original/{alice_doc.id}", cookies=as_alice)
    assert r.status_code == 200 and "pelican orchid" in r.text
    app.state.webapp.jobs.close()
