"""What Gradio itself costs the web app's answer path, apart from ragchat: two figures, one run.

    .venv/bin/python bench/gradio_floor.py
    .venv/bin/python bench/gradio_floor.py --events 50 --updates 500

1. **Round trip of a trivial streaming event.** A minimal Blocks app (a textbox and a chatbot in,
   the chatbot and a state out, queue on, as ragchat's ``/ask`` is wired) runs in a child process.
   ``--events`` questions go to it in turn, each twice: through ``gradio_client``, and through
   ``PageClient`` (bench/ttft.py: Gradio's queue protocol over plain HTTP, as the page's JavaScript
   speaks it). The clock runs from the submission to the first streamed update. The app's generator
   yields at once, so this is the floor under any web overhead on the first token, per client.
2. **Cost of one streamed update.** ``Blocks.postprocess_data`` on the same prediction ragchat's
   answer event sends while tokens stream (the chatbot and the state, plus ``gr.skip()`` for the
   textbox, sources panel, conversation list, badge and notice), against the same update from an
   event whose only outputs are the chatbot and the state. Gradio treats ``gr.skip()`` as a property
   update and builds that component again, which is what the difference measures. A third case is
   the update as ragchat's answer event sends it now (``_Frame``: outputs it already set are sent
   again as plain values, only the textbox is skipped).

Prints both, then one JSON line:
{"http_roundtrip_p50_ms", "http_roundtrip_p95_ms", "client_roundtrip_p50_ms", "client_roundtrip_p95_ms",
 "update_7_outputs_ms", "update_as_sent_ms", "update_2_outputs_ms"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from common import free_port

from ragchat.eval.stats import percentile

SERVER = r"""
import sys, gradio as gr
def ask(question, history):
    yield history + [{"role": "user", "content": question}, {"role": "assistant", "content": "first ▍"}], {}
with gr.Blocks() as demo:
    state = gr.State({})
    box = gr.Textbox()
    chatbot = gr.Chatbot()
    button = gr.Button()
    button.click(ask, [box, chatbot], [chatbot, state], api_name="ask")
demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""


def roundtrips(events: int) -> tuple[list[float], list[float]]:
    """(ms to the first update through gradio_client, ms through PageClient), alternating."""
    from gradio_client import Client
    from ttft import PageClient  # bench/ttft.py: the page's protocol over plain HTTP

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("the minimal Gradio app did not start")
                time.sleep(0.2)
        client, page = Client(url, verbose=False), PageClient(url)
        library, http = [], []
        for i in range(events + 1):  # the first round warms up both clients and the server
            t0 = time.perf_counter()
            job = client.submit(f"question {i}", [], api_name="/ask")
            first = None
            for _ in job:
                first = first or time.perf_counter()
            job.result()
            t1 = time.perf_counter()
            second = None
            for message in page.stream("ask", f"question {i}", []):
                if message.get("msg") == "process_generating":
                    second = second or time.perf_counter()
            if i and first and second:
                library.append((first - t0) * 1000)
                http.append((second - t1) * 1000)
        return library, http
    finally:
        proc.terminate()
        proc.wait(30)


def update_cost(updates: int) -> tuple[float, float, float]:
    import gradio as gr
    from gradio.state_holder import SessionState

    with gr.Blocks() as demo:  # the answer event's outputs, as ui/layout.py builds them
        state = gr.State({})
        message = gr.Textbox(lines=2, placeholder="Ask a question about your documents")
        chatbot = gr.Chatbot()
        sources = gr.HTML("<div class='rc-sources'></div>" * 20, js_on_load="element.dataset.ready = 1")
        conversations = gr.Radio(choices=[(f"Conversation {i}", str(i)) for i in range(30)], container=False)
        badge = gr.HTML("<div class='rc-badge'>Answering with a model</div>")
        notice = gr.Markdown(visible=False)
        seven, two = gr.Button(), gr.Button()
        seven.click(lambda: None, None, [message, chatbot, state, sources, conversations, badge, notice])
        two.click(lambda: None, None, [chatbot, state])
    from ragchat.ui.chat import _Frame

    shown = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "An answer that streams ▍"}]
    skip = gr.skip()
    frame = _Frame({"cid": "1"})  # as the answer event builds its updates, once every output was set
    frame(shown, message="", sources="<div class='rc-sources'></div>", conversations=gr.update(value="1"),
          badge="<div class='rc-badge'>Answering with a model</div>", notice=gr.update(value="", visible=False))
    cases = [(demo.fns[0], (skip, shown, {"cid": "1"}, skip, skip, skip, skip)), (demo.fns[0], frame(shown)),
             (demo.fns[1], (shown, {"cid": "1"}))]
    session = SessionState(demo)

    async def per_update(fn, prediction) -> float:
        await demo.postprocess_data(fn, prediction, session)
        t0 = time.perf_counter()
        for _ in range(updates):
            await demo.postprocess_data(fn, prediction, session)
        return (time.perf_counter() - t0) / updates * 1000

    return tuple(asyncio.run(per_update(fn, prediction)) for fn, prediction in cases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=30, help="trivial events to time through gradio_client")
    ap.add_argument("--updates", type=int, default=300, help="streamed updates to time per case")
    args = ap.parse_args()
    library, http = roundtrips(args.events)
    seven, sent, two = update_cost(args.updates)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"trivial streaming event, submit to first update, {len(http)} events each:")
    print(f"  gradio_client          p50 {statistics.median(library):6.1f} ms  p95 {percentile(library, 95):6.1f} ms")
    print(f"  HTTP, as the page does p50 {statistics.median(http):6.1f} ms  p95 {percentile(http, 95):6.1f} ms")
    print(f"one streamed update: {seven:.2f} ms with 7 outputs (5 skipped), {sent:.2f} ms as ragchat sends it "
          f"(7 outputs, the textbox skipped), {two:.2f} ms with 2 outputs")
    print(json.dumps({"http_roundtrip_p50_ms": round(statistics.median(http), 1), "http_roundtrip_p95_ms": round(percentile(http, 95), 1),
                      "client_roundtrip_p50_ms": round(statistics.median(library), 1),
                      "client_roundtrip_p95_ms": round(percentile(library, 95), 1),
                      "update_7_outputs_ms": round(seven, 2), "update_as_sent_ms": round(sent, 2),
                      "update_2_outputs_ms": round(two, 2)}))


if __name__ == "__main__":
    main()
