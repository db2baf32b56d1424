"""Ingestion speed: ragchat against the LangChain tutorial pipeline, on the same files, in one run.

    .venv/bin/python bench/ingest.py ../shared/data/pdfs ../shared/samples/seeds
    .venv/bin/python bench/ingest.py --backend onnx-int8 --profile /tmp/ingest.html CORPUS...
    .venv/bin/python bench/ingest.py --compare /tmp/base/src --repeat 3 CORPUS...   # before/after a change

Each pipeline runs in a fresh child process (so neither inherits the other's warm model, imports or
allocator), one after the other, from an empty temporary store:

- ragchat: ``Engine(settings).ingestor.ingest(collect(paths))`` with the settings from the tree's
  config.toml (``--backend`` overrides ``embedding.backend``). The ONNX export is a one-time cost
  (per user, or per store in older versions); it is done before the clock starts, into a cache of
  this bench run (``XDG_CACHE_HOME``), and printed apart.
- tutorial: PyPDFLoader / TextLoader(autodetect_encoding=True) per file, RecursiveCharacterTextSplitter
  (1000, 200), HuggingFaceEmbeddings on the same bundled all-MiniLM-L6-v2, Chroma.from_documents. A
  file its loader cannot read is skipped and counted (the tutorial itself would stop at the first).

``--compare SRC`` also runs ragchat with the package from another source folder (for example the
``src`` of a ``git worktree`` of an older commit), so that a change is measured against what came
before it in the same run, under the same load. ``--repeat N`` runs every pipeline N times, in
rounds, and keeps each one's fastest run and fastest embed-only time: on a shared machine, the least
disturbed of N runs compares better than any single one.

Clocks: ``*_s`` runs from building the pipeline (model load included) to the last write; module
imports are done before it and shown apart as ``import_s``. ``embed_only_s`` then times ragchat's own
embedder (already loaded) on ragchat's own chunks, in the same batches as the pipeline;
``embed_share = embed_only_s / ragchat_s``. "pieces read" counts the word pieces the model reads (at most
256 per chunk: the embedder's real work) and "cut off" those it silently drops. ``peak_rss_mb`` is the peak resident set of ragchat's
main process (the parsing worker's peak is printed apart).

Prints a table, then one JSON line:
{"ragchat_s", "tutorial_s", "ratio", "ragchat_chunks", "embed_only_s", "embed_share", "peak_rss_mb"}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _peak_rss_mb(pid: int) -> float:
    """Peak RSS of a running process (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _word_pieces(texts: list[str], limit: int = 256) -> tuple[int, int]:
    """(word pieces the bundled model reads, pieces it cuts off) over texts: the embedder's real work."""
    from ragchat.embed.embedder import WordPieceTokenizer, bundled_model_path

    counts = [n + 2 for n in WordPieceTokenizer(bundled_model_path() / "tokenizer.json").count(texts)]  # + [CLS] [SEP]
    return sum(min(n, limit) for n in counts), sum(max(0, n - limit) for n in counts)


def run_ragchat(paths: list[Path], store: Path, backend: str | None, profile: str | None) -> dict:
    t_import = time.perf_counter()
    import ragchat
    from ragchat.core.settings import load_settings
    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect
    from ragchat.store.tables import ChunkRow

    config = Path(ragchat.__file__).resolve().parents[2] / "config.toml"  # of the tree being run (see --compare)
    settings = load_settings(config if config.exists() else None, store=store)
    if backend:
        settings.embedding.backend = backend  # validated on assignment
    import_s = time.perf_counter() - t_import

    # The one-time ONNX export, before the clock, into the cache this tree's engine uses (the store's
    # or the user's, depending on the version), by the same call the engine would make.
    t_export = time.perf_counter()
    if settings.embedding.backend != "torch":
        from ragchat.embed.onnx_export import ensure_onnx

        with Engine(settings) as probe:
            emb = probe.embedder
            ensure_onnx(emb.path, emb.cache_dir, quantized=settings.embedding.backend == "onnx-int8")
    export_s = time.perf_counter() - t_export

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005)
        profiler.start()
    t0 = time.perf_counter()
    engine = Engine(settings)
    results = engine.ingestor.ingest(collect(paths), settings.collection)
    wall = time.perf_counter() - t0
    if profiler:
        profiler.stop()
        Path(profile).write_text(profiler.output_html())
        Path(profile).with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False))

    with engine.catalog.session() as s:
        texts = [t for (t,) in s.query(ChunkRow.text).order_by(ChunkRow.doc_id, ChunkRow.seq)]
    step = settings.embedding.batch_size  # the same batches as Ingestor._index
    t1 = time.perf_counter()
    for i in range(0, len(texts), step):
        engine.embedder.embed_documents(texts[i : i + step])
    embed_only = time.perf_counter() - t1
    pieces, dropped = _word_pieces(texts)
    worker = engine.loader._process  # the parsing worker, still running
    worker_rss = _peak_rss_mb(worker.pid) if worker is not None else 0.0
    engine.close()
    return {"pieces": pieces, "dropped": dropped,
        "wall_s": wall, "import_s": import_s, "chunks": len(texts), "embed_only_s": embed_only,
        "files": len(results), "failed": sum(r.outcome == "failed" for r in results),
        "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF), "worker_rss_mb": worker_rss, "export_s": export_s,
        "backend": settings.embedding.backend, "src": str(Path(ragchat.__file__).parents[1]),
    }


def run_tutorial(paths: list[Path], store: Path) -> dict:
    t_import = time.perf_counter()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import PyPDFLoader, TextLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ragchat.embed.embedder import bundled_model_path
    from ragchat.ingest.pipeline import collect

    files = [f.path for f in collect(paths)]
    import_s = time.perf_counter() - t_import

    t0 = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=str(bundled_model_path()), model_kwargs={"device": "cpu"})
    docs, failed = [], 0
    for f in files:
        try:
            loader = PyPDFLoader(str(f)) if f.suffix.lower() == ".pdf" else TextLoader(str(f), autodetect_encoding=True)
            docs += loader.load()
        except Exception:
            failed += 1
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    Chroma.from_documents(chunks, embeddings, persist_directory=str(store / "chroma"))
    wall = time.perf_counter() - t0
    pieces, dropped = _word_pieces([c.page_content for c in chunks])
    return {"pieces": pieces, "dropped": dropped, "wall_s": wall, "import_s": import_s, "chunks": len(chunks), "files": len(files), "failed": failed,
            "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF)}


def _child(which: str, paths: list[str], backend: str | None, profile: str | None, cache: str, src: str | None = None) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": cache}  # the bench run's own per-user ONNX cache, not the real one
    if src:
        env["PYTHONPATH"] = src  # ahead of the installed (editable) package
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{which}-") as tmp:
        cmd = [sys.executable, __file__, "--child", which, "--store", tmp, *paths]
        if backend:
            cmd += ["--backend", backend]
        if profile:
            cmd += ["--profile", profile]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{which} failed:\n{out.stderr[-4000:]}")
        if "warning: the ONNX export ran" in out.stderr:
            print(f"warning: the ONNX export ran inside the timed ingest ({which}, {src or 'this tree'})", flush=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
        return json.loads(line)


def _best(runs: list[dict]) -> dict:
    """Of repeated runs of one pipeline: the fastest, with the fastest embed-only time of any of them
    (the least disturbed by other load), and every wall time."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    if "embed_only_s" in best:
        best["embed_only_s"] = min(r["embed_only_s"] for r in runs)
    best["walls"] = [r["wall_s"] for r in runs]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="+", help="files or folders to ingest")
    ap.add_argument("--backend", action="append", choices=["torch", "onnx", "onnx-int8"],
                    help="override embedding.backend for ragchat; repeat to run ragchat once per backend in the same run "
                         "(the JSON line describes the first)")
    ap.add_argument("--profile", help="write a pyinstrument profile of ragchat's ingest here (.html, plus .txt); with "
                    "--compare or several backends, one per ragchat pipeline of the first round, named after it")
    ap.add_argument("--compare", action="append", default=[], metavar="SRC",
                    help="also run ragchat from this source folder (the one holding the ragchat package); repeatable")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every pipeline this many times, in rounds; the tables show the fastest run of each")
    ap.add_argument("--skip-tutorial", action="store_true", help="only run ragchat (for profiling)")
    ap.add_argument("--child", choices=["ragchat", "tutorial"], help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        paths = [Path(p).resolve() for p in args.corpus]
        store = Path(args.store)
        backend = args.backend[0] if args.backend else None
        res = run_ragchat(paths, store, backend, args.profile) if args.child == "ragchat" else run_tutorial(paths, store)
        print(json.dumps(res))
        return

    paths = [str(Path(p).resolve()) for p in args.corpus]
    # Per round: the other source folders (usually the "before") first, then this tree, then the tutorial.
    variants = [(b, str(Path(src).resolve())) for src in args.compare for b in args.backend or [None]]
    variants += [(b, None) for b in args.backend or [None]]
    runs: dict[tuple, list[dict]] = {v: [] for v in variants}
    tuts: list[dict] = []
    cache = tempfile.mkdtemp(prefix="bench-ingest-cache-")
    for rnd in range(args.repeat):
        for b, src in variants:
            profile = None
            if args.profile and rnd == 0:  # PATH for this tree's first backend, PATH-<backend>-<folder>.html for the others
                first = src is None and b == (args.backend or [None])[0]
                name = Path(src).parent.name if src else "this"
                profile = args.profile if first else f"{Path(args.profile).with_suffix('')}-{b}-{name}.html"
            runs[(b, src)].append(_child("ragchat", paths, b, profile, cache, src))
        if not args.skip_tutorial:
            tuts.append(_child("tutorial", paths, None, None, cache))
    rags = [_best(runs[v]) for v in variants[len(args.compare) * len(args.backend or [None]):]]  # this tree first
    rags += [_best(runs[v]) for v in variants[: len(args.compare) * len(args.backend or [None])]]
    rag = rags[0]
    tut = _best(tuts) if tuts else None
    shutil.rmtree(cache)

    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    for r in rags:  # a label per source folder, when there are several
        r["name"] = f"ragchat ({r['backend']})" + (f" [{Path(r['src']).parent.name}]" if args.compare else "")
    print(f"{'pipeline':<30}{'wall s':>8}{'imports s':>10}{'chunks':>7}{'chunks/s':>9}{'pieces read':>12}{'cut off':>8}"
          f"{'failed':>7}{'peak RSS MB':>12}" + ("   all runs, wall s" if args.repeat > 1 else ""))
    rows = [(r["name"], r) for r in rags] + ([("langchain tutorial (torch)", tut)] if tut else [])
    for name, r in rows:
        print(f"{name:<30}{r['wall_s']:>8.2f}{r['import_s']:>10.2f}{r['chunks']:>7}{r['chunks'] / r['wall_s']:>9.1f}"
              f"{r['pieces']:>12,}{r['dropped']:>8,}{r['failed']:>7}{r['peak_rss_mb']:>12.0f}"
              + ("   " + " ".join(f"{w:.1f}" for w in r["walls"]) if args.repeat > 1 else ""))
    for r in rags:
        print(f"{r['name']}: embedder alone on its {r['chunks']} chunks {r['embed_only_s']:.2f} s "
              f"({r['chunks'] / max(r['embed_only_s'], 1e-9):.1f} chunks/s), embed share {r['embed_only_s'] / r['wall_s']:.3f}, "
              f"ratio to the tutorial {tut['wall_s'] / r['wall_s'] if tut else float('nan'):.2f}; "
              f"one-time ONNX export {r['export_s']:.2f} s; parse worker peak RSS {r['worker_rss_mb']:.0f} MB")
    summary = {
        "ragchat_s": round(rag["wall_s"], 3),
        "tutorial_s": round(tut["wall_s"], 3) if tut else None,
        "ratio": round(tut["wall_s"] / rag["wall_s"], 3) if tut else None,
        "ragchat_chunks": rag["chunks"],
        "embed_only_s": round(rag["embed_only_s"], 3),
        "embed_share": round(rag["embed_only_s"] / rag["wall_s"], 3),
        "peak_rss_mb": round(rag["peak_rss_mb"], 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
