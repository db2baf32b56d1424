"""Crash safety: `ragchat ingest` killed with SIGKILL at random moments, then run again.

A real subprocess (`python -m ragchat.cli --store S ingest DIR`) over a generated corpus of small
English and Chinese text/Markdown files is killed with a real SIGKILL a few times, each time at a
seeded random moment after some files were written (so mostly mid-embedding or mid-write, sometimes
mid-recovery of the previous kill), until three runs were really killed. Between two runs a few
files are changed, so the "update" path (old chunks swapped for new ones) is killed too. A last run
without a kill must then leave a store where:

- the catalog, Chroma and BM25 hold exactly the same chunk ids;
- every document is "done" with as many chunk rows as its `chunks` count, and its hash is the
  current file's (interrupted files were resumed, changed files updated);
- one document per file (no duplicates), one stored original per document, no leftovers;
- no chunk of an unfinished document can be found;
- one more run reports every file unchanged.

It also checks that a second process on the store is refused while the first one runs.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import child_env, TEST_MODEL, make_settings
from ragchat.engine import Engine
from ragchat.store.tables import ChunkRow
from sqlalchemy import func, select

pytestmark = [pytest.mark.slow]  # a child process killed during ingestion

SEED = 20240611
N_FILES = 30
ROUNDS = 3
WORDS = ("harbor lantern meadow copper violin glacier orchard falcon marble tundra canyon willow saffron ember "
         "quartz prairie beacon cobalt thistle juniper").split()
ZH = ["本地部署的开源大模型可以保护隐私。", "磷酸铁锂电池的安全性较高，循环寿命长。", "通义千问支持中文问答，并且可以免费商用。",
      "向量检索与关键词检索结合，效果更稳定。", "文档在上传之后会被切分成小段并建立索引。"]


def token(i: int, version: int = 0) -> str:
    """A word found in exactly one file (and one version of it), to search for."""
    return f"uniq{i:02d}v{version}marker"


def file_text(rng: random.Random, i: int, version: int = 0) -> str:
    if i % 4 == 0:
        body = "".join(rng.choice(ZH) for _ in range(rng.randint(2, 12)))
        return f"# 文档 {i}\n\n{body}\n\n{token(i, version)}\n"
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 480)))
    return f"Note {i}: {token(i, version)}. {words}.\n"


def make_corpus(folder: Path, rng: random.Random) -> dict[str, int]:
    folder.mkdir(parents=True)
    for i in range(N_FILES):
        (folder / f"note_{i:02d}.{'md' if i % 3 == 0 else 'txt'}").write_text(file_text(rng, i), encoding="utf-8")
    return {p.name: 0 for p in folder.iterdir()}


def cli_env() -> dict[str, str]:
    return child_env({"RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL})


class Run:
    """`ragchat ingest` in its own session (so leftovers can be cleaned up), stdout read line by line."""

    def __init__(self, store: Path, corpus: Path, cwd: Path):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ragchat.cli", "--store", str(store), "ingest", str(corpus)],
            cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def written(self) -> int:
        return sum(1 for ln in self.lines if " added " in ln or " updated " in ln)

    def kill_after(self, files: int, delay: float, timeout: float = 300) -> bool:
        """SIGKILL once `files` files were written in this run, plus `delay` seconds; False when
        the run finished first."""
        deadline = time.monotonic() + timeout
        while self.written() < files and self.proc.poll() is None:
            assert time.monotonic() < deadline, f"no progress in {timeout} s:\n" + "\n".join(self.lines[-20:])
            time.sleep(0.02)
        time.sleep(delay)
        alive = self.proc.poll() is None
        if alive:
            os.kill(self.proc.pid, signal.SIGKILL)  # the CLI process only, like a crash or the OOM killer
        self.proc.wait(30)
        self._cleanup()
        return alive

    def finish(self, timeout: float = 300) -> int:
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._cleanup()
        return rc

    def _cleanup(self) -> None:
        # The parsing worker notices its parent is gone and exits; make sure of it (our own group only).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reader.join(10)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(900)
def test_sigkill_during_ingest_loses_nothing(tmp_path):
    rng = random.Random(SEED)
    corpus, store = tmp_path / "corpus", tmp_path / "store"
    versions = make_corpus(corpus, rng)

    # Ingestion got fast enough that a run can finish before a timed kill lands, so runs go on
    # until ROUNDS of them were really killed. Between runs a few files change, so every run has
    # work, and later kills also hit the update path (and recovery of a file changed since).
    killed = runs = 0
    while killed < ROUNDS:
        assert runs < 3 * ROUNDS, (f"only {killed} of {runs} runs could be killed before they finished: "
                                   "the test is not testing anything")
        runs += 1
        run = Run(store, corpus, tmp_path)
        if runs == 1:
            # While it runs, a second process on the same store is refused and changes nothing. The
            # first one is paused meanwhile (SIGSTOP), so that it cannot finish before the check.
            while run.written() < 1 and run.proc.poll() is None:
                time.sleep(0.05)
            assert run.proc.poll() is None, "the first run finished before a second process could be tried"
            os.kill(run.proc.pid, signal.SIGSTOP)
            try:
                second = subprocess.run([sys.executable, "-m", "ragchat.cli", "--store", str(store), "docs"],
                                        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
            finally:
                os.kill(run.proc.pid, signal.SIGCONT)
            assert second.returncode == 1 and "in use by another ragchat process" in second.stderr, second
        killed += run.kill_after(files=rng.randint(1, 4), delay=rng.uniform(0.0, 0.4))
        for name in rng.sample(sorted(versions), 3):
            i = int(name[5:7])
            versions[name] += 1
            (corpus / name).write_text(file_text(rng, i, versions[name]), encoding="utf-8")

    final = Run(store, corpus, tmp_path)
    assert final.finish() == 0, "\n".join(final.lines)
    again = Run(store, corpus, tmp_path)
    assert again.finish() == 0, "\n".join(again.lines)
    report = [ln for ln in again.lines if ln.strip()]
    assert len(report) == N_FILES and all(ln.split()[-1] == "unchanged" for ln in report), report

    with Engine(make_settings(store)) as eng:
        docs = eng.catalog.documents()
        # one document per file, each done, with the current content
        assert sorted(d.source for d in docs) == sorted(versions)
        for d in docs:
            assert d.status == "done", d
            assert d.sha256 == sha(corpus / d.source), f"{d.source} was not updated"
            with eng.catalog.session() as s:
                rows = s.scalar(select(func.count()).select_from(ChunkRow).where(ChunkRow.doc_id == d.id))
            assert rows == d.chunks >= 1, d

        # the three indexes agree exactly, so no orphan chunk exists anywhere
        catalog_ids = eng.catalog.all_chunk_ids()
        assert catalog_ids == eng.vectors.chunk_ids() == eng.lexical.chunk_ids()
        assert eng.catalog.unfinished() == []

        # one stored original per document, nothing left half-copied
        stored = sorted(p.name for p in (store / "files").iterdir())
        assert stored == sorted(Path(d.original).name for d in docs), stored

        # every file is found by its own marker; an old version's marker finds nothing
        for d in docs:
            i = int(d.source[5:7])
            hits = eng.retriever.search(token(i, versions[d.source]), k=1, mode="lexical")
            assert [h.source for h in hits] == [d.source]
            if versions[d.source]:
                assert eng.retriever.search(token(i, 0), mode="lexical") == []

        # and a document whose ingestion is unfinished is never returned, in either index
        victim = docs[1]
        eng.catalog.mark_indexing(victim.id)
        marker = token(int(victim.source[5:7]), versions[victim.source])
        for mode in ("lexical", "dense", "hybrid"):
            assert victim.id not in {h.doc_id for h in eng.retriever.search(marker, k=50, mode=mode)}
