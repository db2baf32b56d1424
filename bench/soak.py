"""Soak run: simulated users on a real ragchat for N minutes, with faults in shared mode, then checks
that nothing was lost or left behind.

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/soak.py --minutes 30 --mode shared
    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/soak.py --minutes 10 --mode embedded

Modes, every service on loopback ports under a temporary folder (tests/services.py):

- ``embedded``: one ``ragchat serve`` on its own store (SQLite, Chroma on disk, Tantivy), answering
  with the built-in model (smollm2-135m), keeping a watched folder (``watch.folders``);
- ``shared``: PostgreSQL, a Chroma server, ``ragchat llm-server`` (smollm2-135m), two ``ragchat
  serve`` and one ``ragchat worker`` on one catalog, and one ``ragchat watch`` keeping the watched
  folder. Every ``--kill-every`` seconds a random server or the worker is killed with SIGKILL and
  started again; PostgreSQL is restarted once (at a third of the run) and the Chroma server once (at
  two thirds). Each outage is a window from the kill (or stop) until the service answers again
  (a server: its models ready); the watch process is not killed.

Load (bench/soak_users.py): ``--users`` threads upload new text and Markdown files with a token of
their own (now and then a PDF), upload changed versions under the same names, delete, and search;
one thread asks (streamed ``/api/v1/ask``); one writes, renames and deletes files in the watched
folder. Each call goes to a random server.

At the end the users stop, the queue drains and bench/soak_check.py checks the ledger through every
server and compares the chunk ids of the catalog, Chroma and every process's BM25 index.

Reports: RSS of each process a tenth into the run (after warm-up: models loaded, caches filled) and
at the end (a process started again is measured ``RSS_SETTLE_S`` after its restart, or not at all
when that is past the end), and every ``RSS_EVERY_S`` (``rss_series``, a curve: a warming cache
levels off, a leak does not); p50/p95/p99 per kind of call, errors by kind, 5xx and other failures
inside the outage windows (plus ``--grace`` seconds) and outside them, inconsistencies and lost
documents. Prints a table, then one JSON line. Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import TEST_MODEL  # noqa: E402
from services import Services  # noqa: E402
from soak_check import cache_indexes, chunk_sets, check_ledger, drain  # noqa: E402
from soak_procs import Outages, Proc, rss_mb  # noqa: E402
from soak_users import Asker, Ledger, Recorder, Renamer, User  # noqa: E402

from ragchat.eval.stats import percentile  # noqa: E402
from ragchat.store.catalog import Catalog  # noqa: E402

FOLLOW_S = 1.0  # shared.follow_interval_s of every process
STALE_S = 10  # shared.job_stale_s: a killed process's job is taken over after this
RSS_SETTLE_S = 120
RSS_EVERY_S = 60


class Run:
    """One mode's deployment, load and faults."""

    def __init__(self, mode: str, root: Path, args):
        self.mode, self.root, self.args = mode, root, args
        self.rng = random.Random(args.seed)
        self.rec, self.ledger, self.outages = Recorder(), Ledger(), Outages(args.grace)
        self.stop = threading.Event()
        self.watched = root / "watched"
        self.watched.mkdir(parents=True)
        self.store = root / "store"
        self.procs: list[Proc] = []
        self.services: Services | None = None
        self.rss: dict[str, dict] = {}
        self.rss_series: list[list] = []
        self.began = 0.0
        self.events: list[str] = []

    # ---- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        llm = {"RAGCHAT_LLM__MAX_ANSWER_TOKENS": "48", "RAGCHAT_CHAT__SOURCE_TOKENS": "64"}
        if self.mode == "embedded":
            env = {**llm, "RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL,
                   "RAGCHAT_WATCH__SETTLE_S": "1",
                   "RAGCHAT_WATCH__FOLDERS": json.dumps([{"path": str(self.watched), "collection": "watched"}])}
            self.procs = [Proc("server", ["serve", "--store", str(self.store)], env, self.root / "server")]
        else:
            self.services = Services(self.root / "services")
            self.services.start()
            fresh = self.services.fresh()
            fresh["shared"].update({"follow_interval_s": FOLLOW_S, "job_stale_s": STALE_S})
            self.catalog_url = fresh["catalog_url"]
            self.chroma = {"url": fresh["shared"]["chroma_url"], "database": fresh["shared"]["chroma_database"]}
            llm.update({"RAGCHAT_LLM__PROVIDER": "openai", "RAGCHAT_LLM__BASE_URL": self.services.llm_url,
                        "RAGCHAT_LLM__MODEL": TEST_MODEL, "RAGCHAT_LLM__API_KEY": self.services.llm_key})
            env = lambda name: {**llm, **self.services.env(fresh, self.root / name / "lexical")}  # noqa: E731
            store = ["--store", str(self.store)]
            self.procs = [Proc(f"server{i}", ["serve", *store], env(f"server{i}"), self.root / f"server{i}") for i in (0, 1)]
            self.procs.append(Proc("worker", ["worker", *store], env("worker"), self.root / "worker", "is taking jobs"))
            self.procs.append(Proc("watch", ["watch", str(self.watched), "--collection", "watched", *store],
                                   {**env("watch"), "RAGCHAT_WATCH__SETTLE_S": "1"}, self.root / "watch", "watching "))
        threads = [threading.Thread(target=p.start) for p in self.procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in self.procs:
            if p.pid is None:
                raise SystemExit(f"soak.py: {p.name} did not start:\n{p.tail()}")

    @property
    def servers(self) -> list[Proc]:
        return [p for p in self.procs if p.port]

    @property
    def catalog_sqlalchemy_url(self) -> str:
        return self.catalog_url if self.mode == "shared" else f"sqlite:///{(self.store / 'catalog.sqlite').resolve()}"

    def pids(self) -> dict[str, tuple[int | None, bool]]:
        """name -> (pid, measure the process tree): ragchat's processes, and the services in shared mode."""
        out = {p.name: (p.pid, False) for p in self.procs}
        if self.services is not None:
            try:
                pg = int((self.services.postgres.data / "postmaster.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pg = None
            out.update({"postgres (tree)": (pg, True), "chroma": (self.services.chroma.proc.pid, False),
                        "llm-server": (self.services.llm.proc.pid, False)})
        return out

    def measure_rss(self, key: str, names: list[str] | None = None) -> None:
        for name, (pid, tree) in self.pids().items():
            if names is None or name in names:
                self.rss.setdefault(name, {})[key] = rss_mb(pid, tree)

    # ---- load and faults ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Before the load: an upload, a search and an answer through each server, and a file in
        the watched folder found. (The start RSS is measured later, ``warm_s`` into the load.)"""
        ledger = Ledger()
        user = User("warmup", [s.url for s in self.servers], self.rec, ledger, self.stop, self.args.seed, pdf_share=0)
        for s in self.servers:
            user.urls = [s.url]
            user.upload_new()
            user.search("search", "battery")
            r = user.client.post(s.url + "/api/v1/ask", json={"question": "What is in my documents?", "stream": False})
            if r.status_code != 200:
                raise SystemExit(f"soak.py: the warm-up question failed: {r.status_code} {r.text[:300]}")
        watcher = Renamer("warmwatch", user.urls, self.rec, ledger, self.stop, 0, folder=self.watched)
        (self.watched / "warm-up.md").write_text("Warm-up note soakwarmup.")
        if ledger.told_done != len(self.servers) or watcher.wait_for("soakwarmup", "warm-up.md") is None:
            raise SystemExit(f"soak.py: the warm-up uploads did not finish: {dict(self.rec.errors)}")
        self.rec.calls.clear()  # the figures are the load's
        self.rec.errors.clear()

    def load(self, seconds: float) -> None:
        urls = [s.url for s in self.servers]
        seed = self.args.seed
        actors = [User(f"user{i}", urls, self.rec, self.ledger, self.stop, seed + i) for i in range(self.args.users)]
        actors.append(Asker("asker", urls, self.rec, self.ledger, self.stop, seed + 100))
        actors.append(Renamer("renamer", urls, self.rec, self.ledger, self.stop, seed + 200, folder=self.watched))
        for a in actors:
            a.start()
        began = self.began = time.monotonic()
        warm_s = max(60.0, seconds / 10)  # the start RSS: after the first tenth of the run (models loaded, caches filled)
        timer = threading.Timer(warm_s, lambda: self.measure_rss("start_mb", [n for n in self.pids() if n not in self.rss]))
        timer.daemon = True
        timer.start()
        threading.Thread(target=self.sample_rss, daemon=True).start()
        if self.mode == "shared":
            self.faults(began, seconds)
        self.stop.wait(max(0.0, began + seconds - time.monotonic()))
        self.stop.set()
        for a in actors:  # each finishes what it was waiting for (at most soak_users.WAIT_S)
            a.join(400)

    def sample_rss(self) -> None:
        """Every RSS_EVERY_S until the load stops: [seconds into the run, {name: MB}] (a curve, to
        tell a warming cache from a leak)."""
        while not self.stop.wait(RSS_EVERY_S):
            self.rss_series.append([round(time.monotonic() - self.began),
                                    {name: rss_mb(pid, tree) for name, (pid, tree) in self.pids().items()}])

    def faults(self, began: float, seconds: float) -> None:
        every = self.args.kill_every or max(30.0, seconds / 8)
        plan = [(began + t, "kill") for t in range(int(every), int(seconds - 60), int(every))]
        plan += [(began + seconds * 0.35, "postgres"), (began + seconds * 0.65, "chroma")]
        settle: dict[str, float] = {}
        for at, what in sorted(plan):
            self._wait_settle(settle, at)
            if self.stop.wait(max(0.0, at - time.monotonic())):
                return
            down = time.monotonic()
            if what == "kill":
                victim = self.rng.choice([p for p in self.procs if p.name != "watch"])
                victim.kill9()
                victim.start()
                what = f"kill -9 {victim.name}"
                settle[victim.name] = time.monotonic() + RSS_SETTLE_S
            elif what == "postgres":
                self.services.postgres.stop(keep=True)
                time.sleep(5)
                self.services.postgres.restart()
                settle["postgres (tree)"] = time.monotonic() + RSS_SETTLE_S
            else:
                self.services.chroma.stop()
                time.sleep(5)
                self.services.chroma.start(self.services.chroma_url + "/api/v2/heartbeat")
                settle["chroma"] = time.monotonic() + RSS_SETTLE_S
            up = time.monotonic()
            self.outages.add(what, down, up)
            self.events.append(f"{down - began:6.0f} s  {what}: down {up - down:.1f} s")
            print(f"[{self.mode}] {self.events[-1]}", file=sys.stderr, flush=True)
        self._wait_settle(settle, began + seconds)
        for name in settle:  # restarted too late to settle: no baseline
            self.rss[name].update({"start_mb": None, "restarted": True})

    def _wait_settle(self, settle: dict, until: float) -> None:
        """Measure the start RSS of restarted processes whose settling time passes before ``until``."""
        for name, when in sorted(settle.items(), key=lambda kv: kv[1]):
            if when <= until:
                if self.stop.wait(max(0.0, when - time.monotonic())):
                    return
                self.measure_rss("start_mb", [name])
                self.rss[name]["restarted"] = True
                del settle[name]

    # ---- end ------------------------------------------------------------------------------------

    def finish(self) -> dict:
        catalog = Catalog(self.catalog_sqlalchemy_url)
        try:
            drained = drain(catalog, FOLLOW_S)
        finally:
            catalog.close()
        self.measure_rss("end_mb")
        present, absent = self.ledger.checks()
        ledger = check_ledger([s.url for s in self.servers], present, absent)
        for p in self.procs:
            p.stop()
        if self.mode == "shared":
            lexical = {f"{p.name}/{f.parent.name}": f for p in self.procs for f in cache_indexes(self.root / p.name / "lexical")}
            stores = chunk_sets(self.catalog_url, self.chroma, lexical)
        else:
            stores = chunk_sets(self.catalog_sqlalchemy_url, {"path": self.store / "chroma"}, {"server": self.store / "lexical"})
        return {"drain_s": round(drained, 1), "ledger": ledger, "stores": stores}

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        if self.services is not None:
            self.services.stop()


def summarize(run: Run, seconds: float, checks: dict) -> dict:
    by_kind: dict[str, list[float]] = defaultdict(list)
    failures: Counter = Counter()
    outside: list[str] = []
    began = run.began
    for kind, t0, t1, outcome in run.rec.calls:
        if isinstance(outcome, int) and outcome < 400:
            by_kind[kind].append((t1 - t0) * 1000)
        elif not (isinstance(outcome, int) and outcome < 500):
            what = "5xx" if isinstance(outcome, int) else "told failed" if outcome == "failed" else "no answer"
            inside = run.outages.during(t0, t1)
            failures[f"{what} {'inside' if inside else 'outside'}"] += 1
            if not inside:
                outside.append(f"{t0 - began:.0f}-{t1 - began:.0f} s {kind}: {outcome}")
    r = lambda x: None if x is None else round(x, 1)  # noqa: E731
    latency = {k: {"n": len(v), "p50_ms": r(percentile(v, 50)), "p95_ms": r(percentile(v, 95)),
                   "p99_ms": r(percentile(v, 99))} for k, v in sorted(by_kind.items())}
    for v in run.rss.values():
        if v.get("start_mb") and v.get("end_mb"):
            v["growth_pct"] = round(100 * (v["end_mb"] - v["start_mb"]) / v["start_mb"], 1)
    led, st = checks["ledger"], checks["stores"]
    return {"mode": run.mode, "minutes": round(seconds / 60, 1), "seed": run.args.seed, "users": run.args.users,
            "calls": len(run.rec.calls), "latency": latency, "errors": dict(run.rec.errors.most_common()),
            "failures": {f"{w} {p}": failures[f"{w} {p}"] for w in ("5xx", "no answer", "told failed") for p in ("inside", "outside")},
            "failures_outside": outside[:50],
            "outages": run.events, "told_done": run.ledger.told_done, "deleted": run.ledger.deleted,
            "uncertain": len(run.ledger.uncertain), "lost": len(led["lost"]),
            "found_after_delete": len(led["found_after_delete_or_replace"]), "inconsistencies": st["inconsistencies"],
            "rss": run.rss, "rss_series": run.rss_series, "checks": checks}


def print_table(s: dict) -> None:
    print(f"\n== {s['mode']}: {s['minutes']} min, {s['users']} users + asker + renamer, {s['calls']} calls, "
          f"seed {s['seed']}")
    print(f"{'kind':<14} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for k, v in s["latency"].items():
        print(f"{k:<14} {v['n']:>6} {v['p50_ms'] or 0:>8.0f} {v['p95_ms'] or 0:>8.0f} {v['p99_ms'] or 0:>8.0f}")
    print(f"{'process':<16} {'start MB':>9} {'end MB':>9} {'growth %':>9}")
    for name, v in s["rss"].items():
        f = lambda x: "-" if x is None else f"{x:.0f}" if isinstance(x, float) and abs(x) >= 10 else f"{x}"  # noqa: E731
        print(f"{name:<16} {f(v.get('start_mb')):>9} {f(v.get('end_mb')):>9} {f(v.get('growth_pct')):>9}"
              f"{'  (restarted; measured after)' if v.get('restarted') else ''}")
    st = s["checks"]["stores"]
    print(f"told done {s['told_done']}, deleted {s['deleted']}, uncertain {s['uncertain']}; lost {s['lost']}, "
          f"found after delete/replace {s['found_after_delete']}; chunks: catalog {st['catalog_chunks']}, "
          f"chroma {st['chroma_chunks']}, bm25 " + ", ".join(f"{k} {v['chunks']}" for k, v in st["bm25"].items())
          + f"; inconsistencies {s['inconsistencies']}")
    print("failures: " + ", ".join(f"{k} {v}" for k, v in s["failures"].items()))
    for line in s["failures_outside"]:
        print("  outside an outage: " + line)
    for line in s["outages"]:
        print("  outage " + line)
    for k, n in s["errors"].items():
        print(f"  x{n} {k}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--mode", choices=["embedded", "shared", "both"], default="shared")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--kill-every", type=float, default=0, help="seconds between kills (default: an eighth of the run, at least 30)")
    ap.add_argument("--grace", type=float, default=30, help="seconds after an outage still counted in it")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    args = ap.parse_args()
    seconds = max(60.0, min(args.minutes, 240) * 60)
    results = []
    for mode in (["embedded", "shared"] if args.mode == "both" else [args.mode]):
        root = Path(tempfile.mkdtemp(prefix=f"ragchat-soak-{mode}-"))
        run = Run(mode, root, args)
        print(f"[{mode}] starting under {root} ...", file=sys.stderr, flush=True)
        try:
            run.start()
            run.warm_up()
            print(f"[{mode}] load for {seconds:.0f} s ...", file=sys.stderr, flush=True)
            run.load(seconds)
            print(f"[{mode}] draining and checking ...", file=sys.stderr, flush=True)
            summary = summarize(run, seconds, run.finish())
        finally:
            run.close()
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        print_table(summary)
        results.append(summary)
    for s in results:
        print(json.dumps(s, ensure_ascii=False, default=str))
    bad = any(s["lost"] or s["found_after_delete"] or s["inconsistencies"] or s["failures"]["5xx outside"]
              for s in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
