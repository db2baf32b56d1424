"""Memory while ingesting a corpus ten times larger than the sample one: peak RSS, and growth per file.

    .venv/bin/python bench/memory.py --copies 10 ../shared/data/pdfs ../shared/samples/seeds
    .venv/bin/python bench/memory.py --copies 2 --backend onnx CORPUS...       # a quick, smaller run

The corpus: every file of CORPUS, ``--copies`` times, each copy changed so that its content hash
differs (ragchat would skip an unchanged file): a PDF gets a comment line ``%ragchat-copy N``
appended after its end-of-file marker (readers ignore it, so the corrupt, encrypted and scanned PDFs
still fail as before), a text-like file gets one last line ``copy N``. Copies are interleaved
(copy 1 of every file, then copy 2, ...), so the kinds of file stay mixed from start to end.

The copies are ingested into an empty store with the settings of ./config.toml (``--backend``
overrides ``embedding.backend``), in this process, through ``Engine.ingestor.ingest``. A thread
samples the RSS of this process and of the parsing worker every 0.1 s; after each file the RSS of
both is recorded. Growth per file is the slope of a least-squares line through the main process's
RSS after each file of the second half (the first half includes loading the models and warming
Chroma's and Tantivy's caches).

Prints RSS after 10 %, 50 % and 100 % of the files, the peaks and the slope, then one JSON line:
{"files", "chunks", "peak_rss_mb", "worker_peak_rss_mb", "rss_10_mb", "rss_50_mb", "rss_100_mb",
 "growth_mb_per_100_files", "wall_s"}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def make_corpus(paths: list[Path], copies: int, dest: Path) -> list[Path]:
    from ragchat.ingest.pipeline import collect

    files = collect(paths)
    out = []
    for n in range(1, copies + 1):
        for f in files:
            target = dest / f"copy{n:03d}" / f.source
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.path, target)
            with open(target, "ab") as fh:
                fh.write(f"\n%ragchat-copy {n}\n".encode() if f.path.suffix.lower() == ".pdf" else f"\n\ncopy {n}\n".encode())
            out.append(target)
    return out


class Sampler(threading.Thread):
    """Peak RSS of this process and of its children (the parsing worker), sampled every 0.1 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.peak = self.worker_peak = 0.0
        self.stop = threading.Event()

    def now(self) -> tuple[float, float]:
        main = self.me.memory_info().rss / MB
        worker = 0.0
        for child in self.me.children(recursive=True):
            try:
                worker = max(worker, child.memory_info().rss / MB)
            except psutil.NoSuchProcess:
                pass
        self.peak, self.worker_peak = max(self.peak, main), max(self.worker_peak, worker)
        return main, worker

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.now()


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against their index."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="+", type=Path)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--workdir", type=Path, help="where the corpus and the store go (default: a temporary folder)")
    args = ap.parse_args()

    from ragchat.core.settings import load_settings
    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import SourceFile

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-memory-")
        args.workdir = Path(tmp.name)
    files = make_corpus(args.corpus, args.copies, args.workdir / "corpus")
    size_mb = sum(f.stat().st_size for f in files) / MB
    print(f"{len(files)} files, {size_mb:.0f} MB, in {args.workdir / 'corpus'}", flush=True)

    config = ROOT / "config.toml"
    settings = load_settings(config if config.exists() else None, store=args.workdir / "store")
    if args.backend:
        settings.embedding.backend = args.backend

    sampler = Sampler()
    sampler.start()
    after: list[tuple[float, float]] = []  # (main, worker) RSS after each file
    chunks = 0

    def on_event(e) -> None:
        if e.stage in ("done", "failed", "unchanged"):
            after.append(sampler.now())
            if len(after) % max(1, len(files) // 20) == 0:
                print(f"  {len(after):>5} files  main {after[-1][0]:7.0f} MB  worker {after[-1][1]:5.0f} MB", flush=True)

    t0 = time.perf_counter()
    with Engine(settings) as engine:
        corpus_root = args.workdir / "corpus"
        results = engine.ingestor.ingest([SourceFile(f, f.relative_to(corpus_root).as_posix()) for f in files],
                                         settings.collection, on_event=on_event)
        chunks = sum(r.chunks for r in results)
        wall = time.perf_counter() - t0
        sampler.now()
    sampler.stop.set()

    def at(share: float) -> tuple[float, float]:
        return after[max(0, round(share * len(after)) - 1)]

    half = [m for m, _ in after[len(after) // 2:]]
    growth = slope(half) * 100
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"{len(files)} files ({sum(r.outcome == 'failed' for r in results)} failed), {chunks} chunks, {wall:.0f} s, "
          f"backend {settings.embedding.backend}")
    print(f"{'after':>10}{'files':>7}{'main RSS MB':>13}{'worker RSS MB':>15}")
    for share in (0.1, 0.5, 1.0):
        m, w = at(share)
        print(f"{share:>9.0%} {max(1, round(share * len(after))):>6}{m:>13.0f}{w:>15.0f}")
    print(f"{'peak':>10}{'':>7}{sampler.peak:>13.0f}{sampler.worker_peak:>15.0f}")
    print(f"growth of the main process over the second half: {growth:+.1f} MB per 100 files")
    print(json.dumps({"files": len(files), "chunks": chunks, "peak_rss_mb": round(sampler.peak, 1),
                      "worker_peak_rss_mb": round(sampler.worker_peak, 1), "rss_10_mb": round(at(0.1)[0], 1),
                      "rss_50_mb": round(at(0.5)[0], 1), "rss_100_mb": round(at(1.0)[0], 1),
                      "growth_mb_per_100_files": round(growth, 1), "wall_s": round(wall, 1)}))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
