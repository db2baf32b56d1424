"""Load on a running ragchat web app through gradio_client: latency percentiles and errors.

    .venv/bin/python bench/load.py --url http://127.0.0.1:7860/ --users 20 --requests 60
    .venv/bin/python bench/load.py --launch ../shared/samples/seeds --users 10 --requests 30
    .venv/bin/python bench/load.py --api-name /list_documents --no-question --users 20 --requests 200

Loopback only: the URL must point at 127.0.0.1, ::1 or localhost (it is a load generator, not a
tool to aim at other machines). Bounded: at most ``--requests`` calls (capped at 1000) and at most
``--max-seconds`` of wall time (capped at 1800); each call has ``--timeout``.

``--users`` threads each hold their own gradio_client.Client (their own session, like separate
browser tabs) and take calls from one shared counter. A call is:

- ``ok``: it finished and no output said "busy";
- ``busy``: it finished with ragchat's "busy" answer (the LLM queue was full: by design);
- ``error``: it raised, or did not finish within ``--timeout``.

``--launch CORPUS...`` first ingests the corpus into a temporary store with ``ragchat ingest``, then
starts ``ragchat serve`` on a free loopback port (built-in model, ``--max-answer-tokens``), runs the
load against it and stops it.

With login on, pass ``--user NAME`` and the password in RAGCHAT_PASSWORD (or ``--password``).

``--shared CORPUS...`` is another mode (bench/load_shared.py): it starts PostgreSQL, a Chroma server
and the LLM server on loopback ports and, side by side in one run, loads one embedded server, one
shared-mode server and two shared-mode servers through the REST API (20 users searching, some of
them asking, 2 uploading), and reports search p50/p95, first tokens, errors, uploads per minute and
the CPU of each part:

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/load.py --shared ../shared/samples/seeds --seconds 60

Prints a table, then one JSON line:
{"api_name", "users", "requests", "ok", "busy", "errors", "error_kinds", "wall_s", "throughput_per_s",
 "p50_s", "p95_s", "max_s", "first_update_p50_s", "first_update_p95_s"}
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from common import free_port

from ragchat.eval.stats import percentile

QUESTIONS = [
    "What is this document about?",
    "Summarise the main idea in one sentence.",
    "Which models are mentioned?",
    "通义千问支持中文吗？",
    "What does the author recommend?",
]
MAX_REQUESTS = 1000
MAX_SECONDS = 1800


def loopback_url(url: str) -> str:
    host = (urllib.parse.urlsplit(url).hostname or "").strip("[]").lower()
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"load.py: {url} is not a loopback address; this script only loads a local app")
    return url if url.endswith("/") else url + "/"


def _mentions_busy(value) -> bool:
    return "ragchat is busy" in json.dumps(value, ensure_ascii=False, default=str)


class Load:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.next = 0
        self.latencies: list[float] = []
        self.first: list[float] = []
        self.outcomes: Counter = Counter()
        self.error_kinds: Counter = Counter()
        self.deadline = time.monotonic() + args.max_seconds

    def take(self) -> int | None:
        with self.lock:
            if self.next >= self.args.requests or time.monotonic() >= self.deadline:
                return None
            self.next += 1
            return self.next - 1

    def worker(self, n: int) -> None:
        from gradio_client import Client

        auth = (self.args.user, self.args.password) if self.args.user else None
        try:
            client = Client(self.args.url, auth=auth, verbose=False)
        except Exception as exc:  # counted once per user; the others go on
            with self.lock:
                self.outcomes["error"] += 1
                self.error_kinds[f"connect: {type(exc).__name__}: {str(exc)[:120]}"] += 1
            return
        while (i := self.take()) is not None:
            args = [] if self.args.no_question else [f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})"]
            started = time.monotonic()
            first = None
            try:
                job = client.submit(*args, api_name=self.args.api_name)
                busy = False
                for update in job:
                    first = first or time.monotonic() - started
                    busy = busy or _mentions_busy(update)
                remaining = max(1.0, self.args.timeout - (time.monotonic() - started))
                result = job.result(timeout=remaining)
                busy = busy or _mentions_busy(result)
                elapsed = time.monotonic() - started
                if elapsed > self.args.timeout:
                    raise FutureTimeout(f"took {elapsed:.1f} s")
                with self.lock:
                    self.outcomes["busy" if busy else "ok"] += 1
                    self.latencies.append(elapsed)
                    self.first.append(first if first is not None else elapsed)
            except Exception as exc:
                with self.lock:
                    self.outcomes["error"] += 1
                    self.error_kinds[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
        try:
            client.close()
        except Exception:
            pass

    def error_kinds_connect(self) -> int:
        return sum(n for k, n in self.error_kinds.items() if k.startswith("connect: "))

    def run(self) -> dict:
        threads = [threading.Thread(target=self.worker, args=(n,), daemon=True) for n in range(self.args.users)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:  # workers stop taking calls at the deadline; a call in flight has --timeout
            t.join(max(0.0, self.deadline - time.monotonic()) + self.args.timeout + 5)
        wall = time.monotonic() - began
        with self.lock:
            missing = self.next - sum(self.outcomes.values()) + self.error_kinds_connect()
            if missing > 0:  # still running when the script gave up on them
                self.outcomes["error"] += missing
                self.error_kinds["no answer within the time limit"] += missing
        done = self.outcomes["ok"] + self.outcomes["busy"]
        r = lambda x: None if x is None else round(x, 3)  # noqa: E731
        return {
            "api_name": self.args.api_name, "users": self.args.users, "requests": sum(self.outcomes.values()),
            "ok": self.outcomes["ok"], "busy": self.outcomes["busy"], "errors": self.outcomes["error"],
            "error_kinds": dict(self.error_kinds), "wall_s": r(wall), "throughput_per_s": r(done / wall if wall else 0),
            "p50_s": r(percentile(self.latencies, 50)), "p95_s": r(percentile(self.latencies, 95)),
            "max_s": r(max(self.latencies) if self.latencies else None),
            "first_update_p50_s": r(percentile(self.first, 50)), "first_update_p95_s": r(percentile(self.first, 95)),
            "mean_s": r(statistics.fmean(self.latencies) if self.latencies else None),
        }


class LaunchedApp:
    """A temporary store with the corpus ingested, served by `ragchat serve` on a free loopback port."""

    def __init__(self, corpus: list[Path], max_answer_tokens: int):
        self.dir = Path(tempfile.mkdtemp(prefix="ragchat-load-"))
        self.store = self.dir / "store"
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAGCHAT_")}
        self.env.update({"RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__MAX_ANSWER_TOKENS": str(max_answer_tokens),
                         "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                         "GRADIO_TEMP_DIR": str(self.dir / "gradio")})
        self.corpus = corpus
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> "LaunchedApp":
        import httpx

        cli = [sys.executable, "-m", "ragchat.cli", "--store", str(self.store)]
        print(f"ingesting {', '.join(map(str, self.corpus))} ...", file=sys.stderr, flush=True)
        subprocess.run(cli + ["ingest", *map(str, self.corpus)], cwd=self.dir, env=self.env, check=False,
                       stdout=subprocess.DEVNULL, timeout=1800)
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(cli + ["serve", "--port", str(self.port)], cwd=self.dir, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the app exited with {self.proc.returncode}; see {self.dir / 'server.log'}")
            try:
                if httpx.get(self.url + "ragchat/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise SystemExit(f"the app did not start in 180 s; see {self.dir / 'server.log'}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/", help="the running app (loopback only)")
    p.add_argument("--launch", nargs="+", type=Path, metavar="CORPUS", help="ingest CORPUS and serve it for the run")
    p.add_argument("--api-name", default="/ask", help="endpoint to call (see src/ragchat/ui/server.py)")
    p.add_argument("--no-question", action="store_true", help="call the endpoint without arguments")
    p.add_argument("--users", type=int, default=None, help="concurrent clients (default 5; 20 with --shared)")
    p.add_argument("--requests", type=int, default=20, help=f"total calls (at most {MAX_REQUESTS})")
    p.add_argument("--timeout", type=float, default=None, help="longest wait for one call, in seconds (default 180; 60 with --shared)")
    p.add_argument("--max-seconds", type=float, default=600.0, help=f"stop starting calls after this (at most {MAX_SECONDS})")
    p.add_argument("--max-answer-tokens", type=int, default=48, help="answer length for --launch and --shared")
    p.add_argument("--user", help="login name when the app requires login")
    p.add_argument("--password", help="password (default: RAGCHAT_PASSWORD)")
    g = p.add_argument_group("shared mode (bench/load_shared.py)")
    g.add_argument("--shared", nargs="+", type=Path, metavar="CORPUS",
                   help="start the services and compare one embedded, one and two shared-mode servers, CORPUS ingested in each")
    g.add_argument("--seconds", type=float, default=60.0, help="load per setup, in seconds (at most 600)")
    g.add_argument("--askers", type=int, default=2, help="of the --users, how many ask (POST /api/v1/ask) instead of searching")
    g.add_argument("--uploaders", type=int, default=2, help="users uploading a file and waiting for it, one after the other")
    g.add_argument("--builtin-model", default="smollm2-135m", choices=["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"],
                   help="bundled model behind `ragchat llm-server`")
    g.add_argument("--setups", default="embedded,shared1,shared2", help="which setups, in order (comma-separated)")
    g.add_argument("--follow-interval", type=float, default=1.0, help="shared.follow_interval_s of the servers")
    g.add_argument("--keep", action="store_true", help="keep the temporary folder (stores, logs)")
    args = p.parse_args(argv)
    if args.shared:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import load_shared

        return load_shared.main(args)
    args.users = 5 if args.users is None else args.users
    args.timeout = 180.0 if args.timeout is None else args.timeout
    args.requests = max(1, min(args.requests, MAX_REQUESTS))
    args.users = max(1, min(args.users, args.requests, 200))
    args.max_seconds = max(1.0, min(args.max_seconds, MAX_SECONDS))
    if args.user and not args.password:
        args.password = os.environ.get("RAGCHAT_PASSWORD", "")
    if not args.api_name.startswith("/"):
        args.api_name = "/" + args.api_name

    app = LaunchedApp(args.launch, args.max_answer_tokens) if args.launch else None
    if app is not None:
        app.__enter__()
        args.url = app.url
    try:
        args.url = loopback_url(args.url)
        report = Load(args).run()
    finally:
        if app is not None:
            app.__exit__()

    print(f"{'endpoint':<16} {'users':>5} {'calls':>5} {'ok':>4} {'busy':>4} {'err':>4} {'p50 s':>7} {'p95 s':>7} "
          f"{'first p50':>9} {'calls/s':>7}")
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    print(f"{report['api_name']:<16} {report['users']:>5} {report['requests']:>5} {report['ok']:>4} {report['busy']:>4} "
          f"{report['errors']:>4} {fmt(report['p50_s']):>7} {fmt(report['p95_s']):>7} "
          f"{fmt(report['first_update_p50_s']):>9} {fmt(report['throughput_per_s']):>7}")
    for kind, n in report["error_kinds"].items():
        print(f"  error x{n}: {kind}")
    print(json.dumps(report, ensure_ascii=False))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
