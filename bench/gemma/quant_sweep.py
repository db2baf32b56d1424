"""Which dynamic-int8 settings keep EmbeddingGemma closest to fp32? Builds a few quantized files
from gemma.fp32.onnx and prints, for each, the cosine of its document vectors to fp32's and nDCG@10
on the quality sets (dense alone, one max length).

    python bench/gemma/quant_sweep.py [--onnx-dir /tmp/gemma/onnx] [--max-length 256]

Variants (all weights-only on MatMuls with constant B, dynamic activations):
  rr-pc      reduce_range=True, per-channel (what ragchat.embed.onnx_export uses for MiniLM; = gemma.int8.onnx)
  full-pc    reduce_range=False, per-channel (8-bit weights; safe on CPUs with VNNI, may saturate on AVX2-only)
  rr-pc-keep reduce_range=True, per-channel, first and last transformer layer and the Dense head left fp32
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx

from bench_gemma import OnnxVariant, load_beir, metrics, passage_text  # same folder


def build(fp32: Path, dest: Path, reduce_range: bool, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if dest.exists():
        return
    quantize_dynamic(str(fp32), str(dest), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                     nodes_to_exclude=exclude, extra_options={"MatMulConstBOnly": True})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path("/tmp/gemma/model/model_download"))
    ap.add_argument("--onnx-dir", type=Path, default=Path("/tmp/gemma/onnx"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/qa"))
    ap.add_argument("--sets", nargs="*", default=["xquad_zh2en", "xquad_en2zh"])
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    fp32 = args.onnx_dir / "gemma.fp32.onnx"

    g = onnx.load(str(fp32), load_external_data=False).graph
    matmuls = [n.name for n in g.node if n.op_type == "MatMul"]
    n_layers = 24
    edge = [m for m in matmuls if "/layers.0/" in m or f"/layers.{n_layers - 1}/" in m]
    head = [m for m in matmuls if "/layers." not in m]  # the two Dense projections (and anything outside layers)
    print(f"{len(matmuls)} MatMul nodes; kept fp32 in rr-pc-keep: {len(edge)} edge-layer + {len(head)} outside layers: {head}")

    variants = {"rr-pc": (True, []), "full-pc": (False, []), "rr-pc-keep": (True, edge + head)}
    files = {"fp32": fp32}
    for name, (rr, excl) in variants.items():
        files[name] = args.onnx_dir / f"gemma.sweep-{name}.onnx"
        t0 = time.time()
        build(fp32, files[name], rr, excl)
        print(f"{name}: {files[name].stat().st_size:,} bytes ({time.time() - t0:.0f} s)")

    sets = {s: load_beir(args.data / s) for s in args.sets}
    ref = {}
    for name, f in files.items():
        v = OnnxVariant(name, f, args.model, args.threads)
        v.set_max_length(args.max_length)
        cells = [name]
        for s, (corpus, queries, qrels) in sets.items():
            t0 = time.perf_counter()
            dv = v.docs([passage_text(d) for d in corpus])
            qv = v.queries([q["text"] for q in queries])
            dt = time.perf_counter() - t0
            if name == "fp32":
                ref[s] = (dv, qv)
            cos_d = float((dv * ref[s][0]).sum(1).mean())
            cos_q = float((qv * ref[s][1]).sum(1).mean())
            n, r, m = metrics([d["_id"] for d in corpus], dv, queries, qv, qrels)
            cells += [f"{s}: nDCG@10 {n:.3f} R@10 {r:.3f} cos docs {cos_d:.4f} cos queries {cos_q:.4f} ({dt:.0f} s)"]
        print(" | ".join(cells), flush=True)
        del v


if __name__ == "__main__":
    main()
