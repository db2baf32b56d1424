"""A QA set for the web app's evaluations: an uploaded BEIR .zip opened safely, and the store's own
documents that a set's corpus names.

``extract_zip`` writes only ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/*.tsv`` (at the top of
the zip or in one folder), and refuses, with a message a person can act on, a file that is not a zip,
a path that leaves the folder (``../``, absolute), more than ``MAX_ENTRIES`` entries, more than
``MAX_BYTES`` once unpacked, and a damaged zip. The sizes a zip declares are what is checked:
``zipfile`` reads no more than them, and a file whose bytes do not match them fails its CRC check.

``store_documents``: when every corpus ``_id`` is the name of a document the user may read (an
exported feedback set names its documents so), those documents' ids; the evaluation then searches
them where they are instead of ingesting the corpus again.
"""

from __future__ import annotations

import json
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ragchat.core.errors import RagchatError
from ragchat.retrieve.scope import visible_documents
from ragchat.store.catalog import Catalog

MAX_ENTRIES = 1000
MAX_BYTES = 200_000_000
WANTED = ("corpus.jsonl", "queries.jsonl")


def extract_zip(zip_path: Path, out: Path, split: str = "test") -> Path:
    """The QA set of ``zip_path`` written to ``out`` (a new folder); RagchatError for a zip to refuse."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise RagchatError(f"{Path(zip_path).name} is not a .zip file: zip a BEIR folder (corpus.jsonl, "
                           f"queries.jsonl, qrels/{split}.tsv)") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise RagchatError(f"the zip holds {len(entries)} entries; a QA set needs 3, and at most {MAX_ENTRIES} are read")
        picked = _pick(entries)
        declared = sum(info.file_size for info, _ in picked)
        if declared > MAX_BYTES:
            raise RagchatError(f"the QA set is {declared / 1e6:.0f} MB unpacked; at most {MAX_BYTES / 1e6:.0f} MB is read")
        out.mkdir(parents=True)
        try:
            for info, name in picked:
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            shutil.rmtree(out, ignore_errors=True)
            raise RagchatError(f"{Path(zip_path).name} is damaged ({exc}): zip the folder again") from None
    missing = [n for n in (*WANTED, f"qrels/{split}.tsv") if not (out / n).is_file()]
    if missing:
        shutil.rmtree(out, ignore_errors=True)
        raise RagchatError(f"the zip lacks {', '.join(missing)}: a QA set is a BEIR folder (corpus.jsonl, "
                           f"queries.jsonl, qrels/{split}.tsv), zipped")
    return out


def _pick(entries: list[zipfile.ZipInfo]) -> list[tuple[zipfile.ZipInfo, str]]:
    """The set's files and the names they get, the folder they may share taken off; RagchatError for
    a path that leaves the folder."""
    files = []
    for info in entries:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise RagchatError(f"the zip holds {info.filename!r}, a path outside its folder: it is refused")
        if not info.is_dir():
            files.append((info, path))
    tops = {p.parts[0] for _, p in files if len(p.parts) > 1}
    strip = 1 if len(tops) == 1 and all(len(p.parts) > 1 for _, p in files) else 0
    picked = []
    for info, path in files:
        parts = path.parts[strip:]
        name = "/".join(parts)
        if name in WANTED or (len(parts) == 2 and parts[0] == "qrels" and parts[1].endswith(".tsv")):
            picked.append((info, name))
    return picked


def corpus_ids(corpus: Path) -> list[str]:
    """The corpus' ``_id``s, in file order; RagchatError for a line that is not a BEIR document."""
    ids = []
    with open(corpus, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    ids.append(str(json.loads(line)["_id"]))
                except (ValueError, KeyError, TypeError):
                    raise RagchatError(f"corpus.jsonl line {n} is not a BEIR document (JSON with an _id)") from None
    return ids


def store_documents(catalog: Catalog, corpus: Path, user: str | None) -> list[str] | None:
    """The ids of the user's readable documents the corpus names, when it names nothing else; else None."""
    names = set(corpus_ids(corpus))
    by_name: dict[str, list[str]] = {}
    for d in visible_documents(catalog, user, catalog.documents(status="done")):
        by_name.setdefault(d.source, []).append(d.id)
    if not names or not names <= set(by_name):
        return None
    return sorted(d for n in names for d in by_name[n])
