"""Processes opening one new PostgreSQL catalog at the same moment, as the servers, the worker and
the watch of bench/soak.py do when they start together: how many rounds had one of them fail.

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/soak_schema_race.py --rounds 10 --processes 6

Each round makes a new database on a PostgreSQL server of its own (tests/services.py) and opens
``Catalog(url)`` from ``--processes`` processes at once. Prints one line per round, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from services import Postgres  # noqa: E402


def open_catalog(url: str, out) -> None:
    from ragchat.store.catalog import Catalog

    try:
        Catalog(url).close()
        out.put("ok")
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--processes", type=int, default=6)
    args = ap.parse_args()
    pg = Postgres().start()
    failed = 0
    try:
        for n in range(args.rounds):
            url, out = pg.create_database(), mp.Queue()
            procs = [mp.Process(target=open_catalog, args=(url, out)) for _ in range(args.processes)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            errors = [e for e in (out.get() for _ in procs) if e != "ok"]
            failed += bool(errors)
            print(f"round {n}: {len(errors)} of {args.processes} failed {errors[:1]}", flush=True)
    finally:
        pg.stop()
    print(json.dumps({"rounds": args.rounds, "processes": args.processes, "rounds_with_a_failure": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
