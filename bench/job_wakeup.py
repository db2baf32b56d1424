"""Shared mode: how long a queued ingestion job waits before a worker starts it, polling against
LISTEN/NOTIFY, side by side in one run.

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/job_wakeup.py --jobs 40

It starts PostgreSQL and a Chroma server on loopback ports (tests/services.py), then for each
set-up (``poll``: ``shared.job_notify = false``; ``notify``: the default) a fresh deployment (a new
database on each server) and one idle ``ragchat worker`` process. It queues ``--jobs`` ingestion
jobs one at a time, as an upload does (a small text file staged in the store's ``incoming/``
folder, then a row in the catalog's job queue), at random moments 0.2-1.2 s apart, so a job
arrives at any point of the worker's polling cycle. For each job it reads the row every 2 ms
until it leaves "queued": the wait is the time from the commit of the job row to that moment,
2 ms resolution. Each job is ingested (the bundled embedder) before the next is queued, so the
worker is idle, waiting, when each one comes.

Prints a table (p50, p95, max in ms per set-up) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import services  # noqa: E402  tests/services.py: PostgreSQL and the Chroma server on loopback ports

from ragchat.eval.stats import percentile  # noqa: E402
from ragchat.store.catalog import Catalog  # noqa: E402


def start_worker(root: Path, env: dict, name: str) -> "subprocess.Popen":
    import subprocess

    log = open(root / f"worker-{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ragchat.cli", "--store", str(root / "store"), "worker"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=root)
    deadline = time.monotonic() + 300
    while "is taking jobs" not in (root / f"worker-{name}.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start: {(root / f'worker-{name}.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


def queue_job(catalog: Catalog, store: Path, n: int) -> str:
    folder = store / "incoming" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    name = f"note-{n}.txt"
    (folder / name).write_text(f"Wake-up note {n}: {uuid.uuid4().hex}. The queue should start this at once.\n")
    return catalog.enqueue_job(kind="ingest", doc_id=uuid.uuid4().hex, collection="default", source=name, owner=None,
                               path=(folder / name).relative_to(store).as_posix())


def wait_status(catalog: Catalog, job: str, leave: set[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (row,) = catalog.jobs([job])
        if row.status not in leave:
            return row.status
        time.sleep(0.002)
    raise RuntimeError(f"job {job} stayed {leave} for {timeout} s")


def measure(pg, chroma_url: str, root: Path, notify: bool, jobs: int, rng: random.Random) -> list[float]:
    root.mkdir(parents=True)
    url = pg.create_database()
    env = {"RAGCHAT_CATALOG_URL": url, "RAGCHAT_SHARED__CHROMA_URL": chroma_url,
           "RAGCHAT_SHARED__CHROMA_DATABASE": "w-" + uuid.uuid4().hex[:12],
           "RAGCHAT_SHARED__LEXICAL_CACHE": str(root / "lexical"), "RAGCHAT_SHARED__JOB_NOTIFY": str(notify).lower(),
           "HF_HUB_OFFLINE": "1"}
    worker = start_worker(root, env, "notify" if notify else "poll")
    catalog = Catalog(url, shared=True)
    waits = []
    try:
        for n in range(jobs):
            time.sleep(rng.uniform(0.2, 1.2))
            t0 = time.perf_counter()
            job = queue_job(catalog, root / "store", n)
            wait_status(catalog, job, {"queued"})
            waits.append((time.perf_counter() - t0) * 1000)
            if wait_status(catalog, job, {"queued", "running"}) != "done":
                raise RuntimeError(f"job {job} failed: {catalog.jobs([job])[0].message}")
    finally:
        catalog.close()
        worker.terminate()
        worker.wait(30)
    return waits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="ragchat-wakeup-"))
    pg = services.Postgres().start()
    chroma_port = services.free_port()
    chroma = services.chroma_server(root / "chroma", chroma_port, root / "chroma.log")
    chroma_url = f"http://127.0.0.1:{chroma_port}"
    results = {}
    try:
        chroma.start(chroma_url + "/api/v2/heartbeat")
        for name, notify in (("poll", False), ("notify", True)):
            results[name] = measure(pg, chroma_url, root / name, notify, args.jobs, rng)
    finally:
        chroma.stop()
        pg.stop()
    print(f"\nqueued job -> taken by an idle worker, {args.jobs} jobs per set-up (ms)")
    print(f"{'set-up':<8} {'p50':>8} {'p95':>8} {'max':>8}")
    summary = {}
    for name, waits in results.items():
        row = {"p50": percentile(waits, 50), "p95": percentile(waits, 95), "max": max(waits)}
        summary[name] = {k: round(v, 1) for k, v in row.items()}
        print(f"{name:<8} {row['p50']:>8.1f} {row['p95']:>8.1f} {row['max']:>8.1f}")
    print(json.dumps({"jobs": args.jobs, "seed": args.seed, "cores": os.cpu_count(), "setups": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
