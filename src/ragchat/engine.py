"""The one place where ragchat's parts are built from the settings and wired together.

Nothing heavy happens in the constructor beyond opening the catalog and taking the store lock: the
embedding model, Chroma, the parsing worker and the LLM are created on first use, so the web app
can serve its page before any model is loaded.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from functools import cached_property
import logging
from pathlib import Path

from ragchat.answer.engine import ChatEngine, ChatOptions
from ragchat.answer.conversations import Conversations
from ragchat.answer.feedback import FeedbackBook
from ragchat.core.settings import BUNDLED_EMBEDDER, MULTILINGUAL_EMBEDDER, Settings, user_cache_dir
from ragchat.embed.embedder import build_embedder
from ragchat.core.errors import ConfigError, EmbeddingModelMismatch, LLMError, ReadOnlyStore, StoreError, host_faults
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.jobs import IngestJobs
from ragchat.ingest.pipeline import Ingestor
from ragchat.llm.chat_model import ResolvedLLM
from ragchat.llm.gate import LLMGate
from ragchat.llm.providers import BUILTIN, list_ollama_models, resolve_llm, unreachable_openai_servers
from ragchat.llm.models import AUTO, BUILTIN_MODELS, auto_builtin, by_file
from ragchat.ingest.queue import JobQueue
from ragchat.retrieve import scope
from ragchat.retrieve.search import Filters, Retriever
from ragchat.store.catalog import Catalog
from ragchat.store.wakeup import JobWakeup
from ragchat.store.lexical import LEXICAL_FORMAT, LexicalIndex
from ragchat.store.lexical_follow import FollowedLexicalIndex
from ragchat.store.vectors import VectorIndex

log = logging.getLogger(__name__)

_RESOLVE_TTL_S = 30.0


class StoreLock:
    """Chroma's embedded mode is not safe for several processes: one process per store."""

    def __init__(self, store: Path):
        self.path = store / ".lock"
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            pid = self._fh.read().strip() or "unknown"
            self._fh.close()
            raise StoreError(
                f"the store {store} is in use by another ragchat process (pid {pid}). Chroma's embedded store is not safe "
                "for two processes: stop the other one (or use the web app it serves), or pass another --store"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


class Engine:
    """Embedded mode (the default): catalog, Chroma and BM25 inside the store, one process, held by
    the store lock. Shared mode (settings.shared_mode): a PostgreSQL catalog, a Chroma server, the
    originals in the store folder that every process can reach, a BM25 cache per process that
    follows the catalog, and ingestion through the catalog's job queue (ragchat.ingest.queue); any number
    of processes, no store lock."""

    def __init__(self, settings: Settings, *, allow_model_change: bool = False):
        self.settings = settings
        self.store = settings.store
        self.shared = settings.shared_mode
        with host_faults(self.store):
            self.store.mkdir(parents=True, exist_ok=True)
        if self.shared and settings.catalog_sqlalchemy_url.startswith("sqlite"):
            raise ConfigError(
                "shared.chroma_url is set, so several processes share the catalog: set catalog_url to a PostgreSQL "
                "server (postgresql+psycopg://USER@HOST:5432/DB); SQLite is for one process (docs/DEPLOY.md)"
            )
        if not self.shared and os.statvfs(self.store).f_flag & os.ST_RDONLY:
            raise ReadOnlyStore(
                f"the store folder {self.store} is read-only, and ragchat cannot open a store it cannot write to (its "
                "SQLite catalog and Chroma write even to search). Nothing in it was changed: make it writable again (for "
                "a mount: `mount -o remount,rw`), or copy it to a writable folder and pass that as --store"
            )
        with host_faults(self.store):
            self._lock = None if self.shared else StoreLock(self.store)
        try:
            with host_faults(self.store):
                self.catalog = Catalog(settings.catalog_sqlalchemy_url, shared=self.shared)
            self.resolve_embedding_model(allow_model_change)
            self.check_embedding_model(allow_model_change)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self.gate = LLMGate(settings.llm.max_concurrent, settings.llm.max_queue)
        self.conversations = Conversations(self.catalog)
        self.feedback = FeedbackBook(self.catalog, settings)
        self.jobs: IngestJobs | None = None  # the background ingestion of the web server (start_jobs)
        self._resolved: dict[tuple, tuple[float, ResolvedLLM]] = {}
        self._resolve_lock = threading.Lock()

    # ---- parts, built on first use -------------------------------------------------------------

    @cached_property
    def embedder(self):
        return build_embedder(self.settings.embedding, self.settings.llm.ollama_url, self.settings.llm.timeout_s,
                              cache_dir=user_cache_dir())

    @cached_property
    def vectors(self) -> VectorIndex:
        if self.shared:
            return VectorIndex(None, self.embedder, url=self.settings.shared.chroma_url,
                               database=self.settings.shared.chroma_database)
        return VectorIndex(self.store / "chroma", self.embedder)

    @cached_property
    def followed_lexical(self) -> FollowedLexicalIndex:
        shared = self.settings.shared
        followed = FollowedLexicalIndex(self.catalog, shared.lexical_cache or user_cache_dir() / "lexical",
                                        shared.follow_interval_s)
        followed.start()
        return followed

    @cached_property
    def lexical(self) -> LexicalIndex:
        if self.shared:
            return self.followed_lexical.index
        index = LexicalIndex(self.store / "lexical")
        if self.catalog.get_meta("lexical_index") != LEXICAL_FORMAT or (index.count() == 0 and self.catalog.count_chunks()):
            self._rebuild_lexical(index)
        return index

    def _rebuild_lexical(self, index: LexicalIndex) -> None:
        """Fill the BM25 index from the catalog's chunk texts: for stores made before it existed
        (they had SQLite FTS5 in lexical.sqlite) or whose index folder was lost. No embedding needed."""
        index.clear()
        for rows in self.catalog.iter_done_chunks():
            index.add(rows)
        self.catalog.set_meta("lexical_index", LEXICAL_FORMAT)
        for old in ("lexical.sqlite", "lexical.sqlite-wal", "lexical.sqlite-shm"):
            (self.store / old).unlink(missing_ok=True)

    @cached_property
    def loader(self) -> IsolatedLoader:
        return IsolatedLoader(self.settings.ingest)

    @cached_property
    def retriever(self) -> Retriever:
        return Retriever(self.settings.retrieval, self.embedder, self.vectors, self.lexical, self.catalog,
                         multilingual=self.embedder.multilingual)

    @cached_property
    def ingestor(self) -> Ingestor:
        limit = self.embedder.max_tokens - 2  # the model's [CLS] and [SEP]
        self.catalog.set_meta("embed_model", self.embedder.model_id)
        return Ingestor(
            catalog=self.catalog, vectors=self.vectors, lexical=self.lexical, embedder=self.embedder, loader=self.loader,
            store_dir=self.store, max_tokens=min(self.settings.chunking.max_tokens, limit),
            overlap_tokens=self.settings.chunking.overlap_tokens, batch_size=self.settings.embedding.batch_size,
        )

    @cached_property
    def queue(self) -> JobQueue:
        """Shared mode: ingestion goes through the catalog's job queue, which any process may serve."""
        return JobQueue(self)

    @cached_property
    def job_wakeup(self) -> JobWakeup:
        """Shared mode: wakes this process's job-queue waiters when the queue changes (LISTEN/NOTIFY)."""
        return JobWakeup(self.settings.catalog_sqlalchemy_url, listen=self.settings.shared.job_notify)

    @cached_property
    def chat(self) -> ChatEngine:
        return ChatEngine(self.settings.chat, self.retriever, self.llm_for, self.gate, self.settings.llm.timeout_s,
                          self.has_documents)

    def start_jobs(self, workdir: Path | None = None) -> IngestJobs:
        """The background ingestion that the web page and the HTTP API share, started once; uploads
        wait in ``workdir`` (default: the system's temporary folder). It closes with the engine."""
        if self.jobs is None:
            self.jobs = IngestJobs(self, workdir)
        return self.jobs

    # ---- behaviour that needs several parts ------------------------------------------------------

    def resolve_embedding_model(self, changing: bool) -> None:
        """embedding.model = "auto": the multilingual bundled model for a new store, or when rebuilding
        (``changing``, `ragchat reindex`); a store built with the English bundled model keeps it, with
        one line in the log that says what `ragchat reindex` would change."""
        emb = self.settings.embedding
        if emb.model != "auto":
            return
        if emb.provider == "ollama":
            raise ConfigError('embedding.provider = "ollama" needs embedding.model: the name of an Ollama embedding model')
        emb.model = MULTILINGUAL_EMBEDDER
        built_with = self.catalog.get_meta("embed_model")
        if built_with == f"sentence-transformers:{BUNDLED_EMBEDDER}" and emb.provider == "sentence-transformers" \
                and not changing and self.catalog.count_chunks():
            emb.model = BUNDLED_EMBEDDER
            log.warning("this store was indexed with %s, which reads English only; it keeps that model. Run `ragchat "
                        "reindex` once to rebuild it with %s (Chinese and questions across languages; your documents are "
                        "kept)", BUNDLED_EMBEDDER, MULTILINGUAL_EMBEDDER)

    def check_embedding_model(self, allow_change: bool) -> None:
        built_with = self.catalog.get_meta("embed_model")
        wanted = f"{self.settings.embedding.provider}:{self.settings.embedding.model}"
        if built_with and built_with != wanted and not allow_change and self.catalog.count_chunks():
            raise EmbeddingModelMismatch(
                f"this store was indexed with {built_with}, but the configuration asks for {wanted}. Vectors of two models "
                f"cannot be mixed. Run `ragchat reindex` to rebuild the index with {wanted} (your documents are kept), "
                f"or set embedding.model back to {built_with.split(':', 1)[1]!r}"
            )

    def reindex(self, on_event=None):
        if self.shared and self.catalog.pending_jobs():
            raise ConfigError(
                "ingestion jobs are queued or running: rebuilding every index must not race them. Stop every ragchat "
                "server and worker, then run `ragchat reindex` once (docs/DEPLOY.md)"
            )
        return self.ingestor.reindex(on_event)

    def recover(self, on_event=None):
        """Finish ingestions a crash interrupted. In shared mode another process may be writing a
        document right now, so nothing is done here: the job queue hands a dead process's job to
        another one (ragchat.ingest.queue)."""
        if self.shared:
            return []
        with host_faults(self.store):
            return self.ingestor.recover(on_event)

    def check_services(self) -> list[str]:
        """Raise a StoreError naming the service, its URL and how to start it, when a shared service
        is not reachable (the catalog's was checked when it was opened). Returns notes about the
        LLM servers that do not answer: the app can start without them (documents can be added),
        and answers work as soon as one is back."""
        if self.shared:
            self.vectors.open()
        if self.settings.llm.provider == "openai":
            down = unreachable_openai_servers(self.settings.llm)
            if down:
                return [f"the LLM server(s) at {'; '.join(down)} do not answer: answers fail until one is up "
                        "(start it, or fix llm.base_url)"]
        return []

    def has_documents(self, filters: Filters) -> bool:
        searchable = self.catalog.searchable_doc_ids()
        if filters.doc_ids is not None:
            searchable = searchable & set(filters.doc_ids)
        if filters.collections is not None:
            wanted = set(filters.collections)
            return any(d.id in searchable for d in self.catalog.documents(collections=list(wanted)))
        return bool(searchable)

    def allowed_collections(self, user: str | None) -> list[str]:
        """The collections this user may search: shared ones and their own private ones (see access.py)."""
        return scope.readable_collections(self.catalog, user)

    def filters_for(self, user: str | None, filters: Filters | None = None) -> Filters:
        """filters narrowed to what the user may read; pass the result to retrieval and chat."""
        return scope.scope_filters(self.catalog, user, filters)

    def llm_for(self, options: ChatOptions) -> ResolvedLLM:
        llm_settings, override = self._llm_choice(options.model)
        if options.temperature is not None:
            llm_settings = llm_settings.model_copy(update={"temperature": options.temperature})
        key = (options.model, llm_settings.temperature)
        with self._resolve_lock:
            hit = self._resolved.get(key)
            if hit and time.monotonic() - hit[0] < _RESOLVE_TTL_S:
                return hit[1]
        resolved = resolve_llm(llm_settings, override)
        with self._resolve_lock:
            self._resolved[key] = (time.monotonic(), resolved)
        return resolved

    def ollama_models(self) -> list[str]:
        return list_ollama_models(self.settings.llm)

    def _llm_choice(self, model: str | None):
        """The LLM settings and ``resolve_llm``'s model_override for a chat's model choice.
        "builtin:NAME" (NAME a bundled model, or "auto" for the one picked for this machine) runs that
        model on the built-in provider, whatever llm.builtin_model and llm.gguf_path say; other values
        ("builtin", an Ollama model, None) go to ``resolve_llm`` as they are."""
        if not (model or "").startswith(BUILTIN + ":"):
            return self.settings.llm, model
        name = model.split(":", 1)[1]
        if name != AUTO and name not in BUILTIN_MODELS:
            raise LLMError(f"there is no built-in model '{name}': choose one of "
                           + ", ".join(f"{BUILTIN}:{n}" for n in (AUTO, *BUILTIN_MODELS)))
        return self.settings.llm.model_copy(update={"builtin_model": name, "gguf_path": ""}), BUILTIN

    def builtin_models(self) -> list[tuple[str, str]]:
        """The built-in models a person can pick (value for ``ChatOptions.model``, label): the one picked
        for this machine, then each bundled model; plus "builtin", the configured file, when llm.gguf_path
        names one."""
        picked = BUILTIN_MODELS[auto_builtin(self.settings.llm.threads)[0]]
        choices = [(f"{BUILTIN}:{AUTO}", f"Built-in, picked for this machine: {picked.title}")]
        choices += [(f"{BUILTIN}:{m.name}", f"Built-in: {m.title} ({m.note})") for m in BUILTIN_MODELS.values()]
        if self.settings.llm.gguf_path:
            choices.insert(0, (BUILTIN, f"Built-in: {Path(self.settings.llm.gguf_path).name} (configured)"))
        return choices

    def describe_llm(self, model: str | None, provider: str, model_name: str) -> tuple[str, str]:
        """(name, why) of the model that answers for a chat's model choice (``ChatOptions.model``), for a
        person: a bundled model by its title; ``why`` is set when llm.builtin_model = "auto" chose it
        (the line ``models.auto_builtin`` logged)."""
        if provider != "llamacpp":
            return model_name, ""
        bundled = by_file(model_name)
        try:
            settings, _ = self._llm_choice(model)
        except LLMError:
            settings = self.settings.llm
        if bundled is None or settings.gguf_path or settings.builtin_model != AUTO:
            return (bundled.title if bundled else model_name), ""
        return bundled.title, auto_builtin(settings.threads)[1]

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        if "queue" in self.__dict__:
            self.queue.close()
        if "job_wakeup" in self.__dict__:
            self.job_wakeup.close()
        if "loader" in self.__dict__:
            self.loader.close()
        if "followed_lexical" in self.__dict__:
            self.followed_lexical.close()
        elif "lexical" in self.__dict__:
            self.lexical.close()
        self.catalog.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
