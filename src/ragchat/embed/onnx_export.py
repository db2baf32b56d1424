"""ONNX Runtime backend for local sentence-transformers models: export once into the store's cache,
then embed with onnxruntime + tokenizers (no torch, no optimum, no hub at run time).

Export (first use only, needs torch and the `onnx` package): the model's transformer is traced to
``<cache>/onnx/<model>-<digest>.fp32.onnx`` with dynamic batch and sequence axes. ``backend =
"onnx"`` runs ``...fused.onnx``, the same graph after ONNX Runtime's transformer optimizer has
fused attention, LayerNorm and GELU into single operators (about 7 % less CPU per chunk than the
plain graph here; ONNX Runtime's own session optimizations do not find the attention pattern).
Both are checked against torch on padded inputs before they are accepted. ``backend = "onnx-int8"``
derives ``...int8.onnx`` from the plain graph (the quantizer cannot read the fused operators) with
onnxruntime's dynamic int8 quantization (int8 weights of the MatMul nodes with constant weights,
per-channel; activations quantized per call). Every file is written under a temporary name and
renamed, so a crash never leaves a half file that a later start would load.

Inference (`OnnxEncoder.encode`) mirrors sentence-transformers for models whose pipeline is
Transformer -> Pooling (mean, CLS or max) [-> Normalize]: same word-piece tokenizer, truncation
at the model's ``max_seq_length``, texts sorted by length so batches carry little padding.

Left out: models with other module pipelines (dense layers, prompts), GPU providers, OpenVINO.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ragchat.core.errors import ConfigError, RagchatError

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_LOCK = threading.Lock()
# Largest absolute difference of hidden states allowed between torch and the exported graph.
_EXPORT_TOLERANCE = 1e-3


def _pooling_mode(model_path: Path) -> str:
    modules_file = model_path / "modules.json"
    if not modules_file.exists():
        return "mean"  # sentence-transformers' own default for a bare transformers folder
    modules = json.loads(modules_file.read_text())
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unsupported:
        raise ConfigError(
            f"the ONNX backend supports Transformer -> Pooling -> Normalize models; {model_path} also has {unsupported}. "
            'Set embedding.backend = "torch" for this model'
        )
    pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
    if pooling is None:
        return "mean"
    cfg = json.loads((model_path / pooling["path"] / "config.json").read_text())
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    if cfg.get("pooling_mode_mean_tokens", True) and not cfg.get("pooling_mode_mean_sqrt_len_tokens"):
        return "mean"
    raise ConfigError(f'the ONNX backend does not support the pooling of {model_path}; set embedding.backend = "torch"')


def _max_seq_length(model_path: Path) -> int:
    cfg = model_path / "sentence_bert_config.json"
    if cfg.exists():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
    return 512


def _weights_file(model_path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_path / name).exists():
            return model_path / name
    raise ConfigError(f"{model_path} has no model.safetensors or pytorch_model.bin to export to ONNX")


def _model_digest(model_path: Path) -> str:
    """Changes when the model's config or weights change (size and mtime: no need to read 90 MB)."""
    weights = _weights_file(model_path)
    st = weights.stat()
    h = hashlib.sha256()
    h.update((model_path / "config.json").read_bytes())
    h.update(f"{weights.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def onnx_paths(model_path: Path, cache_dir: Path) -> tuple[Path, Path, Path]:
    """(fp32 file, fused fp32 file, int8 file) for this model in this cache; none need exist yet."""
    base = cache_dir / "onnx" / f"{model_path.name}-{_model_digest(model_path)}"
    return tuple(base.with_name(f"{base.name}.{kind}.onnx") for kind in ("fp32", "fused", "int8"))


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def export_fp32(model_path: Path, dest: Path, fused_dest: Path) -> None:
    """Trace the transformer to ONNX at `dest`, and its fused form to `fused_dest` (atomically), each
    after checking it against torch."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import onnx  # noqa: F401  (torch's exporter needs it; fail early with a hint)
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise RagchatError(
            f"exporting the embedding model to ONNX needs torch and onnx ({exc}): pip install onnx, "
            'or set embedding.backend = "torch"'
        ) from exc

    # Eager attention traces to the plain MatMul/Softmax pattern that ONNX Runtime's fusions know.
    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()
    wants_types = "token_type_ids" in inspect.signature(model.forward).parameters
    names = list(_INPUTS if wants_types else _INPUTS[:2])

    class _Hidden(torch.nn.Module):  # keyword call: transformers 5 reordered forward()'s positional args
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    # Padded example inputs: a trace taken on an all-ones mask may drop the masking branch.
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (3, 23), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 7:] = 0
    example = (ids, mask, torch.zeros_like(ids))[: len(names)]
    with torch.no_grad():
        expected = _Hidden(model)(*example).numpy()  # before export: tracing may leave the module altered

    def check(path: Path) -> None:
        got = _session(path).run(None, {n: t.numpy() for n, t in zip(names, example)})[0]
        diff = float(np.abs(got - expected)[mask.numpy().astype(bool)].max())
        if not diff <= _EXPORT_TOLERANCE:
            raise RagchatError(f"the ONNX export of {model_path} differs from torch by {diff:.2g}; set embedding.backend = \"torch\"")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dest)
    try:
        axes = {n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]}
        with torch.no_grad():
            torch.onnx.export(
                _Hidden(model), example, str(tmp), input_names=names, output_names=["last_hidden_state"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        check(tmp)
        os.replace(tmp, dest)
        _fuse(dest, tmp, model.config)
        check(tmp)
        os.replace(tmp, fused_dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fuse(src: Path, dest: Path, config) -> None:
    """ONNX Runtime's transformer optimizer (its BERT fusions) from src to dest. Patterns it does not
    recognise stay as they are; the check against torch that follows catches a fusion gone wrong."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0).save_model_to_file(str(dest))


def quantize_int8(src: Path, dest: Path) -> None:
    """Dynamic int8 quantization of `src` into `dest` (atomically)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise RagchatError(f"int8 quantization needs the onnx package ({exc}): pip install onnx") from exc
    tmp = _tmp_name(dest)
    try:
        # Weights only (MatMulConstBOnly): quantizing activation x activation products (attention
        # scores) costs accuracy. Per-channel scales and 7-bit range (no VNNI on AVX2 CPUs) keep the
        # cosine to fp32 at about 0.99 on SciFact passages; per-tensor scales fall to about 0.90.
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         extra_options={"MatMulConstBOnly": True})
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_onnx(model_path: Path, cache_dir: Path, quantized: bool, in_process: bool = False) -> Path:
    """The ONNX file for this model, exported (and quantized) into the cache on first use.

    The export runs in a child process by default: it needs torch, which would otherwise stay in
    the app's memory (about 400 MB) for good after a one-time job."""
    fp32, fused, int8 = onnx_paths(model_path, cache_dir)
    target = int8 if quantized else fused
    if target.exists():
        return target
    with _EXPORT_LOCK:
        if target.exists():
            return target
        if in_process:
            if not (fp32.exists() and fused.exists()):
                export_fp32(model_path, fp32, fused)
            if quantized and not int8.exists():
                quantize_int8(fp32, int8)
        else:
            cmd = [sys.executable, "-m", "ragchat.embed.onnx_export", str(model_path), str(cache_dir)] + (["--int8"] if quantized else [])
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if done.returncode != 0 or not target.exists():
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise RagchatError(
                    f"exporting {model_path.name} to ONNX failed ({' / '.join(tail) or f'exit {done.returncode}'}); "
                    'set embedding.backend = "torch"'
                )
    return target


def _session(path: Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Idle worker threads sleep instead of spinning: the cores are shared with the parsing worker,
    # llama.cpp and other users. Same speed alone, and about 4 % less CPU per chunk (bench/embed.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """The subset of SentenceTransformer that ragchat uses (`encode`, `max_seq_length`), on ONNX Runtime."""

    def __init__(self, onnx_file: Path, model_path: Path, threads: int = 0):
        from tokenizers import Tokenizer

        self.onnx_file = onnx_file
        self.max_seq_length = _max_seq_length(model_path)
        self.pooling = _pooling_mode(model_path)
        self._session = _session(onnx_file, threads)
        self._inputs = [i.name for i in self._session.get_inputs()]
        tok = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        tok.no_padding()  # the file may carry a fixed padding; we pad each batch to its longest text
        tok.enable_truncation(self.max_seq_length)
        self._tok = tok

    def encode(self, sentences: Sequence[str] | str, batch_size: int = 32, normalize_embeddings: bool = True,
               show_progress_bar: bool = False, convert_to_numpy: bool = True, **_ignored) -> np.ndarray:
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        encodings = self._tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            vecs = self._embed([encodings[i] for i in idx], normalize_embeddings)
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out[0] if single else out

    def _embed(self, encodings, normalize: bool) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = e.attention_mask
            types[row, :n] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self._session.run(None, {k: feed[k] for k in self._inputs})[0]
        if self.pooling == "cls":
            vecs = hidden[:, 0]
        elif self.pooling == "max":
            vecs = np.where(mask[:, :, None].astype(bool), hidden, -1e9).max(axis=1)
        else:
            m = mask[:, :, None].astype(np.float32)
            vecs = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        if normalize:
            vecs = vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
        return vecs.astype(np.float32, copy=False)


def load_onnx_encoder(model_path: Path, cache_dir: Path, quantized: bool, threads: int = 0) -> OnnxEncoder:
    """Export on first use, then load. Raises RagchatError/ConfigError with a hint for people."""
    _pooling_mode(model_path)  # refuse unsupported pipelines before a minutes-long export
    return OnnxEncoder(ensure_onnx(model_path, cache_dir, quantized), model_path, threads)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m ragchat.embed.onnx_export MODEL_DIR CACHE_DIR [--int8]: export into the cache, print the file."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ragchat.embed.onnx_export", description=main.__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("cache_dir", type=Path)
    ap.add_argument("--int8", action="store_true", help="also write the int8 (dynamic quantization) file")
    args = ap.parse_args(argv)
    try:
        print(ensure_onnx(args.model_dir, args.cache_dir, args.int8, in_process=True))
    except RagchatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
