"""Start-up: seconds from `python app.py` to the first HTTP 200 of the page, over an existing store.

    .venv/bin/python bench/startup.py --runs 5
    .venv/bin/python bench/startup.py --runs 5 --store /tmp/ragchat-bench/startup-store --backend onnx

The store is built once with `ragchat ingest` (the five seed newsletters and two PDFs of the shared
corpus; an existing store is reused), so the app opens a catalog, a vector index and a BM25 index
that hold documents. Then, ``--runs`` times: start ``python app.py --store STORE --port P`` from the
repository (so ./config.toml applies, ``RAGCHAT_*`` variables removed except ``--backend``), poll
``GET /`` every 50 ms until it answers 200, then poll ``GET /ragchat/status`` until it reports the
models loaded (the embedder, Chroma and the BM25 index, loaded in the background after start), then
stop the app with SIGINT.

Prints one row per run (page s, models ready s, RSS of the app when ready) and one JSON line:
{"runs", "page_p50_s", "page_max_s", "ready_p50_s", "ready_max_s", "rss_mb_max"}
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from common import free_port

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PDFS = SHARED / "data" / "pdfs"
CORPUS = [SHARED / "samples" / "seeds", PDFS / "unstructured__layout-parser-paper-with-table.pdf", PDFS / "mineru__demo1.pdf"]


def _env(backend: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGCHAT_")}
    env.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"})
    if backend:
        env["RAGCHAT_EMBEDDING__BACKEND"] = backend
    return env


def build_store(store: Path, backend: str | None) -> None:
    if (store / "catalog.sqlite").exists():
        return
    paths = [str(p) for p in CORPUS if p.exists()]
    print(f"building the store {store} from {len(paths)} paths ...", flush=True)
    subprocess.run([sys.executable, "-m", "ragchat.cli", "--store", str(store), "ingest", *paths], cwd=ROOT, env=_env(backend),
                   check=True, stdout=subprocess.DEVNULL)


def one_start(store: Path, backend: str | None, timeout: float) -> dict:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--store", str(store), "--port", str(port)], cwd=ROOT,
                            env=_env(backend), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    page = ready = None
    health: dict = {}
    try:
        with httpx.Client(timeout=5) as client:
            while time.perf_counter() - t0 < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"app.py exited with {proc.returncode}:\n{proc.stderr.read()[-3000:]}")
                try:
                    if page is None:
                        if client.get(f"http://127.0.0.1:{port}/").status_code == 200:
                            page = time.perf_counter() - t0
                    else:
                        health = client.get(f"http://127.0.0.1:{port}/ragchat/status").json()
                        if health.get("models") != "loading":
                            ready = time.perf_counter() - t0
                            break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        rss = sum(p.memory_info().rss for p in [psutil.Process(proc.pid)]) / 2**20
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if page is None or ready is None:
        raise SystemExit(f"no page or no models after {timeout:g} s (page {page}, health {health})")
    return {"page_s": page, "ready_s": ready, "models": health.get("models"), "rss_mb": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--store", type=Path, default=Path("/tmp/ragchat-bench/startup-store"))
    ap.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], help="RAGCHAT_EMBEDDING__BACKEND for the app")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()

    build_store(args.store, args.backend)
    rows = []
    for i in range(args.runs):
        rows.append(one_start(args.store, args.backend, args.timeout))
        r = rows[-1]
        print(f"run {i + 1}: page {r['page_s']:.2f} s, models {r['models']} {r['ready_s']:.2f} s, RSS {r['rss_mb']:.0f} MB", flush=True)

    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print(f"{'run':>4}{'page s':>9}{'models ready s':>16}{'RSS MB':>9}")
    for i, r in enumerate(rows, 1):
        print(f"{i:>4}{r['page_s']:>9.2f}{r['ready_s']:>16.2f}{r['rss_mb']:>9.0f}")
    pages, readies = [r["page_s"] for r in rows], [r["ready_s"] for r in rows]
    print(json.dumps({"runs": len(rows), "page_p50_s": round(statistics.median(pages), 2), "page_max_s": round(max(pages), 2),
                      "ready_p50_s": round(statistics.median(readies), 2), "ready_max_s": round(max(readies), 2),
                      "rss_mb_max": round(max(r["rss_mb"] for r in rows), 1)}))


if __name__ == "__main__":
    main()
