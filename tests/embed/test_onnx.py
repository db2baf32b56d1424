"""The ONNX embedding backend: exported into the store's cache (no hub), same vectors as torch."""

from pathlib import Path

import numpy as np
import onnx as onnx_lib

import pytest

from conftest import TEST_EMBEDDER
from ragchat.core.settings import EmbeddingSettings
from ragchat.embed.embedder import SentenceTransformerEmbedder

pytestmark = [pytest.mark.slow]  # an ONNX export checked against torch

TEXTS = [
    "TableFormer predicts table structure and cell bounding boxes.",
    "刀片电池的安全性很高。",
    "Short.",
    " ".join(["A much longer passage about zebrafish heart regeneration and cardiomyocytes."] * 12),
]


def test_onnx_matches_torch_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch_vecs = np.array(SentenceTransformerEmbedder(EmbeddingSettings(model=TEST_EMBEDDER), tmp_path).embed_documents(TEXTS))
    onnx = SentenceTransformerEmbedder(EmbeddingSettings(model=TEST_EMBEDDER, backend="onnx"), tmp_path / "cache")
    onnx_vecs = np.array(onnx.embed_documents(TEXTS))
    assert onnx_vecs.shape == torch_vecs.shape == (len(TEXTS), 384)
    cos = (onnx_vecs * torch_vecs).sum(axis=1)  # both L2-normalised
    assert cos.min() > 0.999, cos
    exported = list((tmp_path / "cache").rglob("*.onnx"))
    assert exported, "the model is exported into the store's cache"
    (fused,) = [f for f in exported if f.name.endswith(".fused.onnx")]
    assert Path(onnx.model.onnx_file) == fused, "the backend runs the fused graph"
    ops = {n.op_type for n in onnx_lib.load(str(fused)).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops, ops  # fused by ONNX Runtime's transformer optimizer
    mtime = exported[0].stat().st_mtime
    again = SentenceTransformerEmbedder(EmbeddingSettings(model=TEST_EMBEDDER, backend="onnx"), tmp_path / "cache")
    assert np.allclose(again.embed_query(TEXTS[0]), onnx_vecs[0], atol=1e-5)
    assert exported[0].stat().st_mtime == mtime  # reused, not exported again
