"""Two `ragchat serve` processes on the same real services behave as one app (shared mode).

The services are real servers started by tests/services.py: PostgreSQL (the catalog and the job
queue), Chroma's own server, and an OpenAI-compatible LLM server (llama.cpp's server on the test
model). Both web servers share the store folder (the originals) and each keeps its own BM25 cache.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from conftest import PDFS, AppServer, run_cli
from ragchat.store.catalog import Catalog
from ragchat.store.vectors import VectorIndex

pytestmark = [pytest.mark.slow]  # PostgreSQL, Chroma's server and several ragchat servers

QUESTION = "How does TableFormer incorporate the structural biases of tables?"  # the small test model cites its answer
TIMEOUT = httpx.Timeout(300, connect=10)
PASSWORD = "correct horse battery staple"


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def cli(root, env: dict, *args: str) -> subprocess.CompletedProcess:
    return run_cli("--store", str(root / "store"), *args, cwd=root, env=env, timeout=300)


@pytest.fixture(scope="module")
def two(services, tmp_path_factory):
    """Servers a and b on one deployment, with a user made by the real CLI: clients carry her API key."""
    root = tmp_path_factory.mktemp("two-servers")
    fresh = services.fresh()
    env = {**services.env(fresh, root / "lexical-cache"),
           "RAGCHAT_LLM__PROVIDER": "openai", "RAGCHAT_LLM__BASE_URL": services.llm_url, "RAGCHAT_LLM__MODEL": "test",
           "RAGCHAT_LLM__API_KEY": services.llm_key, "RAGCHAT_CHAT__SOURCE_TOKENS": "64"}
    done = cli(root, env, "users", "add", "alice", "--password", PASSWORD)
    assert done.returncode == 0, done.stderr
    made = cli(root, env, "users", "key", "create", "alice")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    servers = {name: AppServer(root / "store", root / name, env=env) for name in ("a", "b")}
    clients = {}
    try:
        for name, server in servers.items():
            server.start(timeout=300)
            clients[name] = httpx.Client(base_url=server.url.rstrip("/"), timeout=TIMEOUT,
                                         headers={"Authorization": f"Bearer {key}"})
        yield {"servers": servers, "clients": clients, "fresh": fresh, "root": root, "key": key}
    finally:
        for c in clients.values():
            c.close()
        for s in servers.values():
            s.stop()


def wait_done(client: httpx.Client, doc_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/documents/{doc_id}")
        if r.status_code == 200:
            doc = r.json()
            if doc["status"] in ("done", "failed"):
                return doc
        time.sleep(0.3)
    raise AssertionError(f"document {doc_id} did not finish in {timeout} s: {doc}")


def search(client: httpx.Client, query: str, mode: str = "hybrid") -> list[dict]:
    r = client.post("/api/v1/search", json={"query": query, "mode": mode, "top_k": 5})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def eventually(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def upload(client: httpx.Client, name: str, data: bytes) -> str:
    r = client.post("/api/v1/documents", files={"file": (name, data)})
    assert r.status_code == 202, r.text
    (doc,) = r.json()["documents"]
    return doc["id"]


def test_upload_through_a_is_found_and_cited_through_b_and_a_delete_through_b_leaves_a(two):
    a, b = two["clients"]["a"], two["clients"]["b"]
    doc_id = upload(a, "tableformer.pdf", (PDFS / "mineru__demo3.pdf").read_bytes())
    done = wait_done(a, doc_id)
    assert done["status"] == "done" and done["chunks"] > 10, done

    # B sees it at once in Chroma (dense) and, within its follow interval, in its own BM25 cache
    assert any(h["document_id"] == doc_id for h in search(b, "TableFormer table structure", mode="dense"))
    assert eventually(lambda: any(h["document_id"] == doc_id for h in search(b, "TableFormer", mode="lexical")))

    r = b.post("/api/v1/ask", json={"question": QUESTION})
    assert r.status_code == 200, r.text
    final = ndjson(r)[-1]
    assert final["type"] == "done" and not final.get("error"), final
    assert final["sources"], final  # cited
    assert {s["doc_id"] for s in final["sources"]} == {doc_id}
    assert re.search(r"\[\d+\]", final["answer"]), final["answer"]

    # a delete through B: A stops finding and citing it at once
    r = b.delete(f"/api/v1/documents/{doc_id}")
    assert r.status_code in (200, 202), r.text
    assert eventually(lambda: b.get(f"/api/v1/documents/{doc_id}").status_code == 404, 60)
    for mode in ("dense", "lexical", "hybrid"):
        assert not any(h["document_id"] == doc_id for h in search(a, "TableFormer table structure", mode=mode)), mode
    r = a.post("/api/v1/ask", json={"question": QUESTION})
    final = ndjson(r)[-1]
    assert not final["sources"] and not any(s["doc_id"] == doc_id for s in final.get("retrieved", []))
    assert a.get(f"/api/v1/documents/{doc_id}").status_code == 404


def test_logins_conversations_and_the_openai_client_work_on_either_server(two):
    from gradio_client import Client
    from openai import OpenAI

    a, b = two["servers"]["a"], two["servers"]["b"]
    # a session cookie signed by A is good on B (the signing secret lives in the shared catalog)
    login = httpx.post(a.url + "login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False, timeout=30)
    assert login.status_code == 200 and login.json()["user"] == "alice" and login.cookies, login.text
    r = httpx.get(b.url + "api/v1/documents", cookies=login.cookies, timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(b.url + "api/v1/documents", timeout=30).status_code == 401

    # a conversation held on A's page is listed and read on B's page
    on_a = Client(a.url, auth=("alice", PASSWORD), verbose=False)
    on_a.predict(api_name="/new_chat")
    on_a.submit("What is in my documents?", api_name="/ask").result(timeout=300)
    cid = on_a.predict(api_name="/list_conversations")[0]["id"]
    on_b = Client(b.url, auth=("alice", PASSWORD), verbose=False)
    assert cid in [c["id"] for c in on_b.predict(api_name="/list_conversations")]
    messages = on_b.predict(cid, api_name="/conversation_messages")
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "What is in my documents?"

    # the official openai client, unchanged, against B's OpenAI-compatible routes, answered by the LLM server
    doc_id = upload(two["clients"]["a"], "tableformer.pdf", (PDFS / "mineru__demo3.pdf").read_bytes())
    assert wait_done(two["clients"]["a"], doc_id)["status"] == "done"
    client = OpenAI(base_url=b.url + "v1", api_key=two["key"], max_retries=0, timeout=300)
    reply = client.chat.completions.create(model="ragchat", messages=[{"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content
    extra = reply.model_extra or {}
    sources = extra.get("sources") or (reply.choices[0].message.model_extra or {}).get("sources")
    assert sources is not None, reply
    chunks = list(client.chat.completions.create(model="ragchat", stream=True,
                                                 messages=[{"role": "user", "content": QUESTION}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    two["clients"]["a"].delete(f"/api/v1/documents/{doc_id}")
    assert eventually(lambda: two["clients"]["b"].get(f"/api/v1/documents/{doc_id}").status_code == 404, 60)


def test_a_job_whose_server_is_killed_is_finished_by_the_other(two):
    a = two["clients"]["a"]
    catalog = Catalog(two["fresh"]["catalog_url"])
    # A text long enough that embedding it takes a while on two cores (about 1,500 chunks).
    words = ["battery", "thermal", "cell", "module", "voltage", "capacity", "charge", "safety", "pack", "cooling"]
    lines = [f"Line {i}: the {words[i % 10]} of unit {i} measures {i * 7 % 1000} points, "
             f"and the {words[(i * 3) % 10]} check {i} passed after {i % 60} minutes." for i in range(9000)]
    doc_id = upload(a, "long-report.txt", "\n".join(lines).encode())

    def running_job():
        jobs = [j for j in catalog.jobs_for(doc_id) if j.status == "running" and j.done > 0]
        return jobs[0] if jobs else None

    job = eventually(running_job, 120)
    assert job is not None, "no server took the job"
    pids = {name: s.proc.pid for name, s in two["servers"].items()}
    holder = next(name for name, pid in pids.items() if f":{pid}:" in job.worker)
    survivor = "b" if holder == "a" else "a"
    os.kill(pids[holder], signal.SIGKILL)
    two["servers"][holder].proc.wait(10)

    other = two["clients"][survivor]
    done = wait_done(other, doc_id, timeout=600)
    assert done["status"] == "done", done
    (final,) = catalog.jobs_for(doc_id)
    assert final.status == "done" and final.attempts == 2 and f":{pids[survivor]}:" in final.worker, final.worker
    # nothing of the dead server's half-written attempt is left: the catalog and Chroma hold the same chunks
    vectors = VectorIndex(None, None, url=two["fresh"]["shared"]["chroma_url"],
                          database=two["fresh"]["shared"]["chroma_database"])
    assert catalog.all_chunk_ids() == vectors.chunk_ids()
    assert catalog.get(doc_id).chunks == len(catalog.chunk_ids(doc_id))
    hits = eventually(lambda: [h for h in search(other, "unit 4321 measures", mode="lexical") if h["document_id"] == doc_id])
    assert hits and "unit 4321 " in hits[0]["text"]
    catalog.close()
