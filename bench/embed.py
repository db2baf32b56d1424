"""Embedder speed alone: torch against ONNX Runtime variants, on ragchat's own chunks, in one run.

    .venv/bin/python bench/embed.py ../shared/data/pdfs ../shared/samples/seeds
    .venv/bin/python bench/embed.py --limit 200 --rounds 3 CORPUS...   # quicker

The chunks are what ragchat's ingest makes of the corpus (loaders, then the chunker at the default
200 word pieces with 40 overlap); files that cannot be read are skipped. Variants, each loaded once,
then timed in turn for ``--rounds`` rounds (interleaved, so that a change of load hits all of them):

- torch: sentence-transformers, as ``embedding.backend = "torch"`` runs it
- onnx plain, spin: the traced fp32 graph with ONNX Runtime's default threading, whose idle worker
  threads spin while they wait (what ``embedding.backend = "onnx"`` ran before)
- onnx plain: the same graph, worker threads sleeping instead of spinning
- onnx fused, spin: the graph after ``onnxruntime.transformers.optimizer.optimize_model`` (bert),
  which fuses attention, the embedding LayerNorm, SkipLayerNorm and GELU
- onnx (shipped): fused and not spinning, as ``embedding.backend = "onnx"`` runs now

Per variant: the best round's wall time and chunks/s, and CPU seconds per chunk (all threads of
this process, spinning included: the cost to the other work on the machine). Every variant's vectors
are compared with torch's (smallest cosine). One JSON line at the end: {"variant": chunks/s}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def corpus_chunks(paths: list[Path], tokenizer, max_tokens: int, overlap: int) -> list[str]:
    from ragchat.core.errors import LoadError
    from ragchat.ingest.chunking import chunk_pages
    from ragchat.ingest.loaders import load
    from ragchat.ingest.pipeline import collect

    texts: list[str] = []
    for f in collect(paths):
        try:
            doc = load(f.path)
        except LoadError:
            continue
        sha = hashlib.sha256(f.path.read_bytes()).hexdigest()
        chunks = chunk_pages([(p.number, p.text) for p in doc.pages], tokenizer, max_tokens, overlap, sha[:32], sha)
        texts += [c.text for c in chunks]
    return texts


def onnx_session(path: Path, spinning: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def variants(model_path: Path, cache: Path) -> dict:
    """name -> an object with encode(texts, batch_size=...) -> np.ndarray."""
    import onnx
    from sentence_transformers import SentenceTransformer

    from ragchat.embed.onnx_export import OnnxEncoder, ensure_onnx, onnx_paths

    shipped = ensure_onnx(model_path, cache, quantized=False)  # exports the plain and the fused graph
    plain = onnx_paths(model_path, cache)[0]
    for name, path in (("plain", plain), ("fused", shipped)):
        ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
        print(f"{name} graph: {len(onnx.load(str(path)).graph.node)} nodes ({', '.join(ops)})")

    out = {"torch": SentenceTransformer(str(model_path), device="cpu")}
    for name, path, spinning in [("onnx plain, spin", plain, True), ("onnx plain", plain, False),
                                 ("onnx fused, spin", shipped, True)]:
        enc = OnnxEncoder(path, model_path)
        enc._session = onnx_session(path, spinning)  # the same encoder around another session
        out[name] = enc
    out["onnx (shipped)"] = OnnxEncoder(shipped, model_path)  # fused, no spinning
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N chunks (0: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    from ragchat.embed.embedder import WordPieceTokenizer, bundled_model_path

    model_path = bundled_model_path()
    texts = corpus_chunks(args.corpus, WordPieceTokenizer(model_path / "tokenizer.json"), 200, 40)
    texts = texts[: args.limit] if args.limit else texts
    pieces = sum(min(n + 2, 256) for n in WordPieceTokenizer(model_path / "tokenizer.json").count(texts))
    print(f"{len(texts)} chunks, {pieces / len(texts):.0f} word pieces read per chunk on average")

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        encoders = variants(model_path, Path(tmp))
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in encoders}
        vecs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, enc in encoders.items():
                c0, t0 = time.process_time(), time.perf_counter()
                v = enc.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
                vecs[name] = np.asarray(v)

    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"{'variant':<16}{'best wall s':>12}{'chunks/s':>10}{'vs torch':>9}{'CPU ms/chunk':>13}{'min cos':>10}   rounds (wall s)")
    torch_rate = len(texts) / min(w for w, _ in times["torch"])
    summary = {}
    for name, ts in times.items():
        wall = min(w for w, _ in ts)
        cpu = min(c for _, c in ts)
        cos = float((vecs[name] * vecs["torch"]).sum(axis=1).min())
        rate = len(texts) / wall
        summary[name] = round(rate, 1)
        print(f"{name:<16}{wall:>12.2f}{rate:>10.1f}{rate / torch_rate:>8.2f}×{cpu / len(texts) * 1000:>13.1f}{cos:>10.5f}   "
              + " ".join(f"{w:.1f}" for w, _ in ts))
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
