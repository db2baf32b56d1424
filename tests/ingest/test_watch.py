"""The watched folder (ragchat.ingest.watch): a collection kept in step with a folder.

- A real `ragchat watch` subprocess sees files added, changed, renamed (also into a new sub-folder)
  and deleted; it is killed with SIGKILL in the middle of a batch, more files change while it is
  down, and a restart catches up. Then the catalog, Chroma and BM25 must match the folder exactly:
  one finished document per watched file with the file's current hash, the same chunk ids in all
  three, hidden and unsupported files left out, and renamed files re-keyed without embedding.
- In-process: a rename and a copy re-use the stored vectors (the embedder is never called, and the
  vectors are the very same), with the polling observer.
- A file written slowly, in pieces, is read once, when complete.
- A collection that holds other documents is refused, since watching would remove them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_settings
from numpy.testing import assert_allclose
from test_crash import cli_env

from ragchat.engine import Engine
from ragchat.core.errors import ConfigError
from ragchat.ingest.pipeline import doc_id_for
from ragchat.ingest import watch
from ragchat.ingest.watch import FolderWatcher

pytestmark = [pytest.mark.slow]  # watched folders followed by a real ragchat watch process

SETTLE_S = 0.5
WORDS = ["harbor", "lantern", "meadow", "copper", "violin", "glacier", "orchard", "falcon", "marble", "tundra", "canyon", "willow"]


def text(tag: str, n: int = 40) -> str:
    """A small note with a word found only in it."""
    return f"Note {tag}: {tag}marker. " + " ".join(WORDS[(i * 7 + len(tag)) % len(WORDS)] for i in range(n)) + ".\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def watched_files(folder: Path) -> dict[str, str]:
    """What the collection must hold: source -> hash of every visible file of a supported type."""
    out = {}
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")) and p.suffix in (".txt", ".md"):
            out[rel] = sha(p)
    return out


class Watch:
    """`ragchat watch DIR` in its own session, stdout read line by line."""

    def __init__(self, store: Path, folder: Path, cwd: Path):
        self.lines: list[str] = []
        env = cli_env() | {"RAGCHAT_WATCH__SETTLE_S": str(SETTLE_S)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ragchat.cli", "--store", str(store), "watch", str(folder), "--collection", "notes"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, *wanted: str, after: int = 0, timeout: float = 180) -> int:
        """Wait until every wanted text appears in a line after line `after`; returns the index just
        past the last of the lines that matched."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines[after:]
            found = [next((i for i, ln in enumerate(got) if w in ln), None) for w in wanted]
            if None not in found:
                return after + max(found) + 1
            assert self.proc.poll() is None or self._reader.is_alive(), "exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"waited for {wanted}:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def wait_in_step(self, after: int, timeout: float = 180) -> int:
        """Wait for an "in step" line after line `after` once the folder settled (events are marked
        at once, so after SETTLE_S with no change every pending path is being synced)."""
        time.sleep(SETTLE_S * 2)
        return self.wait_for("in step:", after=after, timeout=timeout)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._cleanup()

    def stop(self) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the parsing worker, if any (our own group only)
        except ProcessLookupError:
            pass
        self._reader.join(10)


@pytest.mark.timeout(600)
def test_watch_follows_changes_survives_sigkill_and_catches_up(tmp_path):
    folder, store = tmp_path / "notes", tmp_path / "store"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.md", "c.txt", "sub/d.txt"):
        (folder / name).write_text(text(name.replace("/", "").split(".")[0]), encoding="utf-8")
    (folder / ".hidden.txt").write_text(text("hidden"), encoding="utf-8")  # ignored: hidden
    (folder / "picture.xyz").write_text("not a document", encoding="utf-8")  # ignored: unsupported

    w = Watch(store, folder, tmp_path)
    n = w.wait_for("a.txt  added", "b.md  added", "c.txt  added", "sub/d.txt  added", "in step: 4 documents")
    assert not any("hidden" in ln or "picture" in ln for ln in w.lines), w.lines

    # While it runs: add, change, rename (into a new sub-folder too) and delete.
    (folder / "e.txt").write_text(text("e"), encoding="utf-8")
    (folder / "a.txt").write_text(text("a2"), encoding="utf-8")
    (folder / "b.md").rename(folder / "b-renamed.md")
    (folder / "moved").mkdir()
    (folder / "sub" / "d.txt").rename(folder / "moved" / "d.txt")
    (folder / "c.txt").unlink()
    n = w.wait_for("e.txt  added", "a.txt  updated", "b-renamed.md  renamed from b.md: 1 chunks re-used, none embedded",
                   "moved/d.txt  renamed from sub/d.txt", "c.txt  removed", "b.md  removed", "sub/d.txt  removed", after=n)
    assert not any(ln.startswith(("b-renamed.md  added", "moved/d.txt  added")) for ln in w.lines), w.lines
    n = w.wait_in_step(after=n)

    # A batch big enough to be killed in the middle of (killed after its first file, or just after).
    for i in range(8):
        (folder / f"batch{i}.txt").write_text(text(f"batch{i}", 200), encoding="utf-8")
    w.wait_for("batch", after=n)
    w.kill()
    written = sum(ln.startswith("batch") for ln in w.lines)
    assert written < 8, "the watcher finished the batch before it was killed: the kill tested nothing"

    # While it is down: change, rename, delete, add.
    (folder / "e.txt").write_text(text("e2"), encoding="utf-8")
    (folder / "a.txt").rename(folder / "a-renamed.txt")
    (folder / "batch7.txt").unlink()
    (folder / "late.md").write_text(text("late"), encoding="utf-8")

    w = Watch(store, folder, tmp_path)
    w.wait_for("e.txt  updated", "a-renamed.txt  renamed from a.txt", "a.txt  removed", "late.md  added")
    w.wait_in_step(after=0)
    assert not any(ln.startswith("a-renamed.txt  added") for ln in w.lines), w.lines
    assert w.stop() == 0, "\n".join(w.lines)

    expected = watched_files(folder)
    assert "a-renamed.txt" in expected and ".hidden.txt" not in expected and len(expected) == 12
    with Engine(make_settings(store)) as eng:
        docs = eng.catalog.documents()
        assert {d.source: d.sha256 for d in docs} == expected  # nothing more, nothing less, current content
        assert all(d.collection == "notes" and d.status == "done" and d.chunks >= 1 for d in docs), docs
        assert all(d.id == doc_id_for("notes", d.source) for d in docs)
        ids = eng.catalog.all_chunk_ids()
        assert ids and ids == eng.vectors.chunk_ids() == eng.lexical.chunk_ids()
        assert sum(d.chunks for d in docs) == len(ids)
        assert eng.catalog.unfinished() == []
        stored = sorted(p.name for p in (store / "files").iterdir())
        assert stored == sorted(Path(d.original).name for d in docs)
        # the renamed files are found under their new names, and Chroma knows them by those names
        for marker, source in (("a2marker", "a-renamed.txt"), ("bmarker", "b-renamed.md"), ("subdmarker", "moved/d.txt")):
            assert [h.source for h in eng.retriever.search(marker, k=1, mode="lexical")] == [source], marker
            doc_id = doc_id_for("notes", source)
            metas = [m for _, m in eng.vectors.vectors_of(eng.catalog.chunk_ids(doc_id)).values()]
            assert metas and all(m["doc_id"] == doc_id and m["source"] == source for m in metas), metas


def wait_until(check, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_rename_and_copy_reuse_vectors_without_embedding(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "report.txt").write_text(text("report", 300), encoding="utf-8")
    lines: list[tuple[str, str]] = []
    with Engine(make_settings(tmp_path / "store")) as eng:
        watcher = FolderWatcher(eng, folder, "notes", settle_s=0.3, polling=True, poll_interval_s=0.2,
                                on_result=lambda s, line: lines.append((s, line))).start()
        try:
            assert watcher.mode == "polling"
            old_id = doc_id_for("notes", "report.txt")
            wait_until(lambda: (d := eng.catalog.get(old_id)) is not None and d.status == "done" and not watcher.busy,
                       what="the first ingestion")
            old_ids = [r.id for r in eng.catalog.chunks_of(old_id)]
            assert len(old_ids) >= 2
            old_vectors = eng.vectors.vectors_of(old_ids)

            embedded = []
            real = eng.embedder.embed_documents
            eng.embedder.embed_documents = lambda texts: embedded.extend(texts) or real(texts)

            (folder / "report.txt").rename(folder / "final report.txt")
            new_id, copy_id = doc_id_for("notes", "final report.txt"), doc_id_for("notes", "copy.txt")
            wait_until(lambda: eng.catalog.get(old_id) is None and (d := eng.catalog.get(new_id)) is not None
                       and d.status == "done" and not watcher.busy, what="the rename")
            shutil.copyfile(folder / "final report.txt", folder / "copy.txt")
            wait_until(lambda: (d := eng.catalog.get(copy_id)) is not None and d.status == "done" and not watcher.busy,
                       what="the copy")
        finally:
            watcher.stop()
        assert embedded == [], "a renamed or copied file was embedded again"
        assert ("final report.txt", f"renamed from report.txt: {len(old_ids)} chunks re-used, none embedded") in lines
        assert ("copy.txt", f"copied from final report.txt: {len(old_ids)} chunks re-used, none embedded") in lines
        for doc in (new_id, copy_id):
            rows = eng.catalog.chunks_of(doc)
            got = eng.vectors.vectors_of([r.id for r in rows])
            # The same vectors up to float32 rounding (nothing was embedded: above). A cosine collection of
            # Chroma normalises each vector as it is added and hands back a copy that differs from what it
            # was given in the last float32 bits (an l2 collection is exact), so re-adding moves them ~1e-8.
            assert_allclose([got[r.id][0] for r in rows], [old_vectors[i][0] for i in old_ids], rtol=0, atol=1e-6)
            assert {m["doc_id"] for _, m in got.values()} == {doc}
            assert set(got).isdisjoint(old_ids)
        ids = eng.catalog.all_chunk_ids()
        assert ids == eng.vectors.chunk_ids() == eng.lexical.chunk_ids() and len(ids) == 2 * len(old_ids)
        assert {h.source for h in eng.retriever.search("reportmarker", k=5, mode="lexical")} == {"final report.txt", "copy.txt"}


@pytest.mark.timeout(300)
def test_a_restart_reads_only_the_files_whose_stamp_moved(tmp_path, monkeypatch):
    """Starting again does not hash the whole folder: a file keeps the hash read last time while its
    size, times and inode are the same. One changed in place (same size) while the watcher was
    stopped is read again, and its document follows it."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for tag in ("alpha", "bravo", "delta"):
        (folder / f"{tag}.txt").write_text(text(tag), encoding="utf-8")
    hashed: list[str] = []
    real = watch.sha256_file
    monkeypatch.setattr(watch, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))

    def sync_once(eng) -> None:
        watcher = FolderWatcher(eng, folder, "notes", settle_s=0.1, polling=True, poll_interval_s=0.2).start()
        try:
            wait_until(lambda: not watcher.busy, what="the catch-up")  # every file is marked pending at start
        finally:
            watcher.stop()
        assert len(eng.catalog.documents(collections=["notes"], status="done")) == 3

    with Engine(make_settings(tmp_path / "store")) as eng:
        sync_once(eng)
        assert sorted(set(hashed)) == ["alpha.txt", "bravo.txt", "delta.txt"]
        hashed.clear()
        sync_once(eng)
        assert hashed == [], "an unchanged folder was hashed again"
        changed = text("bravo").replace("bravomarker", "brav0marker")
        assert len(changed) == len(text("bravo"))
        (folder / "bravo.txt").write_text(changed, encoding="utf-8")
        sync_once(eng)
        assert "bravo.txt" in hashed and "alpha.txt" not in hashed and "delta.txt" not in hashed
        assert eng.catalog.get(doc_id_for("notes", "bravo.txt")).sha256 == sha(folder / "bravo.txt")
        assert {h.source for h in eng.retriever.search("brav0marker", k=3, mode="lexical")} == {"bravo.txt"}


@pytest.mark.timeout(300)
def test_half_written_file_is_read_once_complete(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    settle = 1.0
    results: list[tuple[str, str]] = []
    with Engine(make_settings(tmp_path / "store")) as eng:
        _ = eng.ingestor  # load the parts first, so the watcher is quick to react
        watcher = FolderWatcher(eng, folder, "notes", settle_s=settle,
                                on_result=lambda s, line: results.append((s, line))).start()
        try:
            target = folder / "slow.txt"
            parts = [text(f"part{i}", 30) for i in range(8)]
            with open(target, "w", encoding="utf-8") as f:  # 8 pieces, 0.4 s apart: 2.8 s of writing
                for i, part in enumerate(parts):
                    f.write(part)
                    f.flush()
                    if i < len(parts) - 1:
                        time.sleep(settle * 0.4)
                        assert results == [], "a file was read while it was still being written"
            doc_id = doc_id_for("notes", "slow.txt")
            wait_until(lambda: (d := eng.catalog.get(doc_id)) is not None and d.status == "done" and not watcher.busy,
                       what="the finished file")
        finally:
            watcher.stop()
        assert [s for s, _ in results] == ["slow.txt"] and results[0][1].startswith("added"), results
        assert eng.catalog.get(doc_id).sha256 == sha(target)
        assert [h.source for h in eng.retriever.search("part7marker", k=1, mode="lexical")] == ["slow.txt"]


def test_a_collection_with_other_documents_is_refused(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    with Engine(make_settings(tmp_path / "store")) as eng:
        eng.catalog.record_failure(doc_id=doc_id_for("default", "x.pdf"), source="x.pdf", collection="default",
                                   owner=None, error="uploaded by hand")
        with pytest.raises(ConfigError, match="already holds 1 document"):
            FolderWatcher(eng, folder, "default").start()
        w = FolderWatcher(eng, folder, None)  # the folder's own name
        assert w.collection == "notes"
        w.start().stop()
        other = tmp_path / "other" / "notes"
        other.mkdir(parents=True)
        with pytest.raises(ConfigError, match="already mirrors the folder"):
            FolderWatcher(eng, other, "notes").start()
        folder.rmdir()  # the first folder is gone (moved): another folder may take its collection
        FolderWatcher(eng, other, "notes").start().stop()
        assert eng.catalog.get_meta("watch:notes") == str(other.resolve())


@pytest.mark.timeout(400)
def test_web_app_watches_its_folders_and_the_library_shows_their_progress(tmp_path, launch_app):
    from gradio_client import Client

    folder = tmp_path / "team notes"
    folder.mkdir()
    (folder / "first.txt").write_text(text("first"), encoding="utf-8")
    server = launch_app(env={"RAGCHAT_WATCH__FOLDERS": json.dumps([{"path": str(folder), "collection": "notes"}]),
                             "RAGCHAT_WATCH__SETTLE_S": "3"})
    client = Client(server.url, verbose=False)

    def library() -> dict[str, dict]:
        return {d["name"]: d for d in client.predict(api_name="/list_documents")}

    def finished(name: str, seen: list) -> bool:
        seen.append(library().get(name))
        return bool(seen[-1]) and seen[-1]["status"] == "done" and "progress" not in seen[-1]

    wait_until(lambda: finished("first.txt", []), timeout=240, what="the folder's first file\n" + server.log_tail())
    (folder / "second.txt").write_text(text("second"), encoding="utf-8")
    seen: list = []
    wait_until(lambda: finished("second.txt", seen), what="a file added to the folder\n" + server.log_tail())
    # while the new file settled (3 s) it was listed, as queued, before it was a document
    assert any(s and s["status"] == "indexing" and s["progress"] == "queued" for s in seen), seen
    assert library()["second.txt"]["collection"] == "notes" and library()["second.txt"]["chunks"] >= 1

    (folder / "first.txt").unlink()
    wait_until(lambda: "first.txt" not in library(), what="a file deleted from the folder")
