"""Shared mode when a service is missing: one clear line at start-up, clear errors while it is away,
and recovery without a restart when it is back. Real servers (tests/services.py): the services
stopped here are private to each test, so the session's servers keep running."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import child_env, make_settings, run_cli
from ragchat.engine import Engine
from ragchat.core.errors import StoreError
from ragchat.ingest.pipeline import SourceFile, doc_id_for
from services import Postgres, chroma_server, free_port

pytestmark = [pytest.mark.slow]  # PostgreSQL, Chroma's server and a worker process

TEXT = "The lighthouse keeper logs the fog horn hours. Fog rolls in from the bay every autumn morning."


def cli(tmp_path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return run_cli("--store", str(tmp_path / "store"), *args, cwd=tmp_path, env=env, timeout=120)


def test_unreachable_services_at_start_get_one_line_naming_the_service(services, tmp_path):
    closed = free_port()
    env = services.env(services.fresh(), tmp_path / "cache")
    for command in (["serve", "--port", str(free_port())], ["worker"]):
        # the catalog's PostgreSQL server
        out = cli(tmp_path, {**env, "RAGCHAT_CATALOG_URL": f"postgresql+psycopg://ragchat@127.0.0.1:{closed}/x"}, *command)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert f"the catalog database at postgresql+psycopg://ragchat@127.0.0.1:{closed}/x is not reachable" in out.stderr
        assert "pg_ctlcluster" in out.stderr
        # the Chroma server
        out = cli(tmp_path, {**env, "RAGCHAT_SHARED__CHROMA_URL": f"http://127.0.0.1:{closed}"}, *command)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert f"the Chroma server at http://127.0.0.1:{closed} is not reachable" in out.stderr
        assert f"chroma run --path DIR --port {closed}" in out.stderr
    # a catalog on SQLite cannot be shared
    out = cli(tmp_path, {"RAGCHAT_SHARED__CHROMA_URL": services.chroma_url}, "worker")
    assert out.returncode == 2 and "set catalog_url to a PostgreSQL server" in out.stderr, out.stderr


def test_a_chroma_server_lost_while_running_gives_clear_errors_then_recovers(services, tmp_path):
    port = free_port()
    chroma = chroma_server(tmp_path / "chroma", port, tmp_path / "chroma.log")
    url = f"http://127.0.0.1:{port}"
    chroma.start(url + "/api/v2/heartbeat")
    settings = services.settings(tmp_path, shared={"chroma_url": url})
    (tmp_path / "a.txt").write_text(TEXT)
    try:
        with Engine(settings) as eng:
            (r,) = eng.ingestor.ingest([SourceFile(tmp_path / "a.txt", "a.txt")], "default")
            assert r.outcome == "added"
            assert eng.retriever.search("fog horn lighthouse")[0].source == "a.txt"

            chroma.stop()
            with pytest.raises(StoreError, match=re.escape(f"the Chroma server at {url} is not reachable")):
                eng.retriever.search("fog horn lighthouse")
            done = [e for e in eng.chat.stream("When does the fog roll in?") if e.kind == "done"][-1]
            assert f"Chroma server at {url}" in done.answer.error and not done.answer.sources
            (tmp_path / "b.txt").write_text("Tide tables list the high water of each day.")
            with pytest.raises(StoreError, match=re.escape(f"the Chroma server at {url} is not reachable")):
                eng.ingestor.ingest([SourceFile(tmp_path / "b.txt", "b.txt")], "default")
            assert eng.catalog.find("default", "a.txt").status == "done"  # nothing was lost
            assert eng.catalog.find("default", "b.txt").status == "indexing"  # never searchable half-written

            chroma.start(url + "/api/v2/heartbeat")  # back, same data: the same engine works again
            assert eng.retriever.search("fog horn lighthouse")[0].source == "a.txt"
            (r,) = eng.ingestor.ingest([SourceFile(tmp_path / "b.txt", "b.txt")], "default")
            assert r.outcome == "added" and eng.retriever.search("tide tables high water")[0].source == "b.txt"
    finally:
        chroma.stop()


def test_a_catalog_server_lost_while_running_gives_clear_errors_then_recovers(services, tmp_path):
    pg = Postgres()
    pg.start()
    try:
        fresh = services.fresh()
        settings = make_settings(tmp_path / "store", catalog_url=pg.url(),
                                 shared={**fresh["shared"], "lexical_cache": tmp_path / "cache"})
        (tmp_path / "a.txt").write_text(TEXT)
        with Engine(settings) as eng:
            (r,) = eng.ingestor.ingest([SourceFile(tmp_path / "a.txt", "a.txt")], "default")
            assert r.outcome == "added"
            pg.stop(keep=True)
            with pytest.raises(StoreError, match=re.escape(f"the catalog database at {pg.url()} is not reachable")):
                eng.catalog.documents()
            with pytest.raises(StoreError, match="catalog database"):
                eng.retriever.search("fog horn lighthouse")
            pg.restart()
            assert [d.source for d in eng.catalog.documents()] == ["a.txt"]
            assert eng.retriever.search("fog horn lighthouse")[0].source == "a.txt"
    finally:
        pg.stop()


def test_a_worker_process_takes_the_jobs_and_a_job_waits_for_a_lost_chroma(services, tmp_path):
    """`ragchat worker` (no web server) runs the jobs this process queues; with the Chroma server away
    a job goes back to the queue and is finished once the server is back."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    chroma = chroma_server(tmp_path / "chroma", port, tmp_path / "chroma.log")
    chroma.start(url + "/api/v2/heartbeat")
    settings = services.settings(tmp_path, shared={"chroma_url": url, "worker": False})
    env = {"RAGCHAT_CATALOG_URL": settings.catalog_url, "RAGCHAT_SHARED__CHROMA_URL": url,
           "RAGCHAT_SHARED__CHROMA_DATABASE": settings.shared.chroma_database,
           "RAGCHAT_SHARED__LEXICAL_CACHE": str(tmp_path / "worker-cache")}
    full = child_env(env)
    worker = subprocess.Popen([sys.executable, "-m", "ragchat.cli", "--store", str(settings.store), "worker"],
                              cwd=tmp_path, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / "b.txt").write_text("Tide tables list the high water of each day.")
    try:
        with Engine(settings) as eng:
            events = []
            (row,) = eng.queue.run_files([SourceFile(tmp_path / "a.txt", "a.txt")], "default", on_event=events.append)
            assert row.status == "done" and f":{worker.pid}:" in row.worker, (row.status, row.message, row.worker)
            assert [e.stage for e in events][-1] == "done" and "added" in events[-1].message
            assert eng.retriever.search("fog horn lighthouse")[0].source == "a.txt"

            chroma.stop()
            rows = []
            waiter = threading.Thread(target=lambda: rows.extend(
                eng.queue.run_files([SourceFile(tmp_path / "b.txt", "b.txt")], "default")))
            waiter.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                jobs = eng.catalog.jobs_for(doc_id_for("default", "b.txt"))
                if jobs and jobs[0].message.startswith("waiting: the Chroma server at"):
                    break
                time.sleep(0.3)
            else:
                raise AssertionError("the job did not wait for the Chroma server")
            assert jobs[0].status in ("queued", "running")
            chroma.start(url + "/api/v2/heartbeat")
            waiter.join(180)
            (row,) = rows
            assert row.status == "done" and row.attempts >= 2, (row.status, row.message)
            assert eng.retriever.search("tide tables high water")[0].source == "b.txt"
        worker.terminate()
        assert worker.wait(60) == 0, worker.stdout.read()
    finally:
        if worker.poll() is None:
            worker.kill()
        chroma.stop()


def test_the_cli_ingests_through_the_queue_in_shared_mode(services, tmp_path):
    settings = services.settings(tmp_path)
    env = {"RAGCHAT_CATALOG_URL": settings.catalog_url, "RAGCHAT_SHARED__CHROMA_URL": settings.shared.chroma_url,
           "RAGCHAT_SHARED__CHROMA_DATABASE": settings.shared.chroma_database,
           "RAGCHAT_SHARED__LEXICAL_CACHE": str(tmp_path / "cli-cache")}
    (tmp_path / "a.txt").write_text(TEXT)
    out = cli(tmp_path, env, "ingest", str(tmp_path / "a.txt"), str(tmp_path / "missing.txt"))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"a\.txt\s+added \d+ chunks", lines[0]), out.stdout
    assert lines[1].startswith("missing.txt") and "failed: cannot read the file" in lines[1], out.stdout
    out = cli(tmp_path, env, "ingest", str(tmp_path / "a.txt"))
    assert out.returncode == 0 and out.stdout.split() == ["a.txt", "unchanged"], out.stdout + out.stderr
    with Engine(settings) as eng:
        (job, _) = eng.catalog.jobs_for(doc_id_for("default", "a.txt"))
        assert job.status == "done" and job.password is None
        assert eng.retriever.search("fog horn lighthouse")[0].source == "a.txt"
