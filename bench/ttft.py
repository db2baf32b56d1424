"""Time to first token with the built-in model and 4 sources: the engine alone, and through the web app.

    .venv/bin/python bench/ttft.py                 # engine and web app, 10 questions, whole chunks vs excerpts
    .venv/bin/python bench/ttft.py --no-web --questions 20 --source-tokens auto
    .venv/bin/python bench/ttft.py --questions 5 --source-tokens auto --profile /tmp/ttft-prof   # server profiles

A temporary store gets two PDFs (the TableFormer and DPR papers) and the five Chinese newsletters,
ingested with the configured embedder. Then, side by side, question after question:

- engine: ``Engine.chat.stream(question)`` in this process; the clock runs from the call to the
  first "token" event, so it covers retrieval (query embedding, both indexes, fusion), the prompt
  and llama.cpp's prompt evaluation;
- web: the same store copied (one process per store), served by ``ragchat serve`` in a child
  process; ``PageClient`` submits to ``/ask`` over HTTP as the page's JavaScript does, and the clock
  runs to the first streamed update whose answer holds generated text (the "▍" cursor), so it adds
  Gradio's queue, the event stream and the conversation bookkeeping. Each question starts a new
  conversation (``/new_chat``, timed apart), so neither side has history in its prompt.

The LLM is forced to the built-in SmolLM2-135M (llm.provider = "llamacpp"), top_k = 4, temperature 0.
Each ``--source-tokens`` value (chat.source_tokens; default: "0", whole chunks, and "auto", excerpts)
is timed on every question, one value after the other: the engine switches the setting, and the web
side has one server per value, each over its own copy of the store. "prompt tok" is the prompt the model
reads, in its own tokens; "cached" is how many of them llama.cpp kept from the previous prompt of the
engine's process and did not read again (llama.cpp's server keeps each slot's last prompt; its /metrics count what it read). One warm-up question per server
and one for the engine are not counted (they load the models; their times are printed as "cold").
Every answer is read to its end before the next question, so nothing overlaps.
Prints a table and one JSON line per value {"source_tokens","questions","engine_p50_ms","engine_max_ms",
"web_p50_ms","web_max_ms","web_overhead_p50_ms","web_roundtrip_p50_ms","prompt_tokens_p50","prompt_tokens_max"}.
"web_roundtrip_p50_ms" times the ``/new_chat`` call before each question: a whole event through
Gradio's queue that only resets the conversation.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.request
from pathlib import Path

from common import free_port

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = [SHARED / "data" / "pdfs" / "mineru__demo3.pdf", SHARED / "data" / "pdfs" / "unstructured__multi-column.pdf",
          SHARED / "samples" / "seeds"]
QUESTIONS = [
    "What does TableFormer predict?",
    "How is table structure recognition evaluated?",
    "What is dense passage retrieval?",
    "How are passages encoded in DPR?",
    "Which datasets are used to train the retriever?",
    "What is the TEDS metric?",
    "How does DPR compare with BM25?",
    "What is the PubTabNet dataset?",
    "Qwen 是什么模型？",
    "Ollama 可以做什么？",
    "How many layers does the transformer decoder of TableFormer have?",
    "What is in-batch negative training?",
    "What is the exact match score on Natural Questions?",
    "How are cell bounding boxes predicted?",
    "LangChain 是什么？",
    "What is FAISS used for?",
    "Which object detection approach does the paper compare with?",
    "What does the passage encoder output?",
    "Llama 3 有多少参数？",
    "How is the question encoder trained?",
]


def settings_for(store: Path, backend: str | None):
    from ragchat.core.settings import load_settings

    config = ROOT / "config.toml"
    s = load_settings(config if config.exists() else None, store=store)
    s.llm.provider = "llamacpp"
    s.llm.temperature = 0.0
    s.retrieval.top_k = 4
    if backend:
        s.embedding.backend = backend
    return s


def builtin_server(engine):
    from ragchat.answer.engine import ChatOptions

    return engine.llm_for(ChatOptions()).model.server()


def prompt_tokens_read(engine) -> int:
    """Prompt tokens llama.cpp has evaluated so far (its /metrics); the ones it kept cached are not counted."""
    server = builtin_server(engine)
    text = urllib.request.urlopen(urllib.request.Request(f"{server.url}/metrics", headers=server.headers), timeout=10).read()
    return int(float(next(line.split()[-1] for line in text.decode().splitlines()
                          if line.startswith("llamacpp:prompt_tokens_total"))))


def engine_ttft(engine, question: str) -> dict:
    read_before = prompt_tokens_read(engine)
    t0 = time.perf_counter()
    out = {"question": question, "ttft_ms": None, "sources": 0, "retrieval_ms": None}
    first = None
    n = 0
    for ev in engine.chat.stream(question):
        now = time.perf_counter()
        if ev.kind == "sources":
            out["retrieval_ms"] = (now - t0) * 1000
            out["sources"] = len(ev.answer.retrieved)
        elif ev.kind == "token" and first is None:
            first = now
        elif ev.kind == "token":
            n += 1
    if first is not None:
        out["ttft_ms"] = (first - t0) * 1000
    out["tokens"] = n + (first is not None)
    out["total_ms"] = (time.perf_counter() - t0) * 1000
    out["read"] = prompt_tokens_read(engine) - read_before
    return out


def prompt_tokens(engine, question: str) -> int:
    """Tokens of the prompt the built-in model gets for this question, as its own template renders them."""
    from ragchat.answer.engine import ChatOptions
    from ragchat.answer.events import source_of as _source

    hits = [h for h in engine.retriever.search(question, k=4) if h.relevant]
    sources = [_source(i + 1, h) for i, h in enumerate(hits)]
    passages = engine.chat.passages(question, sources, engine.llm_for(ChatOptions()))
    msgs = engine.chat.prompt(question, [], sources, engine.settings.chat.system_prompt, passages)
    role = {"human": "user", "ai": "assistant", "system": "system"}
    server = builtin_server(engine)

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{server.url}{path}", json.dumps(body).encode(),
                                     {**server.headers, "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=30).read())

    prompt = post("/apply-template", {"messages": [{"role": role[m.type], "content": m.text} for m in msgs]})["prompt"]
    return len(post("/tokenize", {"content": prompt})["tokens"])


class PageClient:
    """Gradio's queue protocol over plain HTTP, as the page's own JavaScript client speaks it: POST
    ``/gradio_api/queue/join``, then read ``/gradio_api/queue/data`` as server-sent events. One
    session, like one browser tab. (``gradio_client`` was used before: on its own it takes about
    85 ms to deliver the first update of an event that yields at once, see bench/gradio_floor.py,
    against about 12 ms this way, so it measured itself more than the web app.)"""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=300)
        config = self.http.get("/config").json()
        self.prefix = config.get("api_prefix", "/gradio_api")
        self.components = {c["id"]: c for c in config["components"]}
        self.events = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
        self.session = secrets.token_hex(8)

    def stream(self, api_name: str, *values):
        """Yield each server-sent message of one event; inputs not given take their values on the page."""
        event = self.events[api_name]
        data = [values[i] if i < len(values) else self._initial(cid) for i, cid in enumerate(event["inputs"])]
        join = self.http.post(f"{self.prefix}/queue/join", json={
            "data": data, "fn_index": event["id"], "session_hash": self.session, "event_data": None, "trigger_id": None})
        join.raise_for_status()
        with self.http.stream("GET", f"{self.prefix}/queue/data", params={"session_hash": self.session}) as sse:
            for line in sse.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                yield message
                if message.get("msg") == "process_completed":
                    if not message.get("success", True):
                        raise RuntimeError(f"{api_name} failed: {message}")
                    return

    def _initial(self, cid: int):
        component = self.components[cid]
        return None if component["type"] == "state" else component.get("props", {}).get("value")


def web_ttft(page: PageClient, question: str) -> dict:
    t0 = time.perf_counter()
    for _ in page.stream("new_chat"):  # a fresh conversation: no history in the prompt, like the engine side
        pass
    roundtrip = (time.perf_counter() - t0) * 1000  # a whole event that only resets the conversation
    t0 = time.perf_counter()
    first = None
    for message in page.stream("ask", question):
        # Streamed outputs come as diffs; the first one that carries generated text holds the cursor.
        if first is None and message.get("msg") == "process_generating" and "▍" in json.dumps(message, ensure_ascii=False):
            first = time.perf_counter()
    return {"ttft_ms": (first - t0) * 1000 if first else None, "total_ms": (time.perf_counter() - t0) * 1000,
            "roundtrip_ms": roundtrip}


def start_server(store: Path, backend: str | None, source_tokens: str, profile: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`ragchat serve` over store in a child process; under pyinstrument (text report to profile) if given."""
    port = free_port()
    env = {**os.environ, "RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__TEMPERATURE": "0",
           "RAGCHAT_RETRIEVAL__TOP_K": "4", "RAGCHAT_CHAT__SOURCE_TOKENS": source_tokens}
    if backend:
        env["RAGCHAT_EMBEDDING__BACKEND"] = backend
    log = open(store.parent / f"server-{store.name}.log", "w")
    wrap = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(profile)] if profile else []
    proc = subprocess.Popen([sys.executable, *wrap, "-m", "ragchat.cli", "--store", str(store), "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 120:
        if proc.poll() is not None:
            sys.exit(f"the web app exited: see {log.name}")
        try:
            with urllib.request.urlopen(url + "/ragchat/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the web app did not answer within 120 s")


def pad(text: str, width: int) -> str:
    """text cut and padded to a width in terminal columns (a Chinese character takes two)."""
    out, used = "", 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > width - 2:
            break
        out, used = out + ch, used + w
    return out + " " * (width - used)


def p50(xs):
    return statistics.median(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=10, help=f"questions to time (at most {len(QUESTIONS) - 1})")
    ap.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], help="override embedding.backend")
    ap.add_argument("--source-tokens", action="append", metavar="N|auto",
                    help='chat.source_tokens values to compare, repeatable (default: 0 and auto)')
    ap.add_argument("--no-web", action="store_true", help="time the engine only")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the web servers under pyinstrument; their reports go to DIR/web-<value>.txt")
    args = ap.parse_args()
    values = args.source_tokens or ["0", "auto"]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from ragchat.engine import Engine
    from ragchat.ingest.pipeline import collect

    web = not args.no_web
    if web:
        if not (ROOT / "src" / "ragchat" / "ui" / "server.py").exists():
            web = False

    with tempfile.TemporaryDirectory(prefix="bench-ttft-") as tmp:
        store = Path(tmp) / "engine"
        settings = settings_for(store, args.backend)
        with Engine(settings) as eng:
            results = eng.ingestor.ingest(collect(CORPUS), settings.collection)
            print(f"ingested {sum(r.chunks for r in results)} chunks from {len(results)} files")
        if web:
            for i in range(len(values)):
                shutil.copytree(store, Path(tmp) / f"web{i}", ignore=shutil.ignore_patterns(".lock"))

        questions = QUESTIONS[: args.questions + 1]
        eng = Engine(settings)
        servers, clients = [], []
        try:
            t = time.perf_counter()
            cold = engine_ttft(eng, questions[0])
            print(f"engine cold (loads the LLM and embedder): first token {cold['ttft_ms']:.0f} ms, "
                  f"whole call {(time.perf_counter() - t) * 1000:.0f} ms")
            if web:
                for i, value in enumerate(values):
                    profile = args.profile / f"web-{value}.txt" if args.profile else None
                    server, url = start_server(Path(tmp) / f"web{i}", args.backend, value, profile)
                    servers.append(server)
                    clients.append(PageClient(url))
                    cold_w = web_ttft(clients[i], questions[0])
                    print(f"web cold (source_tokens={value}): first token {cold_w['ttft_ms'] or float('nan'):.0f} ms")
            rows = [{"question": q, "runs": []} for q in questions[1:]]
            # One value after the other, so that the engine's llama.cpp cache holds the previous question's
            # prompt with the same setting, as the web server's does.
            for i, value in enumerate(values):
                eng.settings.chat.source_tokens = value
                for row in rows:
                    e = engine_ttft(eng, row["question"])
                    e["prompt_tokens"] = prompt_tokens(eng, row["question"])
                    e["cached_tokens"] = max(0, e["prompt_tokens"] - e.pop("read"))
                    w = web_ttft(clients[i], row["question"]) if web else {}
                    e["web_ttft_ms"], e["roundtrip_ms"] = w.get("ttft_ms"), w.get("roundtrip_ms")
                    row["runs"].append(e)
        finally:
            eng.close()
            for server in servers:
                server.send_signal(signal.SIGINT)  # a clean stop, so that pyinstrument writes its report
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(10)

    fmt = lambda v: f"{v:,.0f}" if v is not None else "-"
    print(f"\nload average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"{'':<48}{'':>4}{'':>9}" + "".join(f"{'source_tokens = ' + v:>36}" for v in values))
    print(f"{'question':<48}{'src':>4}{'retr ms':>9}" + f"{'prompt tok':>11}{'cached':>7}{'engine ms':>10}{'web ms':>8}" * len(values))
    for row in rows:
        first = row["runs"][0]
        line = f"{pad(row['question'], 48)}{first['sources']:>4}{fmt(first['retrieval_ms']):>9}"
        for r in row["runs"]:
            line += f"{r['prompt_tokens']:>11}{r['cached_tokens']:>7}{fmt(r['ttft_ms']):>10}{fmt(r['web_ttft_ms']):>8}"
        print(line)
    for i, value in enumerate(values):
        runs = [row["runs"][i] for row in rows]
        eng_t = [r["ttft_ms"] for r in runs if r["ttft_ms"] is not None]
        web_t = [r["web_ttft_ms"] for r in runs if r["web_ttft_ms"] is not None]
        both = [r["web_ttft_ms"] - r["ttft_ms"] for r in runs if r["ttft_ms"] is not None and r["web_ttft_ms"] is not None]
        counted = [r["prompt_tokens"] for r in runs if r["ttft_ms"] is not None]
        trips = [r["roundtrip_ms"] for r in runs if r.get("roundtrip_ms") is not None]
        summary = {
            "source_tokens": value,
            "questions": len(eng_t),
            "engine_p50_ms": round(p50(eng_t), 1) if eng_t else None,
            "engine_max_ms": round(max(eng_t), 1) if eng_t else None,
            "web_p50_ms": round(p50(web_t), 1) if web_t else None,
            "web_max_ms": round(max(web_t), 1) if web_t else None,
            "web_overhead_p50_ms": round(p50(both), 1) if both else None,
            "web_roundtrip_p50_ms": round(p50(trips), 1) if trips else None,
            "prompt_tokens_p50": p50(counted),
            "prompt_tokens_max": max(counted) if counted else None,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
