"""Parse files in a child process, with a time limit and a memory limit.

A broken or hostile file (a decompression bomb, a loop in a PDF's object graph, a parser that
recurses without end) must cost at most ``ingest.parse_timeout_s`` seconds and
``ingest.parse_memory_mb`` of memory, and must never hang or kill the app. OCR is the exception
to "per file": it reports each page ("OCR page 3/8") as it starts, and each report starts the time
limit again, so every OCR'd page gets the whole ``parse_timeout_s`` (Tesseract needs seconds per
page) while a file that stops making progress is still stopped. ``IsolatedLoader`` runs
``loaders.load`` in one long-lived worker process, reused from file to file so that only the first
file pays for starting it. When the worker runs out of time it is killed; when it dies, the file is
reported and a fresh worker is started for the next one.

Files are parsed one at a time, in the order they were submitted, so memory use stays predictable.
``submit`` returns at once with a Future, so the caller can embed one file while the next is parsed.

Left out: sandboxing (the worker can read whatever the app can), CPU quotas and parallel parsing.
The memory limit uses RLIMIT_AS, which only Linux enforces well; elsewhere only the time limit holds.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from ragchat.core.settings import IngestSettings
from ragchat.core.errors import LoadError
from ragchat.ingest import loaders, rendering
from ragchat.ingest.document import LoadedDocument

log = logging.getLogger(__name__)
MB = 1024 * 1024
OnProgress = Callable[[str, int, int], None]  # (message, done, total)
START_TIMEOUT_S = 120  # spawn re-imports the app's main module; on a slow machine that takes a while


class IsolatedLoader:
    """Thread-safe front of one parsing worker. Use ``load`` or ``submit``, then ``close``."""

    def __init__(self, settings: IngestSettings):
        self._settings = settings
        # spawn, never fork: a forked copy of a parent that runs torch threads can deadlock.
        self._context = multiprocessing.get_context("spawn")
        # A single thread talks to the worker, so jobs run in order and never overlap.
        self._dispatcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragchat-parse")
        self._lock = threading.Lock()  # guards the worker handles and _closed
        self._process = None
        self._conn = None
        self._closed = False

    def load(self, path: Path, password: str | None = None, on_progress: OnProgress | None = None) -> LoadedDocument:
        """Parse one file and wait for it. Raises LoadError."""
        return self.submit(path, password, on_progress).result()

    def submit(self, path: Path, password: str | None = None, on_progress: OnProgress | None = None) -> Future[LoadedDocument]:
        """Queue one file; the Future gives the LoadedDocument or raises LoadError.

        on_progress(message, done, total) is called on the parsing thread while the file is read
        (for now only by OCR: "OCR page 3/8", 2, 8)."""
        path = Path(path)
        with self._lock:
            if self._closed:
                raise RuntimeError("this IsolatedLoader is closed")
        try:
            self.check_file(path)
        except LoadError as exc:
            failed: Future[LoadedDocument] = Future()
            failed.set_exception(exc)
            return failed
        return self._dispatcher.submit(self._parse, path, password, on_progress)

    def close(self) -> None:
        """Stop the worker. A file being parsed fails with reason "cancelled"; queued ones are dropped."""
        with self._lock:
            self._closed = True
            if self._process is not None:
                self._process.kill()  # wakes the dispatcher if it is waiting for this worker
        self._dispatcher.shutdown(wait=True, cancel_futures=True)
        self._stop_worker()

    def __enter__(self) -> IsolatedLoader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- parent side -------------------------------------------------------------------------

    def check_file(self, path: Path) -> None:
        """Refuse what must not reach the worker, from the file's metadata alone (nothing is read)."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise LoadError("file not found: it may have been moved or deleted", reason="missing") from None
        except OSError as exc:
            raise LoadError(f"cannot open the file: {exc.strerror or exc}", reason="unreadable") from None
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or a device would block the worker forever on its first read.
            raise LoadError("not a regular file (a folder, pipe or device); add the files themselves", reason="unsupported")
        limit = self._settings.max_file_mb
        if info.st_size > limit * MB:
            raise LoadError(
                f"larger than the {limit} MB limit ({info.st_size / MB:,.0f} MB); raise ingest.max_file_mb to add it",
                reason="too-large",
            )

    def render(self, path: Path, page: int, width: int, password: str | None = None) -> bytes:
        """A page of a PDF or image file as PNG bytes, `width` pixels wide, drawn in the worker with
        the same limits as parsing (see ``rendering.render_png``). Raises LoadError.

        Renders wait behind files being parsed; give page views an IsolatedLoader of their own."""
        path = Path(path)
        with self._lock:
            if self._closed:
                raise RuntimeError("this IsolatedLoader is closed")
        self.check_file(path)
        job = ("render", str(path), password, page, width)
        return self._dispatcher.submit(self._run, job, None).result()

    def page_chars(self, path: Path, page: int, password: str | None = None) -> tuple[str, list]:
        """The characters of a PDF page's text layer and their boxes, read in the worker (see
        ``rendering.page_chars``). Raises LoadError."""
        path = Path(path)
        with self._lock:
            if self._closed:
                raise RuntimeError("this IsolatedLoader is closed")
        self.check_file(path)
        return self._dispatcher.submit(self._run, ("chars", str(path), password, page), None).result()

    def _parse(self, path: Path, password: str | None, on_progress: OnProgress | None = None) -> LoadedDocument:
        job = ("load", str(path), password, self._settings.max_pages, self._settings.ocr, self._settings.parse_timeout_s,
               self._settings.pdf_tables)
        return self._run(job, on_progress)

    def _run(self, job: tuple, on_progress: OnProgress | None = None):
        """Runs on the dispatcher thread: hand one job to the worker and wait for it, with the time limit."""
        timeout = self._settings.parse_timeout_s
        conn, process = self._worker()
        try:
            conn.send(job)
        except (BrokenPipeError, OSError):  # the worker died while idle; a fresh one gets the file
            self._stop_worker()
            conn, process = self._worker()
            conn.send(job)

        deadline = time.monotonic() + timeout
        step = ""  # the last progress message, to say which page ran out of time
        while True:
            ready = wait([conn, process.sentinel], timeout=max(0.0, deadline - time.monotonic()))
            reply = None
            if conn in ready:
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    pass
            if reply is not None and reply[0] == "progress":
                _, step, done, total = reply
                deadline = time.monotonic() + timeout  # each page gets the whole limit
                if on_progress is not None:
                    try:
                        on_progress(step, done, total)
                    except Exception:  # a broken listener must not fail the file
                        log.exception("progress callback failed")
                continue
            break
        if reply is None:
            self._stop_worker()
            if self._closed:
                raise _cancelled()
            if not ready:
                what = f"{step} took" if step else "took"
                raise LoadError(
                    f"{what} longer than {timeout:g} s to parse; the file may be damaged or hostile "
                    "(if it is genuine and very large, raise ingest.parse_timeout_s)",
                    reason="timeout",
                )
            raise LoadError(
                f"the parser crashed on this file ({_describe_exit(process.exitcode)}); the file may be damaged or hostile",
                reason="crashed",
            )

        status, *payload = reply
        if status == "ok":
            return payload[0]
        if status == "memory":
            self._stop_worker()  # it exits by itself after a MemoryError; make sure
            raise LoadError(
                f"needed more than {self._settings.parse_memory_mb} MB to parse; the file may be damaged or hostile "
                "(if it is genuine, raise ingest.parse_memory_mb)",
                reason="memory",
            )
        message, reason = payload
        raise LoadError(message, reason=reason)

    def _worker(self):
        """The worker's pipe and process, starting a fresh worker when there is none."""
        with self._lock:
            if self._closed:
                raise _cancelled()
            if self._process is not None and self._process.is_alive():
                return self._conn, self._process
            self._kill_locked()
            conn, child_end = self._context.Pipe()
            process = self._context.Process(
                target=_worker_main,
                args=(child_end, self._settings.parse_memory_mb),
                name="ragchat-parser",
                daemon=True,  # never outlive the app
            )
            process.start()
            child_end.close()  # so that recv() sees EOF when the worker dies
            self._process, self._conn = process, conn
        # The worker says "ready" once its imports are done, so start-up never counts against a file.
        try:
            started = conn in wait([conn, process.sentinel], timeout=START_TIMEOUT_S) and conn.recv() == "ready"
        except (EOFError, OSError):
            started = False
        if not started:
            self._stop_worker()
            if self._closed:
                raise _cancelled()
            raise LoadError(
                f"the parsing process did not start ({_describe_exit(process.exitcode)}); see the app's log", reason="crashed"
            )
        return conn, process

    def _stop_worker(self) -> None:
        with self._lock:
            self._kill_locked()

    def _kill_locked(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None


def _cancelled() -> LoadError:
    return LoadError("parsing was cancelled because ragchat is shutting down", reason="cancelled")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", probably out of memory" if name in ("SIGKILL", "SIGABRT") else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


# --- worker side -----------------------------------------------------------------------------


def _worker_main(conn, memory_mb: int) -> None:
    """Loop of the worker process: receive ("load", path, password, max_pages, ocr, timeout_s, pdf_tables),
    ("render", path, password, page, width) or ("chars", path, password, page), send back ("progress", message, done, total) tuples
    while reading, then one reply tuple."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the app, which then stops us
    # Import the parsers first, so that the memory limit counts parsing alone.
    import bs4  # noqa: F401
    import charset_normalizer  # noqa: F401
    import PIL.Image  # noqa: F401
    import pypdf  # noqa: F401
    import pypdfium2  # noqa: F401

    _limit_memory(memory_mb)
    # pypdf logs a warning for every odd font or offset; in the app's console that is noise.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    conn.send("ready")

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the app has gone away
            return
        def progress(message: str, done: int, total: int) -> None:
            conn.send(("progress", message, done, total))

        try:
            if job[0] == "render":
                _, path, password, page, width = job
                reply = ("ok", rendering.render_png(Path(path), page, width, password))
            elif job[0] == "chars":
                _, path, password, page = job
                reply = ("ok", rendering.page_chars(Path(path), page, password))
            else:
                _, path, password, max_pages, ocr, timeout_s, pdf_tables = job
                reply = ("ok", loaders.load(Path(path), password, max_pages, ocr=ocr, ocr_timeout_s=timeout_s, progress=progress,
                                            pdf_tables=pdf_tables))
        except LoadError as exc:
            reply = ("error", str(exc), exc.reason)
        except MemoryError:
            reply = ("memory",)
        except Exception as exc:  # a bug in a parser must still end as a message, not a hang
            reply = ("error", f"could not read the file: {type(exc).__name__}: {exc}"[:300], "unreadable")
        try:
            conn.send(reply)
        except MemoryError:  # the document was too big to send back
            reply = ("memory",)
            conn.send(reply)
        if reply[0] == "memory":
            return  # the heap may be fragmented or half-built; the next file gets a fresh process


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what is mapped now plus memory_mb, so the cap is for parsing alone.

    Counting from the current size matters because the worker starts with whatever the app's main
    module imports (spawn re-imports it), which can be hundreds of MB of mapped libraries.
    """
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the time limit still applies
        return
    try:
        with open("/proc/self/statm") as fh:
            mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: RLIMIT_AS is not dependable there, so leave it
        return
    limit = mapped + memory_mb * MB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
