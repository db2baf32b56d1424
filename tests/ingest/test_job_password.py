"""No password at rest: an encrypted PDF's password, given with its upload, never reaches the catalog
or a log in the clear, while the job waits in the queue, while it runs, or after it ended.

Real parts: the catalog (SQLite, whose files are read byte by byte, the write-ahead log included),
the job queue and its worker thread (ragchat.ingest.queue, as in shared mode), pypdf and the bundled
embedder.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from conftest import PDFS, make_settings
from ragchat.engine import Engine
from ragchat.ingest.pipeline import SourceFile, doc_id_for
from ragchat.ingest.queue import QueueWorker

pytestmark = [pytest.mark.slow]  # the embedder and the isolated parser

SECRET = "Kelp-otter-7731-zq"  # a password that no schema, message or log line could hold by chance


def locked_pdf(path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(PDFS / "unstructured__password.pdf", password="password").pages:
        writer.add_page(page)
    writer.encrypt(user_password=SECRET, owner_password=SECRET + "-owner", algorithm="AES-256")
    with open(path, "wb") as fh:
        writer.write(fh)


def bytes_at_rest(store) -> bytes:
    """Every file of the store (the catalog and its WAL, the staged uploads, Chroma, the BM25 index)."""
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


def test_the_password_of_an_encrypted_pdf_is_never_written_in_the_clear(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    pdf = tmp_path / "locked.pdf"
    locked_pdf(pdf)
    settings = make_settings(tmp_path / "store")
    needle = SECRET.encode()
    with Engine(settings) as eng:
        rows: list = []
        waiter = threading.Thread(target=lambda: rows.extend(
            eng.queue.run_files([SourceFile(pdf, "locked.pdf")], "default", password=SECRET)))
        waiter.start()
        doc_id = doc_id_for("default", "locked.pdf")
        deadline = time.monotonic() + 30
        while not eng.catalog.jobs_for(doc_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        (queued,) = eng.catalog.jobs_for(doc_id)
        assert queued.status == "queued" and queued.password and SECRET not in queued.password
        assert needle not in bytes_at_rest(settings.store), "the queued job's password is in the catalog"
        assert eng.catalog.job_password(queued) == SECRET  # the process that runs the job reads it

        worker = QueueWorker(eng).start()
        try:
            waiter.join(180)
        finally:
            worker.stop()
        (row,) = rows
        assert row.status == "done" and "added" in row.message, (row.status, row.message)
        assert row.password is None  # deleted when the job ended
        assert eng.retriever.search("file with password")[0].source == "locked.pdf"
    assert needle not in bytes_at_rest(settings.store)
    assert SECRET not in caplog.text
    assert "job" in caplog.text  # the worker did log the job: the check above looked at real lines
