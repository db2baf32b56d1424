"""Wake-ups for shared mode's job queue: PostgreSQL LISTEN/NOTIFY, with polling as the fallback.

The catalog sends a notification on ``CHANNEL`` in the same transaction that queues a job, puts
one back, reports progress or finishes one (``notify_jobs``); PostgreSQL delivers it at commit. In
each process a ``JobWakeup`` holds one extra connection that LISTENs and wakes every thread waiting
in ``wait``: idle workers (a new job) and servers following their uploads (progress, the end).

The wait still ends after its timeout, so a lost connection, a pooler that drops LISTEN (PgBouncer
in transaction mode) or a job that becomes claimable only by time (a dead process's, after
``shared.job_stale_s``) is still seen by polling. While the listener is down, ``listening`` is
False and callers poll at their short interval. On SQLite (one machine) the notification is
in-process only.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "ragchat_jobs"
_RECONNECT_S = 2.0


def notify_jobs(s: Session) -> None:
    """Inside the caller's transaction: tell every listener, at commit, that the job queue changed."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class JobWakeup:
    """Waits for job-queue notifications. ``mark`` before looking at the queue, then ``wait(mark, t)``:
    a notification that came in between is not missed."""

    def __init__(self, url: str, listen: bool = True):
        self._cond = threading.Condition()
        self._count = 0
        self._closed = threading.Event()
        self.listening = False
        self._thread: threading.Thread | None = None
        if listen and url.startswith("postgresql"):
            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            self._thread = threading.Thread(target=self._listen, args=(dsn,), name="ragchat-job-listen", daemon=True)
            self._thread.start()

    def mark(self) -> int:
        with self._cond:
            return self._count

    def wait(self, mark: int, timeout: float) -> bool:
        """Block until a notification newer than mark, close(), or the timeout; True when woken."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count != mark or self._closed.is_set(), timeout)

    def nudge(self) -> None:
        """Wake the waiters of this process (a local change, or a thread asked to stop)."""
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def close(self) -> None:
        self._closed.set()
        self.nudge()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self, dsn: str) -> None:
        import psycopg

        while not self._closed.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self.nudge()  # what was sent while no one listened: look once
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.nudge()
            except Exception as exc:  # the server went away: poll until it is back
                if self.listening:
                    log.warning("job notifications lost (%s); polling until the catalog is back", exc)
                self.listening = False
            self._closed.wait(_RECONNECT_S)
