"""The simulated users of bench/soak.py: every request they make is recorded, and what they were told
is kept in a ledger that the end of the run checks.

- ``Recorder``: each call's kind, start, end and outcome (an HTTP status, or the exception's name);
- ``Ledger``: per document, the token its last version holds once a user was told "done" (it must be
  found), the tokens of versions replaced since and of documents deleted (they must not be), and the
  documents whose fate a user could not learn (the server that held the job was killed): those are
  left out of the checks;
- ``User``: uploads new text and Markdown files (now and then a PDF of tests/fixtures), uploads a
  changed version under the same name, deletes, searches; ``Asker``: streamed ``/api/v1/ask``;
  ``Renamer``: files written, renamed and deleted in the watched folder.

A user only touches its own documents and waits for each upload to finish, so the ledger has no
races of its own.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PDF = REPO / "tests" / "fixtures" / "pdfs" / "mineru__demo3.pdf"
PDF_QUERY = "TableFormer table structure"
WAIT_S = 300  # longest wait for an upload, a delete or a watched file to settle
WORDS = ["battery", "thermal", "cell", "module", "voltage", "capacity", "charge", "safety", "pack", "cooling",
         "river", "harbour", "engine", "copper", "lantern", "orchard", "glacier", "market", "signal", "garden"]
QUESTIONS = ["What is in my documents?", "Which unit measures the most points?", "What does TableFormer predict?",
             "Summarise the battery notes."]


def token() -> str:
    """A word no document has but the one it is put in (lowercase letters and digits, which the
    analyser keeps whole)."""
    return "soak" + uuid.uuid4().hex[:12]


def text_body(tok: str, rng: random.Random) -> str:
    lines = [f"Soak note {tok}."]
    for i in range(rng.randint(8, 40)):
        w = [rng.choice(WORDS) for _ in range(6)]
        lines.append(f"Line {i}: the {w[0]} {w[1]} of unit {rng.randint(1, 9999)} measures {rng.randint(1, 999)} "
                     f"points near the {w[2]} {w[3]}; {w[4]} and {w[5]} were checked.")
    lines.append(f"End of note {tok}.")
    return "\n".join(lines)


class Recorder:
    """Every call: (kind, start, end, status or exception name), in monotonic seconds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[tuple[str, float, float, int | str]] = []
        self.errors: Counter = Counter()

    def call(self, client: httpx.Client, kind: str, method: str, url: str, expect: tuple = (), **kw) -> httpx.Response | None:
        """expect: statuses that are an answer, not an error (a 404 while waiting for a delete)."""
        t0 = time.monotonic()
        try:
            r = client.request(method, url, **kw)
            outcome: int | str = r.status_code
        except httpx.HTTPError as exc:
            r, outcome = None, type(exc).__name__
        self.record(kind, t0, 200 if outcome in expect else outcome)
        return r

    def record(self, kind: str, t0: float, outcome: int | str, detail: str = "") -> None:
        """outcome: an HTTP status, an exception's name, or "failed" (a call that answered, with bad news)."""
        with self.lock:
            self.calls.append((kind, t0, time.monotonic(), outcome))
            if not isinstance(outcome, int) or outcome >= 400 or detail:
                self.errors[f"{kind}: {outcome}{' ' + detail[:120] if detail else ''}"] += 1

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what[:160]] += 1


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.present: dict[str, tuple[str, str]] = {}  # doc id -> (query, name) of the version told done
        self.absent: list[tuple[str, str, str]] = []  # (doc id, query, why): replaced versions, deleted documents
        self.uncertain: set[str] = set()
        self.told_done = self.deleted = 0

    def done(self, doc_id: str, query: str, name: str) -> None:
        with self.lock:
            old = self.present.get(doc_id)
            if old and old[0] != query:
                self.absent.append((doc_id, old[0], "replaced"))
            self.present[doc_id] = (query, name)
            self.uncertain.discard(doc_id)
            self.told_done += 1

    def gone(self, doc_id: str) -> None:
        with self.lock:
            old = self.present.pop(doc_id, None)
            if old:
                self.absent.append((doc_id, old[0], "deleted"))
            self.uncertain.discard(doc_id)
            self.deleted += 1

    def unsure(self, doc_id: str) -> None:
        with self.lock:
            self.present.pop(doc_id, None)  # whichever version it holds now, the replaced ones must stay gone
            self.uncertain.add(doc_id)

    def checks(self) -> tuple[dict, list]:
        with self.lock:
            unsure = set(self.uncertain)
            return ({d: v for d, v in self.present.items() if d not in unsure},
                    [a for a in self.absent if a[0] not in unsure or a[2] == "replaced"])


class Actor(threading.Thread):
    """A thread with its own HTTP client, calling a random server of ``urls`` until ``stop`` is set."""

    def __init__(self, name: str, urls: list[str], rec: Recorder, ledger: Ledger, stop: threading.Event, seed: int):
        super().__init__(name=name, daemon=True)
        self.urls, self.rec, self.ledger, self.stop_event = urls, rec, ledger, stop
        self.rng = random.Random(seed)
        self.client = httpx.Client(timeout=httpx.Timeout(120, connect=5))

    def url(self) -> str:
        return self.rng.choice(self.urls)

    def pause(self, low: float, high: float) -> None:
        self.stop_event.wait(self.rng.uniform(low, high))

    def search(self, kind: str, query: str, mode: str = "hybrid", doc_ids: list[str] | None = None,
               url: str | None = None) -> list[dict] | None:
        body = {"query": query, "mode": mode, "top_k": 10, **({"document_ids": doc_ids} if doc_ids else {})}
        r = self.rec.call(self.client, kind, "POST", (url or self.url()) + "/api/v1/search", json=body)
        return r.json()["results"] if r is not None and r.status_code == 200 else None


class User(Actor):
    def __init__(self, *a, pdf_share: float = 0.05, **kw):
        super().__init__(*a, **kw)
        self.docs: dict[str, tuple[str, str]] = {}  # doc id -> (name, query) of this user's live documents
        self.pdf_share = pdf_share
        self.n = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            roll = self.rng.random()
            if roll < 0.3 or not self.docs:
                self.upload_new()
            elif roll < 0.5:
                self.reupload()
            elif roll < 0.6:
                self.delete()
            else:
                self.search("search", self.rng.choice([q for _, q in self.docs.values()] + WORDS))
            self.pause(1.0, 4.0)

    def upload_new(self) -> None:
        self.n += 1
        if self.rng.random() < self.pdf_share:
            self.upload(f"{self.name}-{self.n}.pdf", PDF.read_bytes(), PDF_QUERY)
            return
        tok = token()
        name = f"{self.name}-{self.n}.{self.rng.choice(['txt', 'md'])}"
        self.upload(name, text_body(tok, self.rng).encode(), tok)

    def reupload(self) -> None:
        texts = [(d, n) for d, (n, q) in self.docs.items() if not n.endswith(".pdf")]
        if texts:
            _, name = self.rng.choice(texts)
            tok = token()
            self.upload(name, text_body(tok, self.rng).encode(), tok)

    def upload(self, name: str, data: bytes, query: str) -> None:
        url = self.url()
        t0 = time.monotonic()
        r = self.rec.call(self.client, "upload", "POST", url + "/api/v1/documents", files={"file": (name, data)})
        if r is None or r.status_code != 202:
            return
        body = r.json()
        doc_id, job_id = body["documents"][0]["id"], body["job"]["id"]
        row = self.follow_job(url, job_id)
        if row is not None and row["stage"] in ("done", "unchanged"):
            self.docs[doc_id] = (name, query)
            self.ledger.done(doc_id, query, name)
            return
        if row is not None:  # told "failed": the whole upload, from its start, is one failed call
            self.rec.record("upload_result", t0, "failed", row.get("message", ""))
        # failed, or the server that held the job went away: the user does not know what the document holds
        self.docs.pop(doc_id, None)
        self.ledger.unsure(doc_id)

    def follow_job(self, url: str, job_id: str) -> dict | None:
        """The job's file row once finished; None when the server forgot the job (it was restarted)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            r = self.rec.call(self.client, "job", "GET", f"{url}/api/v1/jobs/{job_id}", expect=(404,))
            if r is None or r.status_code == 404:
                return None
            if r.status_code == 200 and r.json()["finished"]:
                return r.json()["files"][0]
            time.sleep(0.5)
        self.rec.error("upload: not finished in time")
        return None

    def delete(self) -> None:
        doc_id = self.rng.choice(sorted(self.docs))
        url = self.url()
        r = self.rec.call(self.client, "delete", "DELETE", f"{url}/api/v1/documents/{doc_id}")
        if r is not None and r.status_code == 200 and r.json().get("removed"):
            self.docs.pop(doc_id)
            self.ledger.gone(doc_id)
            return
        if r is not None and r.status_code == 202 and self.wait_gone(url, doc_id):
            self.docs.pop(doc_id)
            self.ledger.gone(doc_id)
            return
        if r is not None and r.status_code == 404:
            self.rec.error(f"delete: a document told done is not found: {doc_id}")
        self.docs.pop(doc_id)
        self.ledger.unsure(doc_id)

    def wait_gone(self, url: str, doc_id: str) -> bool:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            r = self.rec.call(self.client, "document", "GET", f"{url}/api/v1/documents/{doc_id}", expect=(404,))
            if r is not None and r.status_code == 404:
                return True
            time.sleep(0.5)
        return False


class Asker(Actor):
    def run(self) -> None:
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            outcome: int | str = "no answer"
            detail = ""
            try:
                with self.client.stream("POST", self.url() + "/api/v1/ask",
                                        json={"question": self.rng.choice(QUESTIONS)}) as r:
                    outcome = r.status_code
                    if r.status_code == 200:
                        events = [json.loads(line) for line in r.iter_lines() if line.strip()]
                        done = events[-1] if events else {}
                        if done.get("type") != "done":
                            detail = "stream ended without done"
                        elif done.get("error"):
                            detail = f"answer error: {done['error']}"
                    else:
                        r.read()
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.rec.record("ask", t0, outcome, detail)
            self.pause(2.0, 6.0)


class Renamer(Actor):
    """Writes a file into the watched folder, waits until search finds it under its name, renames it
    and waits until it is found under the new one only; now and then deletes one instead."""

    def __init__(self, *a, folder: Path, **kw):
        super().__init__(*a, **kw)
        self.folder = folder
        self.n = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.n += 1
            tok = token()
            path = self.folder / f"w{self.n}.md"
            path.write_text(text_body(tok, self.rng))
            first = self.wait_for(tok, path.name)
            if first is None:
                self.rec.error("watch: a new file was not found in time")
                continue
            if self.rng.random() < 0.2:
                path.unlink()
                if self.wait_for(tok, None) is not None:
                    self.rec.error("watch: a deleted file was still found")
                    self.ledger.unsure(first)
                else:
                    self.ledger.done(first, tok, path.name)
                    self.ledger.gone(first)
            else:
                new = path.with_name(f"w{self.n}-renamed.md")
                path.rename(new)
                second = self.wait_for(tok, new.name)
                if second is None:
                    self.rec.error("watch: a renamed file was not found under its new name in time")
                    self.ledger.unsure(first)
                else:
                    self.ledger.done(first, tok, path.name)
                    self.ledger.gone(first)
                    self.ledger.done(second, tok, new.name)
            self.pause(3.0, 8.0)

    def wait_for(self, tok: str, name: str | None) -> str | None:
        """The document id that search finds for tok under name, once it is the only one; with
        name None, None once nothing is found (else the id still found)."""
        deadline = time.monotonic() + WAIT_S
        last = None
        while time.monotonic() < deadline:
            hits = self.search("watch_search", tok, mode="lexical")
            if hits is not None:
                ids = {h["document_id"] for h in hits}
                if name is None and not ids:
                    return None
                named = {h["document_id"] for h in hits if h["source"].endswith(name or "\0")}
                if name is not None and named and named == ids:
                    return named.pop()
                last = next(iter(ids), None)
            time.sleep(1.0)
        return last if name is None else None
