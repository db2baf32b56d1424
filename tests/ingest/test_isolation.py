"""isolation: hostile files end within the limits with a LoadError, and the worker keeps working.

Everything here runs the real worker process on real files; the limits are small so the suite stays
fast: 5 s and 512 MB per file.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import hostile
from conftest import PDFS
from ragchat.core.settings import IngestSettings
from ragchat.core.errors import LoadError
from ragchat.ingest.isolation import IsolatedLoader
from ragchat.ingest.document import Page

pytestmark = [pytest.mark.slow]  # parser child processes killed and replaced, time limits

LIMITS = IngestSettings(parse_timeout_s=5, parse_memory_mb=512, max_file_mb=50)
MARGIN_S = 3  # killing and reporting takes a moment past the time limit


@pytest.fixture(scope="module")
def loader():
    with IsolatedLoader(LIMITS) as isolated:
        yield isolated


@pytest.fixture
def normal_pdf(tmp_path):
    path = tmp_path / "normal.pdf"
    path.write_bytes(hostile.normal("still working"))
    return path


def assert_still_works(loader, normal_pdf):
    assert loader.load(normal_pdf).pages == [Page(number=1, text="still working")]


def failure(loader, path, password=None) -> tuple[LoadError, float]:
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        loader.load(path, password)
    return info.value, time.monotonic() - start


# --- ordinary files behave as in-process -------------------------------------------------------


def test_shared_pdfs_load_through_the_worker(loader):
    doc = loader.load(PDFS / "mineru__demo3.pdf")
    assert [p.number for p in doc.pages] == list(range(1, 11))
    assert loader.load(PDFS / "unstructured__password.pdf", "password").pages[0].text == "File with password"
    assert loader.load(PDFS / "unstructured__copy-protected.pdf").kind == "pdf"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("docsgpt__corrupt.pdf", "corrupt"),
        ("unstructured__password.pdf", "encrypted"),
    ],
)
def test_loader_errors_come_back_unchanged(loader, name, reason):
    error, _ = failure(loader, PDFS / name)
    assert error.reason == reason


def test_the_ocr_setting_reaches_the_worker():
    with IsolatedLoader(IngestSettings(parse_timeout_s=5, parse_memory_mb=512, ocr="off")) as no_ocr:
        error, _ = failure(no_ocr, PDFS / "mineru__scanned.pdf")
    assert error.reason == "scanned"


def test_the_worker_is_reused(loader, normal_pdf):
    assert_still_works(loader, normal_pdf)
    pid = loader._process.pid
    loader.load(PDFS / "unstructured__simplified_chinese.pdf")
    assert_still_works(loader, normal_pdf)
    assert loader._process.pid == pid


# --- hostile files -----------------------------------------------------------------------------

HOSTILE = {
    "flate_bomb": hostile.flate_bomb,
    "circular_prev": hostile.circular_prev,
    "cyclic_pages": hostile.cyclic_pages,
    "huge_size": hostile.huge_size,
    "xmp_billion_laughs": hostile.xmp_billion_laughs,
    "deep_nesting": hostile.deep_nesting,
    "repeated_contents": hostile.repeated_contents,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_pdf_ends_in_time_and_the_worker_survives(loader, tmp_path, normal_pdf, name):
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(HOSTILE[name]())
    start = time.monotonic()
    try:
        doc = loader.load(path)
    except LoadError as error:
        assert error.reason in ("corrupt", "timeout", "memory", "scanned", "empty"), str(error)
    else:  # parsers that see through the trick may read the page's text
        assert [p.number for p in doc.pages] == [1]
    assert time.monotonic() - start < LIMITS.parse_timeout_s + MARGIN_S
    assert_still_works(loader, normal_pdf)


def test_slow_file_is_stopped_at_the_time_limit(loader, tmp_path, normal_pdf):
    path = tmp_path / "slow.pdf"
    path.write_bytes(hostile.many_text_operations())  # about 20 s of pypdf time
    error, elapsed = failure(loader, path)
    assert error.reason == "timeout"
    assert str(error).startswith("took longer than 5 s to parse")
    assert LIMITS.parse_timeout_s <= elapsed < LIMITS.parse_timeout_s + MARGIN_S
    assert_still_works(loader, normal_pdf)


def test_file_that_needs_too_much_memory_is_stopped(tmp_path, normal_pdf):
    # 40 MB of ASCII plus one emoji: Python stores every character in 4 bytes, 160 MB in all.
    path = tmp_path / "wide.txt"
    with path.open("wb") as fh:
        fh.write(b"a" * (40 * 1024 * 1024))
        fh.write("\N{GRINNING FACE}".encode())
    with IsolatedLoader(IngestSettings(parse_timeout_s=30, parse_memory_mb=128)) as small:
        error, _ = failure(small, path)
        assert error.reason == "memory"
        assert str(error).startswith("needed more than 128 MB to parse")
        assert_still_works(small, normal_pdf)


def test_crashed_worker_is_reported_and_replaced(loader, tmp_path, normal_pdf):
    path = tmp_path / "slow.pdf"
    path.write_bytes(hostile.many_text_operations())
    future = loader.submit(path)
    time.sleep(1)  # the worker is now deep inside pypdf
    os.kill(loader._process.pid, signal.SIGSEGV)
    with pytest.raises(LoadError) as info:
        future.result(timeout=LIMITS.parse_timeout_s)
    assert info.value.reason == "crashed"
    assert "SIGSEGV" in str(info.value)
    assert_still_works(loader, normal_pdf)


# --- refused before parsing --------------------------------------------------------------------


def test_huge_file_is_refused_by_size_without_reading_it(tmp_path):
    path = tmp_path / "upload.pdf"
    with path.open("wb") as fh:
        fh.truncate(1024**3)  # sparse: 1 GB long, no blocks on disk
    fresh = IsolatedLoader(IngestSettings())  # the default limit, 200 MB
    try:
        future = fresh.submit(path)
        assert future.done()  # decided in the parent from os.stat alone
        with pytest.raises(LoadError) as info:
            future.result()
        assert info.value.reason == "too-large"
        assert str(info.value).startswith("larger than the 200 MB limit (1,024 MB)")
        assert fresh._process is None  # no worker was even started
    finally:
        fresh.close()


def test_pipes_and_folders_are_refused(loader, tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)  # reading it would block forever
    for path in (fifo, tmp_path):
        error, elapsed = failure(loader, path)
        assert error.reason == "unsupported" and elapsed < 1


def test_missing_file(loader, tmp_path):
    error, _ = failure(loader, tmp_path / "gone.pdf")
    assert error.reason == "missing"


# --- prefetch, threads and shutdown ------------------------------------------------------------


def test_submit_returns_at_once_and_keeps_order(loader, tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.pdf")
        paths[-1].write_bytes(hostile.normal(f"document {i}"))
    futures = [loader.submit(path) for path in paths]
    texts = [f.result(timeout=30).pages[0].text for f in futures]
    assert texts == [f"document {i}" for i in range(5)]


def test_many_threads_share_one_loader(loader, tmp_path):
    results: dict[int, str] = {}

    def work(i: int) -> None:
        path = tmp_path / f"t{i}.pdf"
        path.write_bytes(hostile.normal(f"thread {i}"))
        results[i] = loader.load(path).pages[0].text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {i: f"thread {i}" for i in range(8)}


def test_close_cancels_the_running_parse(tmp_path):
    path = tmp_path / "slow.pdf"
    path.write_bytes(hostile.many_text_operations())
    isolated = IsolatedLoader(LIMITS)
    running = isolated.submit(path)
    queued = isolated.submit(path)
    time.sleep(1)
    start = time.monotonic()
    isolated.close()
    assert time.monotonic() - start < 2
    with pytest.raises(LoadError) as info:
        running.result(timeout=1)
    assert info.value.reason == "cancelled"
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        isolated.submit(path)
