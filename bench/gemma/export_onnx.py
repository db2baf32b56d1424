"""Export EmbeddingGemma-300M (the whole sentence-transformers pipeline: Gemma3 encoder -> mean
pooling -> Dense 768->3072 -> Dense 3072->768 -> L2 normalize) to one ONNX graph with inputs
input_ids, attention_mask (int64, dynamic batch and sequence) and output sentence_embedding, check
it against torch on padded inputs, then derive an int8 file with onnxruntime's dynamic quantization.

    python bench/gemma/export_onnx.py MODEL_DIR OUT_DIR [--dynamo]

Writes OUT_DIR/gemma.fp32.onnx, OUT_DIR/gemma.int8.onnx (int8 MatMul weights and int8 embedding
table), OUT_DIR/gemma.int8mm.onnx (int8 MatMul weights only; embedding table stays fp32) and
OUT_DIR/gemma.int8keep.onnx (as int8, with the first and last layer and the Dense head left fp32).
The prompts ("task: search result | query: ", "title: none | text: ") are plain text prefixes: the
caller prepends them before tokenizing, so they are not part of the graph.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def export(model_dir: Path, out: Path, dynamo: bool) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    st = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"})
    st.eval()

    class Pipeline(torch.nn.Module):
        def __init__(self, st):
            super().__init__()
            self.st = st
            self.window = st[0].auto_model.config.sliding_window

        def forward(self, input_ids, attention_mask):
            # transformers builds Gemma3's masks with torch.vmap, which the tracer cannot follow; a
            # dict of ready additive masks skips that (Gemma3TextModel.forward takes one as is).
            # EmbeddingGemma is bidirectional: a token sees every non-pad token, and in sliding layers
            # only those with |i - j| < sliding_window (512).
            seq = input_ids.shape[1]
            neg = torch.finfo(torch.float32).min
            keep = attention_mask[:, None, None, :].bool()  # (batch, 1, 1, seq)
            pos = torch.arange(seq, device=input_ids.device)
            near = (pos[:, None] - pos[None, :]).abs() < self.window  # (seq, seq)
            zero = torch.zeros((), dtype=torch.float32)
            full = torch.where(keep, zero, neg).expand(-1, 1, seq, -1)
            sliding = torch.where(keep & near[None, None], zero, neg)
            hidden = self.st[0].auto_model(input_ids=input_ids, attention_mask={
                "full_attention": full, "sliding_attention": sliding}).last_hidden_state
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_embeddings": hidden}
            for module in list(self.st)[1:]:
                features = module(features)
            return features["sentence_embedding"]

    wrapped = Pipeline(st).eval()
    tok = st.tokenizer
    texts = ["title: none | text: 这是一个测试段落，讲的是立体匹配方法的运行速度。" * 2,
             "task: search result | query: how fast is it?",
             "title: none | text: A longer English passage about stereo matching, speed and accuracy, " * 3]
    enc = tok(texts, padding=True, return_tensors="pt")
    example = (enc["input_ids"], enc["attention_mask"])
    with torch.no_grad():
        expected = wrapped(*example).numpy()
        reference = st.encode(texts, convert_to_numpy=True)  # sentence-transformers' own path
    print(f"wrapper vs SentenceTransformer.encode: max |diff| {np.abs(expected - reference).max():.2e}")
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "gemma.fp32.onnx"
    t0 = time.time()
    with torch.no_grad():
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            prog = torch.onnx.export(wrapped, example, input_names=["input_ids", "attention_mask"],
                                     output_names=["sentence_embedding"],
                                     dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}), dynamo=True,
                                     external_data=True)
            prog.save(str(fp32), external_data=True)
        else:
            torch.onnx.export(wrapped, example, str(fp32), input_names=["input_ids", "attention_mask"],
                              output_names=["sentence_embedding"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                            "attention_mask": {0: "batch", 1: "sequence"},
                                            "sentence_embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
    print(f"exported {fp32} in {time.time() - t0:.0f} s")
    check(fp32, example, expected, "fp32")
    # A second shape, to catch shapes baked in by the tracer.
    enc2 = tok(texts[1:] + ["title: none | text: 短"], padding=True, return_tensors="pt")
    with torch.no_grad():
        exp2 = wrapped(enc2["input_ids"], enc2["attention_mask"]).numpy()
    check(fp32, (enc2["input_ids"], enc2["attention_mask"]), exp2, "fp32 (other shape)")
    return fp32


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check(path: Path, example, expected: np.ndarray, label: str) -> None:
    got = session(path).run(None, {"input_ids": example[0].numpy(), "attention_mask": example[1].numpy()})[0]
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    print(f"{label}: max |diff| to torch {np.abs(got - expected).max():.2e}, min cosine {cos.min():.6f}")


def quantize(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    t0 = time.time()
    # Same settings as ragchat.embed.onnx_export.quantize_int8 (weights of MatMuls with constant B only,
    # per-channel, reduce_range for AVX2 without VNNI).
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"MatMulConstBOnly": True})
    print(f"quantized {int8} in {time.time() - t0:.0f} s")
    # Variant: MatMul weights only; the 262k x 768 embedding table (Gather) stays fp32.
    mm = int8.with_name("gemma.int8mm.onnx")
    t0 = time.time()
    quantize_dynamic(str(fp32), str(mm), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
    print(f"quantized {mm} (MatMul only) in {time.time() - t0:.0f} s")
    # Variant: as gemma.int8.onnx, but the MatMuls of the first and last transformer layer and the two
    # Dense projections stay fp32 (quant_sweep.py: cosine to fp32 0.97 -> 0.98, nDCG@10 back to fp32's).
    import onnx

    names = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type == "MatMul"]
    last = max(int(n.split("/layers.")[1].split("/")[0]) for n in names if "/layers." in n)
    keep = [n for n in names if "/layers." not in n or "/layers.0/" in n or f"/layers.{last}/" in n]
    k = int8.with_name("gemma.int8keep.onnx")
    t0 = time.time()
    quantize_dynamic(str(fp32), str(k), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True})
    print(f"quantized {k} ({len(keep)} of {len(names)} MatMuls left fp32) in {time.time() - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--dynamo", action="store_true", help="torch.export-based exporter (needs onnxscript)")
    ap.add_argument("--int8-only", action="store_true")
    args = ap.parse_args()
    fp32 = args.out_dir / "gemma.fp32.onnx"
    if not args.int8_only:
        fp32 = export(args.model_dir, args.out_dir, args.dynamo)
    quantize(fp32, args.out_dir / "gemma.int8.onnx")
    for f in sorted(args.out_dir.iterdir()):
        print(f"{f.name}: {f.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
