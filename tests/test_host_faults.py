"""Host faults: the store's disk fills up, or the store folder becomes read-only.

The store lies on a small tmpfs that the test mounts, grows (`mount -o remount,size=`) and makes
read-only (`mount -o remount,ro`). Each start of ragchat is a real child process (the embedded
engine: SQLite catalog, Chroma on disk, Tantivy, the bundled embedder), driven line by line over
its stdin with JSON commands (``python tests/test_host_faults.py engine STORE``), so that the
test can remount the store between two starts. Tests run as root; a test process that is not
root runs the same scenario in a user and mount namespace (`unshare -rm`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env, make_settings, run_cli
from ragchat.core.errors import RagchatError
from ragchat.engine import Engine
from ragchat.ingest.pipeline import collect

pytestmark = [pytest.mark.slow]  # several engine processes, a few thousand chunks embedded

ALPHA = "The zebrafish heart regenerates after injury. Cardiomyocytes proliferate near the wound."
GAMMA = "Glacier meltwater feeds the alpine lakes. Ice cores record the climate of past centuries."
WORDS = "harbor lantern meadow copper violin glacier orchard falcon marble tundra canyon willow saffron ember".split()
SMALL_DISK = "1800k"  # the first document fits, the big file's vectors, rows and copy do not


def big_text(paragraphs: int = 120) -> str:
    """About 290 KB of text, 600 chunks, with the word "quokkamarker" that no other file holds."""
    rng = random.Random(7)
    paras = [" ".join(rng.choice(WORDS) + str(rng.randint(0, 99999)) for _ in range(200)) for _ in range(paragraphs)]
    return "quokkamarker " + "\n\n".join(paras)


# ---- one start of ragchat: a child process that takes JSON commands --------------------------


def _serve_engine(store: Path) -> None:
    """Open the engine like `ragchat` does (recovering interrupted ingestions), then answer one JSON
    line per command line until stdin ends."""
    def reply(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        eng = Engine(make_settings(store))
        recovered = [(r.source, r.outcome, r.error) for r in eng.recover()]
    except RagchatError as exc:
        reply({"error": str(exc), "kind": type(exc).__name__})
        return
    reply({"ready": recovered})
    ops = {
        "ingest": lambda paths: [(r.source, r.outcome, r.error) for r in eng.ingestor.ingest(collect(map(Path, paths)), "default")],
        "remove": lambda source: eng.ingestor.remove(eng.catalog.find("default", source).id),
        "search": lambda query: list(dict.fromkeys(h.source for h in eng.retriever.search(query))),  # best first
        "ask": lambda question: _ask(eng, question),
        "state": lambda: _state(eng),
    }
    for line in sys.stdin:
        op, *args = json.loads(line)
        try:
            reply({"ok": ops[op](*args)})
        except RagchatError as exc:
            reply({"error": str(exc), "kind": type(exc).__name__})
    eng.close()


def _ask(eng, question: str) -> dict:
    answer = list(eng.chat.stream(question))[-1].answer
    return {"retrieved": sorted({s.source for s in answer.retrieved}), "cited": sorted({s.source for s in answer.sources}),
            "error": answer.error}


def _state(eng) -> dict:
    """Every document's status, and the chunk ids of the catalog (per document), Chroma and BM25."""
    docs = {d.source: [d.status, d.error] for d in eng.catalog.documents()}
    per_doc = {d.source: sorted(eng.catalog.chunk_ids(d.id)) for d in eng.catalog.documents()}
    return {"docs": docs, "chunks": per_doc, "catalog": sorted(eng.catalog.all_chunk_ids()),
            "vectors": sorted(eng.vectors.chunk_ids()), "lexical": sorted(eng.lexical.chunk_ids())}


_STARTED: list[subprocess.Popen] = []


class Start:
    """One start of ragchat on a store (a child process); ``first`` is its first line: "ready" with
    what recovery did, or the error that stopped it from starting."""

    def __init__(self, store: Path):
        self.proc = subprocess.Popen([sys.executable, __file__, "engine", str(store)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        _STARTED.append(self.proc)
        self.first = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(60)
            raise AssertionError(f"the engine process ended (rc {self.proc.returncode}):\n{self.proc.stderr.read()[-4000:]}")
        return json.loads(line)

    def __call__(self, op: str, *args) -> dict:
        self.proc.stdin.write(json.dumps([op, *args]) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def ok(self, op: str, *args):
        got = self(op, *args)
        assert "ok" in got, f"{op} {args}: {got}"
        return got["ok"]

    def close(self) -> str:
        """End the process; returns its stderr, which must hold no traceback."""
        self.proc.stdin.close()
        self.proc.wait(120)
        err = self.proc.stderr.read()
        assert self.proc.returncode == 0 and "Traceback" not in err, err[-4000:]
        return err


def consistent(state: dict) -> bool:
    return state["catalog"] == state["vectors"] == state["lexical"]


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def tmpfs(where: Path, size: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    return where


def unmount(where: Path) -> None:
    """Unmount, after ending the engine processes that a failed assertion left running."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    _STARTED.clear()
    if subprocess.run(["umount", str(where)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # a grandchild still holding a file


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the scenarios ----------------------------------------------------------------------------


def scenario_disk_full(tmp: Path, paragraphs: int) -> None:
    """paragraphs=120: the disk fills up while the big file's vectors are written; 250: already while
    its original is copied. Where the disk is too full even to undo the half-written document, it
    stays unfinished (never searchable) until the next start purges it."""
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(ALPHA)
    (docs / "big.txt").write_text(big_text(paragraphs))
    (docs / "c.txt").write_text(GAMMA)
    disk = tmpfs(tmp / "disk", SMALL_DISK)
    store = disk / "store"
    try:
        run = Start(store)
        assert "ready" in run.first, run.first
        assert run.ok("ingest", [str(docs / "a.txt")]) == [["a.txt", "added", None]]
        before = run.ok("state")
        assert consistent(before)

        results = {s: (outcome, error) for s, outcome, error in run.ok("ingest", [str(docs / "big.txt"), str(docs / "c.txt")])}
        outcome, error = results["big.txt"]
        assert outcome == "failed" and error.startswith("disk full") and "add the file again" in error, results
        assert results["c.txt"][0] == "added" or results["c.txt"][1].startswith("disk full"), results
        after = run.ok("state")
        assert consistent(after), "catalog, Chroma and BM25 disagree after the disk filled up"
        assert after["chunks"]["a.txt"] == before["chunks"]["a.txt"]
        assert after["docs"].get("big.txt", ["failed"])[0] != "done", after["docs"]
        assert run.ok("search", "zebrafish heart")[0] == "a.txt"
        assert "big.txt" not in run.ok("search", "quokkamarker harbor lantern meadow")
        asked = run.ok("ask", "What happens to the zebrafish heart after injury?")
        assert "big.txt" not in asked["retrieved"] + asked["cited"] and "a.txt" in asked["retrieved"], asked
        run.close()

        mount("-o", "remount,size=64m", str(disk))  # space freed: the next start
        run = Start(store)
        assert "ready" in run.first, run.first
        assert all(source != "a.txt" for source, *_ in run.first["ready"]), run.first
        state = run.ok("state")
        assert consistent(state) and state["chunks"]["a.txt"] == before["chunks"]["a.txt"]
        assert {d[0] for d in state["docs"].values()} <= {"done", "failed"}, state["docs"]  # nothing left unfinished
        added = run.ok("ingest", [str(docs / "big.txt"), str(docs / "c.txt")])
        assert added[0][:2] == ["big.txt", "added"] or (added[0][1] == "unchanged" and state["docs"]["big.txt"][0] == "done"), added
        assert run.ok("search", "quokkamarker")[0] == "big.txt"
        assert run.ok("search", "glacier meltwater alpine lakes ice cores")[:1] == ["c.txt"]
        final = run.ok("state")
        assert consistent(final) and final["chunks"]["a.txt"] == before["chunks"]["a.txt"]
        assert {s: d[0] for s, d in final["docs"].items()} == {"a.txt": "done", "big.txt": "done", "c.txt": "done"}
        run.close()
    finally:
        unmount(disk)


def scenario_read_only(tmp: Path) -> None:
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(ALPHA)
    (docs / "c.txt").write_text(GAMMA)
    disk = tmpfs(tmp / "disk", "64m")
    store = disk / "store"
    try:
        run = Start(store)
        assert run.ok("ingest", [str(docs / "a.txt")]) == [["a.txt", "added", None]]
        before = run.ok("state")
        run.close()
        digest = tree_digest(store)

        mount("-o", "remount,ro", str(disk))
        run = Start(store)
        assert run.first.get("kind") == "ReadOnlyStore", run.first
        assert f"the store folder {store} is read-only" in run.first["error"] and "writable again" in run.first["error"]
        run.close()
        for command in (["ingest", str(docs / "c.txt")], ["remove", "a.txt"]):
            cli = run_cli("--store", str(store), *command, cwd=tmp)
            assert cli.returncode == 1 and "is read-only" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr
        assert tree_digest(store) == digest, "a read-only store was changed"

        mount("-o", "remount,rw", str(disk))  # the next start
        run = Start(store)
        assert run.first == {"ready": []}, run.first
        assert run.ok("state") == before
        assert run.ok("search", "zebrafish heart")[0] == "a.txt"
        assert run.ok("ingest", [str(docs / "c.txt")]) == [["c.txt", "added", None]]
        assert run.ok("remove", "a.txt") is True
        state = run.ok("state")
        assert consistent(state) and list(state["docs"]) == ["c.txt"]
        run.close()
    finally:
        unmount(disk)


SCENARIOS = {"disk_full_writing_vectors": lambda tmp: scenario_disk_full(tmp, 120),
             "disk_full_copying_the_original": lambda tmp: scenario_disk_full(tmp, 250),
             "read_only": scenario_read_only}


def run_scenario(name: str, tmp: Path) -> None:
    """As root, here; otherwise in a child in its own user and mount namespace, where it may mount."""
    if os.geteuid() == 0:
        SCENARIOS[name](tmp)
        return
    proc = subprocess.run(["unshare", "-rm", sys.executable, __file__, "scenario", name, str(tmp)],
                          capture_output=True, text=True, env=child_env(), timeout=1200)
    if "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr[:300]:
        pytest.fail("this test mounts a small tmpfs: run it as root, or where `unshare -rm` (user namespaces) is "
                    f"allowed; unshare said: {proc.stderr.strip()[:300]}")
    assert proc.returncode == 0, f"scenario {name} failed in its namespace:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"


@pytest.mark.parametrize("where", ["writing_vectors", "copying_the_original"])
def test_disk_full_fails_that_file_and_keeps_the_store_consistent(tmp_path, where):
    run_scenario(f"disk_full_{where}", tmp_path)


def test_read_only_store_is_refused_clearly_and_nothing_changes(tmp_path):
    run_scenario("read_only", tmp_path)


if __name__ == "__main__":
    if sys.argv[1] == "engine":
        _serve_engine(Path(sys.argv[2]))
    else:
        SCENARIOS[sys.argv[2]](Path(sys.argv[3]))
