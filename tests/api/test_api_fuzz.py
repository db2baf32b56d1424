"""The HTTP API fuzzed from its own OpenAPI schema with schemathesis (4.x), against a real `ragchat serve`.

One server in team mode (users alice and bob, keys made with the real CLI, a shared document, a
private document of alice's), answers from tests/ollama_fake.py. Schemathesis loads the schema the
server serves (/api/openapi.json) and runs its engine, as `schemathesis run` does, over every
/api/v1 and /v1 operation: examples, coverage (the edges of every field, undeclared methods,
missing fields), fuzzing (hypothesis, derandomized) and stateful sequences (the links of the
schema: upload -> document -> re-index / delete, upload -> job):

- as bob, with alice's document id, job id and collection as likely values of every id field:
  every check, and no answer holds her document's id, file name or text;
- without a key, and with a made-up one: every answer is a declared 401, and nothing changes;
- as alice: every check (no 5xx but a declared 503, statuses, content types and bodies as declared,
  what the schema allows is accepted and what it forbids is refused, 405 for undeclared methods).

The number of cases tried is in the assertion messages and in the terminal summary (see
docs/SECURITY.md for the figures). Budget: about two minutes on two cores.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

import schemathesis
from schemathesis import engine as st_engine

from conftest import AppServer, TEST_MODEL, run_cli
from ollama_fake import FakeOllama

pytestmark = [pytest.mark.slow]

PASSWORDS = {"alice": "alice-pass-4821", "bob": "bob-pass-97310"}
ALICE_FILE = "alice-field-notes.txt"
ALICE_TEXT = ("Zorblax is a purple volcanic mineral found only on the island of Quendra. "
              "Zorblax crystals glow faintly at night and are used by the Quendra miners as lanterns.\n")
SHARED_FILE = "office-handbook.txt"
SHARED_TEXT = "The office handbook: the office opens at nine and the cafeteria serves lunch at noon.\n"
ALICE_WORDS = ("zorblax", "quendra", ALICE_FILE)  # in her file or its name only
API_PATHS = r"^/(api/)?v1/"
SEED = 20261203
TIMEOUT = 120


def cli(cwd: Path, *args: str) -> str:
    done = run_cli(*args, cwd=cwd, env={"RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL},
                   timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def fake_reply(body: dict) -> str:
    m = re.search(r"^\[1\] (.+)$", body["messages"][-1]["content"], re.M)
    return "I could not find that in the documents." if m is None else " ".join(m.group(1).split()[:8]) + " [1]."


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The server, its users' keys, and alice's private document (uploaded through the API)."""
    root = tmp_path_factory.mktemp("fuzz")
    store = root / "store"
    for name, password in PASSWORDS.items():
        cli(root, "--store", str(store), "users", "add", name, "--password", password)
    (root / SHARED_FILE).write_text(SHARED_TEXT)
    cli(root, "--store", str(store), "ingest", str(root / SHARED_FILE))
    keys = {name: cli(root, "--store", str(store), "users", "key", "create", name) for name in PASSWORDS}
    with FakeOllama(models=["llama3.2"], reply=fake_reply) as fake:
        server = AppServer(store, root / "server", env={
            "RAGCHAT_LLM__PROVIDER": "ollama", "RAGCHAT_LLM__OLLAMA_URL": fake.url,
            "RAGCHAT_LLM__OLLAMA_MODEL": "llama3.2", "RAGCHAT_INGEST__MAX_FILE_MB": "1"})
        server.start(timeout=300)
        client = httpx.Client(base_url=server.url.rstrip("/"), timeout=TIMEOUT)
        try:
            alice = {"Authorization": f"Bearer {keys['alice']}"}
            r = client.post("/api/v1/documents", headers=alice, files={"file": (ALICE_FILE, ALICE_TEXT.encode())})
            assert r.status_code == 202, r.text
            doc_id, job_id = r.json()["documents"][0]["id"], r.json()["job"]["id"]
            deadline = time.monotonic() + 300
            while client.get(f"/api/v1/documents/{doc_id}", headers=alice).json()["status"] != "done":
                assert time.monotonic() < deadline, "alice's document was not indexed"
                time.sleep(0.3)
            yield {"server": server, "client": client, "keys": keys, "doc_id": doc_id, "job_id": job_id}
        finally:
            client.close()
            server.stop()
            assert "Traceback" not in server.log.read_text(errors="replace"), server.log_tail()


def listing(team) -> dict[str, list]:
    """What each user sees: the documents with their status and chunk counts, and the collections."""
    out = {}
    for name, key in team["keys"].items():
        headers = {"Authorization": f"Bearer {key}"}
        docs = team["client"].get("/api/v1/documents", headers=headers).json()["documents"]
        out[name] = sorted((d["id"], d["collection"], d["status"], d["chunks"]) for d in docs)
        out[name + " collections"] = team["client"].get("/api/v1/collections", headers=headers).json()
    return out


def settled(team, quiet: float = 3.0, timeout: float = 120) -> dict[str, list]:
    """The listing once the uploads of an earlier run are ingested: unchanged for ``quiet`` seconds."""
    last, since, deadline = listing(team), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.5)
        now = listing(team)
        if now != last:
            last, since = now, time.monotonic()
    return last


# ---- the run --------------------------------------------------------------------------------------


@schemathesis.check
def nothing_of_alice_for_bob(ctx, response, case):
    """Bob's answers never hold alice's document id (unless he sent it), file name or text."""
    sent = response.request.headers.get("authorization", "")
    secret = getattr(case.operation.schema, "ragchat_private", None)
    if not secret or sent != f"Bearer {secret['bob']}":
        return None
    text = response.content.decode("utf-8", "replace").lower()
    asked = (response.request.body or b"")
    asked = (asked if isinstance(asked, bytes) else asked.encode()).decode("utf-8", "replace") + response.request.url
    leaked = [w for w in ALICE_WORDS if w.lower() in text]
    if secret["doc_id"] in text and secret["doc_id"] not in asked:
        leaked.append("her document id")
    if leaked:
        raise AssertionError(f"bob's answer holds alice's {', '.join(leaked)}")
    return None


@schemathesis.check
def refused_without_a_valid_key(ctx, response, case):
    """Without a key, or with a made-up one, every API answer is 401."""
    sent = response.request.headers.get("authorization")
    secret = getattr(case.operation.schema, "ragchat_private", None)
    if secret is None or sent in {f"Bearer {k}" for k in (secret["alice"], secret["bob"])}:
        return None
    if response.status_code != 401:
        raise AssertionError(f"answered {response.status_code} without a valid key")
    return None


def multipart_text(check: str, case) -> bool:
    """A "schema-violating" upload that is valid on the wire: multipart fields are text, so the
    number, list, null or non-binary "file" schemathesis meant arrives as a string (and the server
    trims the whitespace around the collection's name). The upload's other checks still run."""
    return check == "negative_data_rejection" and case.method == "POST" and case.path == "/api/v1/documents"


def fuzz(team, run: str, key: str | None, *, phases: dict, max_examples: int, max_time: int,
         extra: dict | None = None) -> tuple[dict[str, int], list[str]]:
    """Run schemathesis's engine over the API's operations; (cases tried by phase, failures as text)."""
    url = team["server"].url.rstrip("/")
    config = schemathesis.Config.from_dict({
        "seed": SEED, "max-time": max_time, "workers": 1, "request-timeout": 60, "continue-on-failure": True,
        "base-url": url, "headers": {"Authorization": f"Bearer {key}"} if key else {},
        "generation": {"max-examples": max_examples, "deterministic": True, "mode": "all"},
        "phases": {"enabled": False, **{p: {"enabled": True, **more} for p, more in phases.items()}},
        "checks": {"max_response_time": 60,
                   "not_a_server_error": {"expected-statuses": ["1xx", "2xx", "3xx", "4xx", "503"]},
                   # ingestion and removal run in the background (202): an upload's document can be
                   # removed or re-indexed once ingestion has read it, and a removal queued behind a
                   # running ingestion leaves the document readable until it runs. These two checks
                   # expect a resource to exist once created and to be gone once deleted.
                   "ensure_resource_availability": {"enabled": False}, "use_after_free": {"enabled": False}},
        "suppress-health-check": ["filter_too_much", "too_slow"],  # few examples, a real server: not a finding
        **(extra or {}),
    })
    alice = {"Authorization": f"Bearer {team['keys']['alice']}"}  # the schema is behind the login too
    schema = schemathesis.openapi.from_url(url + "/api/openapi.json", config=config, headers=alice)
    schema = schema.include(path_regex=API_PATHS)
    schema.ragchat_private = {"doc_id": team["doc_id"], "alice": team["keys"]["alice"], "bob": team["keys"]["bob"]}
    cases: dict[str, int] = {}
    failures: list[str] = []
    for event in st_engine.from_schema(schema).execute():
        recorder = getattr(event, "recorder", None)
        if recorder is not None:
            phase = str(getattr(event.phase, "value", event.phase))
            cases[phase] = cases.get(phase, 0) + len(recorder.cases)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    case = recorder.cases[case_id].value
                    if check.failure_info is not None and not multipart_text(check.name, case):
                        failures.append(f"{check.name}: {case.method} {case.formatted_path}: "
                                        f"{check.failure_info.failure.title}: {check.failure_info.failure.message[:300]}")
        if type(event).__name__ in ("NonFatalError", "FatalError"):
            failures.append(f"error in {getattr(event, 'label', '')}: "
                            f"{getattr(event, 'info', None) or getattr(event, 'exception', None)}")
    return cases, sorted(set(failures))


def report(request, run: str, cases: dict[str, int]) -> None:
    """The number of cases tried, in the test output (without -s too)."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            phases = ", ".join(f"{phase} {n}" for phase, n in cases.items())
            terminal.write_line(f"\nschemathesis, {run}: {sum(cases.values())} cases ({phases}), 0 failures")


def test_bob_sees_nothing_of_alice(team, request):
    alice_values = {"dictionaries": {
        "doc": {"values": [team["doc_id"]]}, "job": {"values": [team["job_id"]]},
        "collection": {"values": ["~alice/default", "~alice/", "~alice"]},
        "model": {"values": ["ragchat/~alice/default"]}},
        "parameters": {
            "path.doc_id": {"dictionary": "doc", "probability": 0.7}, "path.job_id": {"dictionary": "job", "probability": 0.7},
            "path.model": {"dictionary": "model", "probability": 0.7},
            "query.collection": {"dictionary": "collection", "probability": 0.7},
            "body.document_ids[*]": {"dictionary": "doc", "probability": 0.7},
            "body.collections[*]": {"dictionary": "collection", "probability": 0.7},
            "body.model": {"dictionary": "model", "probability": 0.5}}}
    before = listing(team)
    cases, failures = fuzz(team, "bob", team["keys"]["bob"], phases={"examples": {}, "coverage": {}, "fuzzing": {}},
                           max_examples=15, max_time=40, extra=alice_values)
    assert not failures, f"{len(failures)} failures in {cases} cases:\n" + "\n".join(failures)
    after = listing(team)
    assert after["alice"] == before["alice"], "bob changed what alice sees"
    report(request, "as bob", cases)


def test_no_valid_key_no_answer_and_no_change(team, request):
    before = settled(team)
    tried = 0
    for run, key in (("no key", None), ("made-up key", "rck_0123456789ab_" + "A" * 43)):
        cases, failures = fuzz(team, run, key, phases={"coverage": {}, "fuzzing": {}}, max_examples=8, max_time=15)
        assert not failures, f"{run}: {len(failures)} failures in {cases} cases:\n" + "\n".join(failures)
        tried += sum(cases.values())
        report(request, run, cases)
    assert listing(team) == before, "a request without a valid key changed something"
    assert tried > 100


def test_alice_every_check_and_stateful(team, request):
    cases, failures = fuzz(team, "alice", team["keys"]["alice"], max_examples=15, max_time=60,
                           phases={"examples": {}, "coverage": {}, "fuzzing": {}, "stateful": {"max-steps": 6}})
    assert not failures, f"{len(failures)} failures in {cases} cases:\n" + "\n".join(failures)
    assert sum(cases.values()) > 1000 and cases.get("stateful", 0) > 50, cases
    health = httpx.get(team["server"].url + "ragchat/health", timeout=10)
    assert health.status_code == 200
    report(request, "as alice", cases)
