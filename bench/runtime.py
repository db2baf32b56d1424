"""The built-in model's runtime: xllamacpp (prebuilt wheel, the one ragchat uses) against
llama-cpp-python (compiled on install, the one it used before), on the same GGUF and prompts.

    bench/runtime.py --lcp-python /tmp/lcp/v/bin/python [--model PATH] [--rounds 3]

llama-cpp-python lives in a separate virtual environment (it compiles for ~15 minutes:
`python3.11 -m venv /tmp/lcp/v && /tmp/lcp/v/bin/pip install llama-cpp-python==0.3.36`). Each
runtime runs in a child process of its own, one after the other, round after round, so that both
see the same machine. Each prompt is a question with four ~70-word sources (about 450 tokens),
evaluated from an empty cache, answered greedily (temperature 0, seed 0, 64 tokens at most).
Prints per runtime: time to first token and generation speed (p50 over prompts and rounds), peak
memory (RSS) of the child, and whether the greedy answers are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = ("You answer questions using only the numbered sources provided. Cite every claim with the source number in "
          "square brackets, like [1]. If the sources do not contain the answer, say that you could not find it.")
QUESTIONS = ["What does TableFormer predict?", "How is the table structure evaluated?", "Which data sets are used?",
             "What is the accuracy of the model?", "Who are the authors?"]


def prompts() -> list[list[dict]]:
    words = (ROOT / "README.md").read_text(encoding="utf-8").split()
    out = []
    for i, q in enumerate(QUESTIONS):
        sources = "\n\n".join(f"[{k}] " + " ".join(words[(i * 4 + k) * 70 % (len(words) - 80):][:70]) for k in range(1, 5))
        out.append([{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"--- sources ---\n{sources}\n--- end of sources ---\n\n{q}"}])
    return out


def run_xllamacpp(model: str, threads: int) -> list[dict]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path, p.n_ctx, p.n_parallel, p.port, p.verbosity = model, 4096, 1, 0, -1
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(p)
    results = []
    for messages in prompts():
        pieces, t0, first = [], time.perf_counter(), None

        def on(chunk):
            nonlocal first
            for c in chunk.get("choices", []):
                text = c.get("delta", {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    pieces.append(text)
            return False

        server.handle_chat_completions({"messages": messages, "stream": True, "temperature": 0, "seed": 0,
                                        "max_tokens": 64, "cache_prompt": False}, on)
        results.append(_result(pieces, t0, first, time.perf_counter()))
    return results


def run_llama_cpp(model: str, threads: int) -> list[dict]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from llama_cpp import Llama

    llama = Llama(model_path=model, n_ctx=4096, n_threads=threads, seed=0, verbose=False)
    results = []
    for messages in prompts():
        llama.reset()
        pieces, t0, first = [], time.perf_counter(), None
        for part in llama.create_chat_completion(messages=messages, stream=True, temperature=0, max_tokens=64, seed=0):
            text = part["choices"][0]["delta"].get("content")
            if text:
                first = first or time.perf_counter()
                pieces.append(text)
        results.append(_result(pieces, t0, first, time.perf_counter()))
    return results


def _result(pieces, t0, first, end) -> dict:
    first = first or end
    return {"text": "".join(pieces), "ttft_s": first - t0, "pieces": len(pieces),
            "tok_s": (len(pieces) - 1) / (end - first) if len(pieces) > 1 and end > first else 0.0}


def child(runtime: str, model: str, threads: int) -> None:
    results = (run_xllamacpp if runtime == "xllamacpp" else run_llama_cpp)(model, threads)
    print(json.dumps({"results": results, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lcp-python", required=True, help="python of a venv with llama-cpp-python installed")
    ap.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--child", choices=["xllamacpp", "llama-cpp-python"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.model:
        sys.path.insert(0, str(ROOT / "src"))
        from ragchat.core.settings import user_cache_dir
        from ragchat.llm.models import model_path

        args.model = str(model_path("smollm2-135m", user_cache_dir()))
    if args.child:
        return child(args.child, args.model, args.threads)
    runs: dict[str, list[dict]] = {"xllamacpp": [], "llama-cpp-python": []}
    for _ in range(args.rounds):
        for runtime, python in (("xllamacpp", sys.executable), ("llama-cpp-python", args.lcp_python)):
            out = subprocess.run([python, __file__, "--lcp-python", args.lcp_python, "--model", args.model,
                                  "--threads", str(args.threads), "--child", runtime],
                                 capture_output=True, text=True, check=True)
            runs[runtime].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"model {Path(args.model).name}, {args.threads} threads, {len(QUESTIONS)} prompts x {args.rounds} rounds\n")
    print(f"{'runtime':<18}{'first token p50':>16}{'gen tok/s p50':>15}{'peak RSS MB':>13}")
    summary = {}
    for runtime, rounds in runs.items():
        results = [r for run in rounds for r in run["results"]]
        ttft = statistics.median(r["ttft_s"] for r in results)
        speed = statistics.median(r["tok_s"] for r in results)
        rss = max(run["peak_rss_mb"] for run in rounds)
        summary[runtime] = {"ttft_p50_s": round(ttft, 3), "tok_s_p50": round(speed, 1), "peak_rss_mb": round(rss)}
        print(f"{runtime:<18}{ttft:>15.3f}s{speed:>15.1f}{rss:>13.0f}")
    x = [r["text"] for r in runs["xllamacpp"][0]["results"]]
    lcp = [r["text"] for r in runs["llama-cpp-python"][0]["results"]]
    same = sum(a == b for a, b in zip(x, lcp))
    print(f"\nsame greedy answers: {same} of {len(x)}")
    for a, b in zip(x, lcp):
        if a != b:
            print(f"  xllamacpp:        {a[:150]!r}\n  llama-cpp-python: {b[:150]!r}")
    print(json.dumps({"same_answers": same, "prompts": len(x), **summary}))


if __name__ == "__main__":
    main()
