"""EmbeddingGemma-300M on this machine, side by side in one run: PyTorch fp32 (sentence-transformers,
encode_query / encode_document) vs ONNX fp32 vs ONNX int8 (files from export_onnx.py), at several
max lengths. Prints, per variant and max length:
  - passages/s embedding documents (first N passages of a Chinese and an English corpus, batch 32)
  - query latency p50/p95 (single queries, one at a time, as at search time)
  - nDCG@10 / Recall@10 / MRR@10, dense alone, on BEIR folders (XQuAD zh->en and en->zh)
  - mean cosine of each variant's document vectors to PyTorch's (same max length)
  - CPU ms per passage / per query (process time, all threads) and the 1-min load average,
    since wall-clock figures move with whatever else the shared machine runs

    python bench/gemma/bench_gemma.py --model /tmp/gemma/model/model_download --onnx-dir /tmp/gemma/onnx \
        --data ../shared/data/qa [--max-lengths 256 128] [--threads 2] [--variants torch onnx-fp32 onnx-int8]

Run it under `nice -n 19 flock /tmp/ragchat-heavy.lock` on the shared 2-core machines.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUERY_PROMPT = "task: search result | query: "
DOC_PROMPT = "title: none | text: "


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_beir(folder: Path):
    corpus = read_jsonl(folder / "corpus.jsonl")
    queries = read_jsonl(folder / "queries.jsonl")
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            if int(s) > 0:
                qrels.setdefault(q, {})[d] = int(s)
    queries = [q for q in queries if q["_id"] in qrels]
    return corpus, queries, qrels


def passage_text(d: dict) -> str:
    return (d.get("title", "") + "\n" + d["text"]).strip() if d.get("title") else d["text"]


def metrics(doc_ids, dvecs, queries, qvecs, qrels, k=10):
    scores = qvecs @ dvecs.T
    ndcg, rec, mrr = [], [], []
    for i, q in enumerate(queries):
        rel = qrels[q["_id"]]
        top = np.argsort(-scores[i])[:k]
        gains = [rel.get(doc_ids[j], 0) for j in top]
        dcg = sum((2 ** g - 1) / math.log2(r + 2) for r, g in enumerate(gains))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum((2 ** g - 1) / math.log2(r + 2) for r, g in enumerate(ideal))
        ndcg.append(dcg / idcg if idcg else 0.0)
        rec.append(sum(1 for g in gains if g > 0) / len(rel))
        mrr.append(next((1 / (r + 1) for r, g in enumerate(gains) if g > 0), 0.0))
    return float(np.mean(ndcg)), float(np.mean(rec)), float(np.mean(mrr))


class TorchVariant:
    name = "torch-fp32"

    def __init__(self, model_dir: Path, threads: int):
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        self.st = SentenceTransformer(str(model_dir), device="cpu")
        self.load_s = time.perf_counter() - t0

    def set_max_length(self, n: int) -> None:
        self.st.max_seq_length = n

    def docs(self, texts, batch_size=32):
        return self.st.encode_document(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)

    def queries(self, texts, batch_size=32):
        return self.st.encode_query(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)

    def query(self, text):
        return self.st.encode_query([text], convert_to_numpy=True, normalize_embeddings=True)[0]


class OnnxVariant:
    """The whole pipeline is in the graph (pooling, dense layers, normalize); this adds the prompt,
    tokenizes with `tokenizers` (same ids as the transformers tokenizer: <bos> ... <eos>), truncates,
    and batches texts sorted by length as sentence-transformers does."""

    def __init__(self, name: str, onnx_file: Path, model_dir: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = name
        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(str(onnx_file), sess_options=opts, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.load_s = time.perf_counter() - t0

    def set_max_length(self, n: int) -> None:
        self.tok.enable_truncation(n)

    def _encode(self, texts, batch_size=32):
        encs = self.tok.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(encs[i].ids))
        out = np.empty((len(texts), 768), dtype=np.float32)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[r, :n] = encs[i].ids
                mask[r, :n] = 1
            out[idx] = self.sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def docs(self, texts, batch_size=32):
        return self._encode([DOC_PROMPT + t for t in texts], batch_size)

    def queries(self, texts, batch_size=32):
        return self._encode([QUERY_PROMPT + t for t in texts], batch_size)

    def query(self, text):
        return self._encode([QUERY_PROMPT + text])[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path("/tmp/gemma/model/model_download"))
    ap.add_argument("--onnx-dir", type=Path, default=Path("/tmp/gemma/onnx"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/qa"))
    ap.add_argument("--zh", default="rgb_zh", help="Chinese corpus for passages/s")
    ap.add_argument("--en", default="clapnq", help="English corpus for passages/s")
    ap.add_argument("--passages", type=int, default=200)
    ap.add_argument("--query-samples", type=int, default=60)
    ap.add_argument("--quality-sets", nargs="*", default=["xquad_zh2en", "xquad_en2zh"])
    ap.add_argument("--max-lengths", nargs="*", type=int, default=[256, 128])
    ap.add_argument("--variants", nargs="*", default=["torch", "onnx-fp32", "onnx-int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write all figures here")
    args = ap.parse_args()

    zh = [passage_text(d) for d in read_jsonl(args.data / args.zh / "corpus.jsonl")[: args.passages]]
    en = [passage_text(d) for d in read_jsonl(args.data / args.en / "corpus.jsonl")[: args.passages]]
    sets = {s: load_beir(args.data / s) for s in args.quality_sets}
    # Single-query latency: half Chinese, half English questions.
    qs = [q["text"] for s in sets.values() for q in s[1][: args.query_samples // max(1, len(sets))]]

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    tok.no_padding()
    for label, texts in (("zh", zh), ("en", en)):
        lens = [len(e.ids) for e in tok.encode_batch([DOC_PROMPT + t for t in texts])]
        print(f"{label} passages: {len(texts)}, tokens with prompt: mean {np.mean(lens):.0f}, median {np.median(lens):.0f}, "
              f"max {max(lens)}; over 256: {sum(n > 256 for n in lens)}, over 128: {sum(n > 128 for n in lens)}")

    variants = []
    for v in args.variants:
        if v == "torch":
            variants.append(TorchVariant(args.model, args.threads))
        else:
            f = args.onnx_dir / f"gemma.{v.split('-', 1)[1]}.onnx"  # onnx-int8 -> gemma.int8.onnx
            variants.append(OnnxVariant(v, f, args.model, args.threads))
        print(f"loaded {variants[-1].name} in {variants[-1].load_s:.1f} s")

    rows = []
    for L in args.max_lengths:
        ref_docs: dict[str, np.ndarray] = {}
        for v in variants:
            v.set_max_length(L)
            v.docs(zh[:4]); v.query(qs[0])  # warm-up
            row = {"variant": v.name, "max_length": L}
            row["load_before"] = os.getloadavg()[0]
            for label, texts in (("zh", zh), ("en", en)):
                t0, c0 = time.perf_counter(), time.process_time()
                vecs = v.docs(texts)
                row[f"passages_s_{label}"] = len(texts) / (time.perf_counter() - t0)
                # CPU seconds of this process (all threads): less sensitive to other jobs than wall time.
                row[f"cpu_ms_per_passage_{label}"] = (time.process_time() - c0) * 1000 / len(texts)
                key = f"{label}"
                if v.name == "torch-fp32" or key not in ref_docs:
                    ref_docs.setdefault(key, vecs)
                    row[f"cos_to_first_{label}"] = 1.0
                else:
                    row[f"cos_to_first_{label}"] = float((vecs * ref_docs[key]).sum(1).mean())
            lat = []
            c0 = time.process_time()
            for q in qs:
                t0 = time.perf_counter()
                v.query(q)
                lat.append((time.perf_counter() - t0) * 1000)
            row["query_cpu_ms"] = (time.process_time() - c0) * 1000 / len(qs)
            row["query_p50_ms"] = statistics.median(lat)
            row["query_p95_ms"] = float(np.percentile(lat, 95))
            for s, (corpus, queries, qrels) in sets.items():
                dv = v.docs([passage_text(d) for d in corpus])
                qv = v.queries([q["text"] for q in queries])
                n, r, m = metrics([d["_id"] for d in corpus], dv, queries, qv, qrels)
                row[f"ndcg10_{s}"], row[f"recall10_{s}"], row[f"mrr10_{s}"] = n, r, m
            row["load_after"] = os.getloadavg()[0]
            rows.append(row)
            print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in row.items()}), flush=True)

    print()
    names = list(sets)
    head = ["variant", "max len", "passages/s zh", "passages/s en", "query p50 ms", "query p95 ms"] + \
           [f"nDCG@10 {s}" for s in names] + [f"R@10 {s}" for s in names] + ["cos to torch zh", "cos to torch en", "CPU ms/passage zh", "CPU ms/passage en", "CPU ms/query", "load 1-min before/after"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["variant"], str(r["max_length"]), f"{r['passages_s_zh']:.1f}", f"{r['passages_s_en']:.1f}",
                 f"{r['query_p50_ms']:.0f}", f"{r['query_p95_ms']:.0f}"] + \
                [f"{r[f'ndcg10_{s}']:.3f}" for s in names] + [f"{r[f'recall10_{s}']:.3f}" for s in names] + \
                [f"{r['cos_to_first_zh']:.4f}", f"{r['cos_to_first_en']:.4f}",
                 f"{r['cpu_ms_per_passage_zh']:.0f}", f"{r['cpu_ms_per_passage_en']:.0f}", f"{r['query_cpu_ms']:.0f}",
                 f"{r['load_before']:.1f}/{r['load_after']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    for f in sorted(args.onnx_dir.glob("*.onnx*")):
        print(f"{f.name}: {f.stat().st_size:,} bytes")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
