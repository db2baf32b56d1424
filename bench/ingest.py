"""Ingestion speed: ragchat against the LangChain tutorial pipeline, on the same files, in one run.

    .venv/bin/python bench/ingest.py ../shared/data/pdfs ../shared/samples/seeds
    .venv/bin/python bench/ingest.py --backend onnx-int8 --profile /tmp/ingest.html CORPUS...

Each pipeline runs in a fresh child process (so neither inherits the other's warm model, imports or
allocator), one after the other, from an empty temporary store:

- ragchat: ``Engine(settings).ingestor.ingest(collect(paths))`` with the settings from ./config.toml
  (``--backend`` overrides ``embedding.backend``). The ONNX export into the new store's cache is a
  one-time cost per store; it runs in its own process before the clock starts and is printed apart.
- tutorial: PyPDFLoader / TextLoader(autodetect_encoding=True) per file, RecursiveCharacterTextSplitter
  (1000, 200), HuggingFaceEmbeddings on the same bundled all-MiniLM-L6-v2, Chroma.from_documents. A
  file its loader cannot read is skipped and counted (the tutorial itself would stop at the first).

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _word_pieces(texts: list[str], limit: int = 256) -> tuple[int, int]:
    """(word pieces the bundled model reads, pieces it cuts off) over texts: the embedder's real work."""
    from ragchat.embeddings import WordPieceTokenizer, bundled_model_path

    counts = [n + 2 for n in WordPieceTokenizer(bundled_model_path() / "tokenizer.json").count(texts)]  # + [CLS] [SEP]
    return sum(min(n, limit) for n in counts), sum(max(0, n - limit) for n in counts)


def run_ragchat(paths: list[Path], store: Path, backend: str | None, profile: str | None) -> dict:
    t_import = time.perf_counter()
    from ragchat.config import load_settings
    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect
    from ragchat.store.catalog import ChunkRow

    config = ROOT / "config.toml"
    settings = load_settings(config if config.exists() else None, store=store)
    if backend:
        settings.embedding.backend = backend  # validated on assignment
    import_s = time.perf_counter() - t_import

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
    step = settings.embedding.batch_size * 4  # the same batches as Ingestor._index
    t1 = time.perf_counter()
    for i in range(0, len(texts), step):
        engine.embedder.embed_documents(texts[i : i + step])
    embed_only = time.perf_counter() - t1
    pieces, dropped = _word_pieces(texts)
    engine.close()  # stops the parsing worker, so RUSAGE_CHILDREN includes it
    return {"pieces": pieces, "dropped": dropped,
        "wall_s": wall, "import_s": import_s, "chunks": len(texts), "embed_only_s": embed_only,
        "files": len(results), "failed": sum(r.outcome == "failed" for r in results),
        "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF), "worker_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN),
        "backend": settings.embedding.backend,
    }


def run_tutorial(paths: list[Path], store: Path) -> dict:
    t_import = time.perf_counter()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import PyPDFLoader, TextLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ragchat.embeddings import bundled_model_path
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


def _child(which: str, paths: list[str], backend: str | None, profile: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{which}-") as tmp:
        cmd = [sys.executable, __file__, "--child", which, "--store", tmp, *paths]
        if backend:
            cmd += ["--backend", backend]
        if profile and which == "ragchat":
            cmd += ["--profile", profile]
        export_s = _export(Path(tmp), backend) if which == "ragchat" else 0.0
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{which} failed:\n{out.stderr[-4000:]}")
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
        return {**json.loads(line), "export_s": export_s}


def _export(store: Path, backend: str | None) -> float:
    """The one-time ONNX export into the new store's cache, in its own process, before the clock."""
    from ragchat.config import load_settings
    from ragchat.embeddings import _model_path

    config = ROOT / "config.toml"
    emb = load_settings(config if config.exists() else None, store=store).embedding
    backend = backend or emb.backend
    if backend == "torch":
        return 0.0
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ragchat.onnx_export", str(_model_path(emb.model)), str(store / "cache")]
                   + (["--int8"] if backend == "onnx-int8" else []), cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="+", help="files or folders to ingest")
    ap.add_argument("--backend", action="append", choices=["torch", "onnx", "onnx-int8"],
                    help="override embedding.backend for ragchat; repeat to run ragchat once per backend in the same run "
                         "(the JSON line describes the first)")
    ap.add_argument("--profile", help="write a pyinstrument profile of ragchat's (first) ingest here (.html, plus .txt)")
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
    rags = [_child("ragchat", paths, b, args.profile if i == 0 else None) for i, b in enumerate(args.backend or [None])]
    rag = rags[0]
    tut = None if args.skip_tutorial else _child("tutorial", paths, None, None)

    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"{'pipeline':<30}{'wall s':>8}{'imports s':>10}{'chunks':>7}{'chunks/s':>9}{'pieces read':>12}{'cut off':>8}"
          f"{'failed':>7}{'peak RSS MB':>12}")
    rows = [(f"ragchat ({r['backend']})", r) for r in rags] + ([("langchain tutorial (torch)", tut)] if tut else [])
    for name, r in rows:
        print(f"{name:<30}{r['wall_s']:>8.2f}{r['import_s']:>10.2f}{r['chunks']:>7}{r['chunks'] / r['wall_s']:>9.1f}"
              f"{r['pieces']:>12,}{r['dropped']:>8,}{r['failed']:>7}{r['peak_rss_mb']:>12.0f}")
    for r in rags:
        print(f"ragchat ({r['backend']}): embedder alone on its {r['chunks']} chunks {r['embed_only_s']:.2f} s "
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
