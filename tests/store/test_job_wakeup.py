"""Shared mode's job queue wakes its waiters with PostgreSQL LISTEN/NOTIFY (ragchat.store.wakeup),
and listens again after the server restarts.

Real parts: a PostgreSQL server of this module's own (restarted by a test) and two catalogs on it,
as two processes would have. A wait that is not woken runs to its timeout and returns False, so
each test fails when no notification arrives, whatever the machine's speed.
"""

from __future__ import annotations

import time

import pytest
from services import Postgres

from ragchat.store.catalog import Catalog
from ragchat.store.wakeup import JobWakeup

pytestmark = [pytest.mark.slow]

NEVER = 30.0  # seconds: far longer than a notification takes, far shorter than the suite


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres().start()
    yield pg
    pg.stop()


def listening(wakeup: JobWakeup, timeout: float = NEVER) -> bool:
    deadline = time.monotonic() + timeout
    while not wakeup.listening and time.monotonic() < deadline:
        time.sleep(0.05)
    return wakeup.listening


def enqueue(catalog: Catalog, doc: str) -> str:
    return catalog.enqueue_job(kind="remove", doc_id=doc, collection="default", source=f"{doc}.txt", owner=None)


def test_a_job_queued_by_another_process_wakes_the_waiter_and_so_do_its_progress_and_end(postgres):
    url = postgres.create_database()
    waiter_side, submitter = Catalog(url, shared=True), Catalog(url, shared=True)
    wakeup = JobWakeup(waiter_side.url)
    try:
        assert listening(wakeup)
        mark = wakeup.mark()
        job = enqueue(submitter, "a")
        assert wakeup.wait(mark, NEVER), "no notification for a queued job"

        mark = wakeup.mark()
        claimed = waiter_side.claim_job("worker-1", stale_s=60)
        assert claimed is not None and claimed.id == job
        assert not wakeup.wait(mark, 1.0), "claiming alone sends nothing"
        assert waiter_side.report_job(job, "worker-1", stage="embedding", done=1, total=2)
        assert wakeup.wait(mark, NEVER), "no notification for progress"

        mark = wakeup.mark()
        waiter_side.finish_job(job, "worker-1", status="done", stage="done", message="removed")
        assert wakeup.wait(mark, NEVER), "no notification for the end of a job"
    finally:
        wakeup.close()
        waiter_side.close()
        submitter.close()


def test_the_listener_comes_back_after_postgres_restarts_and_without_notify_the_wait_times_out(postgres):
    url = postgres.create_database()
    wakeup, polling = JobWakeup(url), JobWakeup(url, listen=False)
    catalog = None
    try:
        assert listening(wakeup)
        postgres.stop(keep=True)
        postgres.restart()
        catalog = Catalog(url, shared=True)  # the submitting process
        for doc in ("b", "c"):  # the first may be woken by the reconnect itself (it looks once), the second is not
            mark, quiet = wakeup.mark(), polling.mark()
            enqueue(catalog, doc)
            assert wakeup.wait(mark, NEVER), "no wake-up after the restart"
        assert wakeup.listening
        assert not polling.listening and not polling.wait(quiet, 1.0)  # job_notify = false: polling alone
    finally:
        wakeup.close()
        polling.close()
        if catalog is not None:
            catalog.close()
