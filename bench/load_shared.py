"""The shared mode of bench/load.py: one embedded server against one and two shared-mode servers.

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/load.py --shared ../shared/samples/seeds \\
        ../shared/data/pdfs/mineru__demo3.pdf --seconds 60

In one run, side by side, it starts the services of shared mode on free loopback ports with
tests/services.py (PostgreSQL, a Chroma server, and ``ragchat llm-server`` on a bundled model,
``--builtin-model``, SmolLM2-135M by default), then measures, one after the other:

- ``embedded``: one ``ragchat serve`` over an embedded store (Chroma, SQLite and Tantivy in one
  folder: the default single-process setup), answering through the same LLM server (provider
  ``openai``), so that the comparison is about the store;
- ``shared x1``: one ``ragchat serve`` in shared mode (the catalog in PostgreSQL, vectors on the
  Chroma server, its own BM25 cache, ingestion through the catalog's job queue);
- ``shared x2``: two of them on the same deployment, every request sent to the next server in turn.

Each setup gets a store of its own (a new database on each server) with CORPUS ingested first by
``ragchat ingest``, is warmed up (models loaded, one search and one answer per server), and is then
loaded for ``--seconds``:

- ``--users`` threads (20) call ``POST /api/v1/search`` back to back (hybrid, top_k 5), except
  ``--askers`` of them (2) which call ``POST /api/v1/ask`` (streamed; the first ``token`` event is
  the first token);
- ``--uploaders`` threads (2) each upload a text file (``POST /api/v1/documents``), poll it until it
  is done or failed, and upload the next one. The files are slices of CORPUS's text files, each with
  a line of its own so that no two are the same.

A call is an error when it raised, timed out (``--timeout``) or answered other than 200 (202 for an
upload); an answer is ``busy`` when ragchat refused it because too many questions were waiting (503
``busy``, by design). Upload throughput is the documents that reached ``done`` within the window,
per minute.

CPU: the CPU time (user + system, children included: the parsing workers, PostgreSQL's backends)
of each part's process tree over the window, as a percentage of one core; ``client`` is this
script's own load threads; ``other`` is the rest of the machine's busy time (other people's jobs
on a shared machine). ``machine`` is the whole machine's busy time as a percentage of all its cores.

Loopback only (every service and server binds 127.0.0.1) and bounded: ``--seconds`` per setup (at
most 600), at most ``MAX_CALLS`` search and ask calls per setup, ``--timeout`` per call.

Prints two tables, then one JSON line: {"mode": "shared", "builtin_model", "users", "askers",
"uploaders", "seconds", "cores", "setups": [{"setup", "servers", "corpus", "search", "ask",
"upload", "cpu", "load1", "error_kinds"}]}.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from ragchat.eval.stats import percentile

REPO = Path(__file__).resolve().parent.parent
MAX_CALLS = 20000
MAX_SECONDS = 600
SETUPS = {"embedded": 0, "shared1": 1, "shared2": 2}

QUERIES = [
    "table structure recognition",
    "How does TableFormer predict cell bounding boxes?",
    "layout detection with deep learning",
    "大语言模型发展简史",
    "三秒语音克隆",
    "开源大模型 参数 数据集",
    "What is the TEDS metric?",
    "通义千问支持中文吗",
    "PubTabNet dataset",
    "LangChain 是什么",
    "which models are open source",
    "Skywork-13B",
]
QUESTIONS = [
    "What does TableFormer predict?",
    "Skywork-13B 有多少参数？",
    "How is table structure recognition evaluated?",
    "大语言模型是什么？",
]


def _import_services():
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import services  # tests/services.py: PostgreSQL, the Chroma server and the LLM server

    return services


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and its descendants, the ones that ended included (a parent's
    children_* times hold the children it reaped)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def machine_busy() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system  # not children_*: those are the `ragchat ingest` runs before the window


def upload_texts(corpus: list[Path], size: int = 4000) -> list[str]:
    """Slices of the corpus's text files (the same in every setup): what the uploaders send."""
    files = sorted(p for c in corpus for p in ([c] if c.is_file() else c.rglob("*"))
                   if p.is_file() and p.suffix.lower() in (".txt", ".md"))
    slices = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        slices += [text[i:i + size] for i in range(0, len(text), size) if len(text[i:i + size].strip()) > 200]
    if not slices:  # no text in the corpus: plain English lines
        words = ["battery", "thermal", "cell", "module", "voltage", "capacity", "charge", "safety", "pack", "cooling"]
        slices = ["\n".join(f"Line {i}: the {words[(i + k) % 10]} of unit {i} measures {i * 7 % 1000} points."
                            for i in range(60)) for k in range(10)]
    return slices


class Setup:
    """One ragchat deployment: its store with the corpus ingested, and its servers."""

    def __init__(self, name: str, servers: int, root: Path, services, args):
        self.name, self.count, self.args = name, servers, args
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.store = self.dir / "store"
        base = {"RAGCHAT_LLM__PROVIDER": "openai", "RAGCHAT_LLM__BASE_URL": services.llm_url,
                "RAGCHAT_LLM__MODEL": args.builtin_model, "RAGCHAT_LLM__API_KEY": services.llm_key,
                "RAGCHAT_LLM__MAX_ANSWER_TOKENS": str(args.max_answer_tokens),
                "RAGCHAT_CHAT__SOURCE_TOKENS": "64"}  # excerpts, as the built-in provider sends them
        self.envs: list[dict] = []
        if servers == 0:
            self.envs = [base]
        else:
            fresh = services.fresh()
            # production values, not the tests' short ones
            fresh["shared"].update({"follow_interval_s": args.follow_interval, "job_stale_s": 30})
            self.envs = [{**base, **services.env(fresh, self.dir / f"lexical-{i}")} for i in range(max(1, servers))]
        self.servers: list = []

    def cli_env(self, env: dict) -> dict:
        full = {k: v for k, v in os.environ.items() if not k.startswith("RAGCHAT_")}
        full.update({"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **env})
        return full

    def ingest(self, corpus: list[Path]) -> None:
        env = dict(self.envs[0])
        if self.count:
            env["RAGCHAT_SHARED__LEXICAL_CACHE"] = str(self.dir / "lexical-ingest")
        done = subprocess.run([sys.executable, "-m", "ragchat.cli", "--store", str(self.store), "ingest",
                               *map(str, corpus)], cwd=self.dir, env=self.cli_env(env), capture_output=True,
                              text=True, timeout=900, check=False)
        # 1: some file failed, which a corpus may hold on purpose; but at least one must be done
        if done.returncode not in (0, 1) or not any(f" {w} " in line for line in done.stdout.splitlines() for w in ("added", "updated")):
            raise SystemExit(f"load.py: `ragchat ingest` failed for {self.name}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> None:
        from conftest import AppServer

        self.servers = [AppServer(self.store, self.dir / f"server-{i}", self.args.max_answer_tokens, env=env)
                        for i, env in enumerate(self.envs)]
        threads = [threading.Thread(target=s.start, kwargs={"timeout": 300}) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in self.servers:
            if s.proc is None or s.proc.poll() is not None or not s.port:
                raise SystemExit(f"load.py: a server of {self.name} did not start:\n{s.log_tail()}")

    @property
    def urls(self) -> list[str]:
        return [s.url.rstrip("/") for s in self.servers]

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers]

    def warm_up(self) -> dict:
        """Models loaded, every server finds the corpus (lexically too: the BM25 cache has followed
        the catalog), one answer per server. Returns the corpus as the first server lists it."""
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=120) as c:
            for url in self.urls:
                while c.get(url + "/ragchat/status").json().get("models") == "loading":
                    if time.monotonic() > deadline:
                        raise SystemExit(f"load.py: {url} did not load its models in 300 s")
                    time.sleep(0.5)
                found = time.monotonic() + 120
                for mode in ("lexical", "dense", "hybrid"):
                    while True:  # some query of QUERIES finds something in the corpus
                        rs = [c.post(url + "/api/v1/search", json={"query": q, "top_k": 5, "mode": mode}) for q in QUERIES]
                        if any(r.status_code == 200 and r.json()["results"] for r in rs):
                            break
                        if time.monotonic() > found:
                            raise SystemExit(f"load.py: {url} finds nothing in {mode} mode for any query: "
                                             f"{rs[0].status_code} {rs[0].text[:300]}")
                        time.sleep(0.5)
                r = c.post(url + "/api/v1/ask", json={"question": QUESTIONS[0], "stream": False})
                if r.status_code != 200:
                    raise SystemExit(f"load.py: the warm-up question to {url} failed: {r.status_code} {r.text[:300]}")
            docs = c.get(self.urls[0] + "/api/v1/documents").json()["documents"]
        return {"documents": sum(d.get("status") == "done" for d in docs),
                "chunks": sum(int(d.get("chunks") or 0) for d in docs)}

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


class Load:
    """The load on one setup: searchers, askers and uploaders, until the deadline."""

    def __init__(self, urls: list[str], args, texts: list[str]):
        self.urls, self.args, self.texts = urls, args, texts
        self.lock = threading.Lock()
        self.calls = 0
        self.rr = 0
        self.search_ms: list[float] = []
        self.ask_first_ms: list[float] = []
        self.ask_total_ms: list[float] = []
        self.outcomes: Counter = Counter()
        self.error_kinds: Counter = Counter()
        self.uploads: list[float] = []  # seconds from upload to done, for the ones done within the window
        self.upload_index = 0
        self.deadline = 0.0

    def _next_url(self) -> str:
        with self.lock:
            self.rr += 1
            return self.urls[self.rr % len(self.urls)]

    def _take(self) -> int | None:
        with self.lock:
            if self.calls >= MAX_CALLS or time.monotonic() >= self.deadline:
                return None
            self.calls += 1
            return self.calls

    def _error(self, what: str, kind: str) -> None:
        with self.lock:
            self.outcomes[f"{what}_error"] += 1
            self.error_kinds[f"{what}: {kind[:160]}"] += 1

    def searcher(self, clients: dict) -> None:
        while (i := self._take()) is not None:
            url = self._next_url()
            started = time.monotonic()
            try:
                r = clients[url].post(url + "/api/v1/search", json={"query": QUERIES[i % len(QUERIES)], "top_k": 5})
                elapsed = (time.monotonic() - started) * 1000
                if r.status_code != 200:
                    self._error("search", f"HTTP {r.status_code}: {r.text[:100]}")
                    continue
                with self.lock:
                    self.outcomes["search_ok"] += 1
                    self.search_ms.append(elapsed)
            except Exception as exc:
                self._error("search", f"{type(exc).__name__}: {exc}")

    def asker(self, clients: dict) -> None:
        while (i := self._take()) is not None:
            url = self._next_url()
            started = time.monotonic()
            first = None
            try:
                with clients[url].stream("POST", url + "/api/v1/ask",
                                         json={"question": QUESTIONS[i % len(QUESTIONS)]}) as r:
                    if r.status_code == 503 and "busy" in r.read().decode(errors="replace"):
                        with self.lock:
                            self.outcomes["ask_busy"] += 1
                        time.sleep(1.0)  # as a person would, before asking again
                        continue
                    if r.status_code != 200:
                        self._error("ask", f"HTTP {r.status_code}: {r.read()[:100]!r}")
                        continue
                    done = None
                    for line in r.iter_lines():
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "token" and first is None:
                            first = (time.monotonic() - started) * 1000
                        elif event.get("type") == "done":
                            done = event
                total = (time.monotonic() - started) * 1000
                if done is None or done.get("error"):
                    self._error("ask", f"answer: {None if done is None else done.get('error')}")
                    continue
                with self.lock:
                    self.outcomes["ask_ok"] += 1
                    self.ask_total_ms.append(total)
                    if first is not None:
                        self.ask_first_ms.append(first)
            except Exception as exc:
                self._error("ask", f"{type(exc).__name__}: {exc}")

    def uploader(self, clients: dict, tag: str) -> None:
        while time.monotonic() < self.deadline:
            with self.lock:
                i = self.upload_index
                self.upload_index += 1
            url = self._next_url()
            body = f"Load test upload {tag}-{i}.\n\n{self.texts[i % len(self.texts)]}".encode()
            started = time.monotonic()
            try:
                r = clients[url].post(url + "/api/v1/documents", files={"file": (f"upload-{i:04d}.txt", body, "text/plain")})
                if r.status_code != 202:
                    self._error("upload", f"HTTP {r.status_code}: {r.text[:100]}")
                    time.sleep(1.0)
                    continue
                (doc,) = r.json()["documents"]
                with self.lock:
                    self.outcomes["upload_started"] += 1
                status = None
                while time.monotonic() < self.deadline:
                    time.sleep(0.25)
                    g = clients[url].get(f"{url}/api/v1/documents/{doc['id']}")
                    if g.status_code == 200:
                        status = g.json()
                        if status["status"] in ("done", "failed"):
                            break
                if status is None or status["status"] not in ("done", "failed"):
                    return  # still ingesting at the end of the window: not counted
                if status["status"] == "failed":
                    self._error("upload", f"failed: {status.get('error')}")
                    continue
                with self.lock:
                    self.outcomes["upload_done"] += 1
                    self.uploads.append(time.monotonic() - started)
            except Exception as exc:
                self._error("upload", f"{type(exc).__name__}: {exc}")
                time.sleep(1.0)

    def _thread(self, target, *extra):
        def run():
            clients = {u: httpx.Client(timeout=httpx.Timeout(self.args.timeout, connect=10)) for u in self.urls}
            try:
                target(clients, *extra)
            finally:
                for c in clients.values():
                    c.close()
        return threading.Thread(target=run, daemon=True)

    def run(self, parts: dict[str, list[int]], tag: str) -> dict:
        threads = [self._thread(self.asker) for _ in range(self.args.askers)]
        threads += [self._thread(self.searcher) for _ in range(self.args.users - self.args.askers)]
        threads += [self._thread(self.uploader, tag) for _ in range(self.args.uploaders)]
        cpu0 = {name: sum(tree_cpu(p) for p in pids) for name, pids in parts.items()}
        own0, busy0 = own_cpu(), machine_busy()
        began = time.monotonic()
        self.deadline = began + self.args.seconds
        for t in threads:
            t.start()
        time.sleep(max(0.0, self.deadline - time.monotonic()))
        wall = time.monotonic() - began
        cpu1 = {name: sum(tree_cpu(p) for p in pids) for name, pids in parts.items()}
        own1, busy1 = own_cpu(), machine_busy()
        for t in threads:  # calls in flight finish (each has --timeout); none starts after the deadline
            t.join(self.args.timeout + 5)
        with self.lock:
            stuck = sum(t.is_alive() for t in threads)
            if stuck:
                self.error_kinds[f"threads still waiting after the timeout: {stuck}"] += 1

        cpu = {name: round(100 * (cpu1[name] - cpu0[name]) / wall, 1) for name in parts}
        cpu["client"] = round(100 * (own1 - own0) / wall, 1)
        busy = 100 * (busy1 - busy0) / wall
        cpu["other"] = round(max(0.0, busy - sum(cpu.values())), 1)
        cpu["machine"] = round(busy / psutil.cpu_count(), 1)  # % of all cores
        r = lambda x: None if x is None else round(x, 1)  # noqa: E731
        o = self.outcomes
        return {
            "wall_s": round(wall, 1),
            "search": {"ok": o["search_ok"], "errors": o["search_error"], "per_s": round(o["search_ok"] / wall, 2),
                       "p50_ms": r(percentile(self.search_ms, 50)), "p95_ms": r(percentile(self.search_ms, 95)),
                       "mean_ms": r(statistics.fmean(self.search_ms) if self.search_ms else None)},
            "ask": {"ok": o["ask_ok"], "busy": o["ask_busy"], "errors": o["ask_error"],
                    "first_token_p50_ms": r(percentile(self.ask_first_ms, 50)),
                    "first_token_p95_ms": r(percentile(self.ask_first_ms, 95)),
                    "total_p50_ms": r(percentile(self.ask_total_ms, 50))},
            "upload": {"started": o["upload_started"], "done": o["upload_done"], "errors": o["upload_error"],
                       "per_min": round(60 * o["upload_done"] / wall, 2),
                       "p50_s": r(percentile(self.uploads, 50))},
            "cpu": cpu,
            "error_kinds": dict(self.error_kinds),
        }


def _postmaster_pid(pg) -> int | None:
    try:
        return int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_setup(name: str, servers: int, root: Path, services, args, texts: list[str]) -> dict:
    label = "embedded" if servers == 0 else f"shared x{servers}"
    setup = Setup(name, servers, root, services, args)
    t0 = time.monotonic()
    print(f"[{label}] ingesting the corpus ...", file=sys.stderr, flush=True)
    setup.ingest(args.shared)
    try:
        print(f"[{label}] starting {max(1, servers)} server(s) ...", file=sys.stderr, flush=True)
        setup.start()
        corpus = setup.warm_up()
        print(f"[{label}] ready after {time.monotonic() - t0:.0f} s ({corpus['documents']} documents, "
              f"{corpus['chunks']} chunks); load for {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
        parts = {"ragchat": setup.pids(), "postgres": [_postmaster_pid(services.postgres)],
                 "chroma": [services.chroma.proc.pid], "llm": [services.llm.proc.pid]}
        report = Load(setup.urls, args, texts).run(parts, name)
    finally:
        setup.stop()
    return {"setup": label, "servers": max(1, servers), "corpus": corpus, **report,
            "load1": round(os.getloadavg()[0], 2)}


def print_tables(result: dict) -> None:
    f = lambda x, nd=0: "-" if x is None else f"{x:,.{nd}f}"  # noqa: E731
    print(f"\nmodel {result['builtin_model']} behind `ragchat llm-server`; {result['users']} users "
          f"({result['askers']} asking), {result['uploaders']} uploading; {result['seconds']:.0f} s per setup; "
          f"{result['cores']} cores")
    print(f"{'setup':<11} {'search ok':>9} {'err':>4} {'/s':>6} {'p50 ms':>7} {'p95 ms':>7} {'ask ok':>6} {'busy':>4} "
          f"{'err':>4} {'1st tok p50':>11} {'uploads':>7} {'err':>4} {'docs/min':>8} {'load1':>5}")
    for s in result["setups"]:
        se, a, u = s["search"], s["ask"], s["upload"]
        print(f"{s['setup']:<11} {se['ok']:>9} {se['errors']:>4} {f(se['per_s'], 1):>6} {f(se['p50_ms']):>7} "
              f"{f(se['p95_ms']):>7} {a['ok']:>6} {a['busy']:>4} {a['errors']:>4} {f(a['first_token_p50_ms']):>11} "
              f"{u['done']:>7} {u['errors']:>4} {f(u['per_min'], 1):>8} {f(s['load1'], 2):>5}")
    print("\nCPU over the window, % of one core (machine: % of all cores)")
    names = ["ragchat", "postgres", "chroma", "llm", "client", "other", "machine"]
    print(f"{'setup':<11} " + " ".join(f"{n:>8}" for n in names))
    for s in result["setups"]:
        print(f"{s['setup']:<11} " + " ".join(f"{f(s['cpu'].get(n)):>8}" for n in names))
    for s in result["setups"]:
        for kind, n in s["error_kinds"].items():
            print(f"  {s['setup']}: x{n} {kind}")


def main(args) -> int:
    args.seconds = max(5.0, min(args.seconds, MAX_SECONDS))
    args.users = max(1, min(args.users or 20, 200))
    args.askers = max(0, min(args.askers, args.users))
    args.uploaders = max(0, min(args.uploaders, 20))
    args.timeout = args.timeout if args.timeout else 60.0
    wanted = [s.strip() for s in args.setups.split(",") if s.strip()]
    if unknown := [s for s in wanted if s not in SETUPS]:
        raise SystemExit(f"load.py: unknown setup {unknown}; choose from {', '.join(SETUPS)}")
    missing = [str(p) for p in args.shared if not p.exists()]
    if missing:
        raise SystemExit(f"load.py: not found: {', '.join(missing)}")
    args.shared = [p.resolve() for p in args.shared]  # `ragchat ingest` runs in the setup's folder
    texts = upload_texts(args.shared)
    services_mod = _import_services()
    root = Path(tempfile.mkdtemp(prefix="ragchat-load-shared-"))
    services = services_mod.Services(root / "services")
    services.llm.env["RAGCHAT_LLM__BUILTIN_MODEL"] = args.builtin_model
    print(f"starting PostgreSQL, a Chroma server and the LLM server ({args.builtin_model}) under {root} ...",
          file=sys.stderr, flush=True)
    results = []
    try:
        services.start()
        for name in wanted:
            results.append(run_setup(name, SETUPS[name], root, services, args, texts))
    finally:
        services.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result = {"mode": "shared", "builtin_model": args.builtin_model, "users": args.users, "askers": args.askers,
              "uploaders": args.uploaders, "seconds": args.seconds, "cores": psutil.cpu_count(),
              "corpus": [str(p) for p in args.shared], "setups": results}
    print_tables(result)
    print(json.dumps(result, ensure_ascii=False))
    return 1 if any(s["search"]["errors"] or s["ask"]["errors"] or s["upload"]["errors"] for s in results) else 0
