"""Which bundled model answers within the first-token goal on this machine: prompt evaluation speed
and time to first token of each, through the built-in llama.cpp server, and the core count at which
the larger one would reach the goal (the threshold of ``models.choose_builtin``, llm.builtin_model = "auto").

    flock /tmp/ragchat-heavy.lock .venv/bin/python bench/builtin_choice.py
    .venv/bin/python bench/builtin_choice.py --models qwen2.5-0.5b qwen2.5-1.5b smollm2-135m --prompts 8 --threads 2

Each model runs in a child process of its own, one after the other, as the app runs it:
``llm.BuiltinServer`` (llama.cpp's server from xllamacpp, 4096 tokens of context, one slot) asked
over HTTP through its OpenAI-compatible ``/v1/chat/completions``, streamed, temperature 0, 16
tokens at most. The prompt is the app's usual one for the built-in model: the default system prompt
(``ChatSettings.system_prompt``) and the worked examples (chat.examples), then the app's instruction,
four numbered sources of about 55 tokens between the app's delimiter lines, and a question
(printed, counted by the model's own tokenizer). One warm-up prompt is not counted: it loads the
model and leaves the fixed part in llama.cpp's cache, as in the app, where it never changes; every
counted prompt has other sources and another question, so only that prefix is reused.

Per prompt: first token (from the request to the first streamed text), the tokens llama.cpp read
(``timings.prompt_n``: the prompt less the cached prefix), its prompt speed
(``timings.prompt_per_second``) and generation speed (``timings.predicted_per_second``).

The crossover: prompt evaluation on a CPU is compute-bound and scales about linearly with physical
cores, so a model whose first token takes t seconds on n threads takes about t * n / c on c cores;
it meets the goal (--goal-s, 1.5 s at p50) from c = ceil(n * t / goal). The first token also holds
one decoding step, which scales less well (memory bandwidth), so this errs on the optimistic side by
that step (about 1/gen tok/s, printed). Prints a table, then one JSON line per model
{"model","threads","prompts","prompt_tokens","read_tokens_p50","prompt_tok_s_p50","ttft_p50_s",
"ttft_max_s","gen_tok_s_p50","peak_rss_mb","cores_for_goal"}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "How do I choose the model that writes the answers?",
    "What happens when a file is uploaded twice?",
    "Where are the conversations kept?",
    "How is Chinese text searched?",
    "What does the built-in model need to run?",
    "How are citations checked?",
    "Which settings change retrieval?",
    "How does the app run for a team?",
    "What is measured in the benchmarks?",
]
SOURCE_WORDS = 40  # about 55 Qwen tokens of this README's English: a prompt of about 400 tokens


def messages(i: int) -> list[dict]:
    """The i-th prompt, built as ``chat.ChatEngine.prompt`` builds it for four excerpts: the system
    prompt, the worked examples (chat.examples), then the instruction, the sources and the question."""
    from ragchat.answer.prompt import user_message, worked_examples
    from ragchat.core.settings import ChatSettings

    settings = ChatSettings()
    words = (ROOT / "README.md").read_text(encoding="utf-8").split()
    step = (len(words) - SOURCE_WORDS) // (4 * len(QUESTIONS) + 4)
    blocks = "\n\n".join(f"[{k + 1}] " + " ".join(words[(i * 4 + k) * step:][:SOURCE_WORDS]) for k in range(4))
    question = QUESTIONS[i % len(QUESTIONS)]
    out = [{"role": "system", "content": settings.system_prompt}]
    if settings.examples != "off":
        for shown, shown_sources, reply in worked_examples(question, settings.examples == "with-refusal"):
            out += [{"role": "user", "content": user_message(shown, shown_sources)}, {"role": "assistant", "content": reply}]
    return out + [{"role": "user", "content": user_message(question, blocks)}]


def child(name: str, threads: int, prompts: int) -> None:
    import httpx

    from ragchat.core.settings import user_cache_dir
    from ragchat.llm.builtin import BuiltinServer
    from ragchat.llm.models import model_path

    t0 = time.perf_counter()
    server = BuiltinServer(str(model_path(name, user_cache_dir())), 4096, threads, 1)
    http = httpx.Client(base_url=server.url, headers=server.headers, timeout=300)
    load_s = time.perf_counter() - t0

    def ask(msgs: list[dict]) -> dict:
        body = {"messages": msgs, "stream": True, "temperature": 0, "seed": 0, "max_tokens": 16}
        t0, first, timings = time.perf_counter(), None, {}
        with http.stream("POST", "/v1/chat/completions", json=body) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                if first is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                    first = time.perf_counter()
                timings = chunk.get("timings") or timings  # llama.cpp's own figures, on the last chunk
        prompt = http.post("/apply-template", json={"messages": msgs}).json()["prompt"]
        return {"ttft_s": (first or time.perf_counter()) - t0, "prompt_tokens": len(http.post("/tokenize", json={"content": prompt}).json()["tokens"]),
                "read": timings.get("prompt_n"), "prompt_tok_s": timings.get("prompt_per_second"),
                "gen_tok_s": timings.get("predicted_per_second")}

    warm = ask(messages(len(QUESTIONS) - 1))  # loads the weights, caches the system prompt
    runs = [ask(messages(i)) for i in range(prompts)]
    print(json.dumps({"load_s": load_s, "warm": warm, "runs": runs,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-1.5b"])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--prompts", type=int, default=5, help=f"counted prompts per model (at most {len(QUESTIONS) - 1})")
    ap.add_argument("--goal-s", type=float, default=1.5, help="first-token goal (p50), seconds")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.prompts = min(args.prompts, len(QUESTIONS) - 1)
    if args.child:
        return child(args.child, args.threads, args.prompts)

    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    load = os.getloadavg()[0]
    results = {}
    for name in args.models:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--threads", str(args.threads),
                              "--prompts", str(args.prompts)], capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode:
            sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"{args.threads} threads, {args.prompts} prompts per model after one warm-up; load average (1 min) "
          f"{load:.2f} before, {os.getloadavg()[0]:.2f} after; goal: first token within {args.goal_s:g} s (p50)\n")
    print(f"{'model':<15}{'prompt tok':>11}{'read':>6}{'prompt tok/s':>14}{'first token':>13}{'max':>8}"
          f"{'gen tok/s':>11}{'RSS MB':>8}{'cores for goal':>16}")
    summaries = []
    for name, res in results.items():
        runs = res["runs"]
        p50 = lambda key: statistics.median(r[key] for r in runs if r[key] is not None)  # noqa: E731
        ttft = p50("ttft_s")
        summary = {
            "model": name, "threads": args.threads, "prompts": len(runs),
            "prompt_tokens": round(p50("prompt_tokens")), "read_tokens_p50": round(p50("read")),
            "prompt_tok_s_p50": round(p50("prompt_tok_s"), 1), "ttft_p50_s": round(ttft, 3),
            "ttft_max_s": round(max(r["ttft_s"] for r in runs), 3), "gen_tok_s_p50": round(p50("gen_tok_s"), 1),
            "peak_rss_mb": round(res["peak_rss_mb"]), "cores_for_goal": math.ceil(args.threads * ttft / args.goal_s),
        }
        summaries.append(summary)
        print(f"{name:<15}{summary['prompt_tokens']:>11}{summary['read_tokens_p50']:>6}{summary['prompt_tok_s_p50']:>14.1f}"
              f"{ttft:>12.2f}s{summary['ttft_max_s']:>7.2f}s{summary['gen_tok_s_p50']:>11.1f}"
              f"{summary['peak_rss_mb']:>8}{summary['cores_for_goal']:>16}")
    print(f"\ncold load + first prompt (whole prompt read): "
          + ", ".join(f"{n} {r['load_s']:.1f} s + {r['warm']['ttft_s']:.2f} s ({r['warm']['read']} tokens)" for n, r in results.items()))
    from ragchat.llm.models import AUTO_MIN_CORES

    print(f"models.choose_builtin picks qwen2.5-1.5b from {AUTO_MIN_CORES} physical cores")
    for summary in summaries:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
