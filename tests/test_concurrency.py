"""Many people at once, at the engine level, with the real parts (embedder, Chroma, BM25, llama.cpp).

20 threads ask questions while another thread ingests files: most of them retrieve only (what every
question does first), a few stream real answers from the built-in model (short ones). Each thread
keeps its own conversation in the catalog. Afterwards: no thread raised, every answer either
finished or said "busy", and every conversation holds exactly its own messages, in order.

The bounded LLM queue is checked on its own: with one slot taken and the queue full, the next
question gets a clear "busy" answer at once instead of waiting, and the queued one still gets its
answer once the slot is free.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import make_settings
from ragchat.answer.engine import ChatEngine, ChatOptions
from ragchat.engine import Engine
from ragchat.core.errors import BusyError
from ragchat.ingest.pipeline import collect
from ragchat.llm.gate import LLMGate

TOPICS = {
    "bees.txt": "Honey bees dance to tell the hive where flowers are. The waggle dance encodes direction and distance.",
    "tides.txt": "Tides rise and fall twice a day because the moon pulls on the oceans. Spring tides follow a full moon.",
    "bread.txt": "Sourdough bread rises with wild yeast and lactic bacteria. The starter is fed flour and water daily.",
    "comets.md": "Comets are balls of ice and dust. Their tails point away from the sun because of the solar wind.",
    "茶.md": "乌龙茶是半发酵茶，介于绿茶和红茶之间。铁观音是著名的乌龙茶。",
}
QUESTIONS = ["How do bees tell the hive where flowers are?", "Why do tides rise twice a day?",
             "What makes sourdough bread rise?", "Why do comet tails point away from the sun?", "铁观音是什么茶？"]
THREADS = 20
GENERATING = {0, 7, 14}  # these threads stream real answers; the others retrieve only
DEADLINE_S = 240


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency")
    docs = root / "docs"
    docs.mkdir()
    for name, text in TOPICS.items():
        (docs / name).write_text(text, encoding="utf-8")
    e = Engine(make_settings(root / "store", llm={"max_answer_tokens": 16, "max_concurrent": 1, "max_queue": 16}))
    assert all(r.outcome == "added" for r in e.ingestor.ingest(collect([docs]), "default"))
    e.root = root
    yield e
    e.close()


def test_twenty_users_while_ingesting(eng):
    more = eng.root / "more"
    more.mkdir()
    for i in range(12):
        (more / f"extra_{i:02d}.txt").write_text(
            f"Extra note {i}: lighthouse keepers log the weather, and note {i} mentions the harbour pilot.")
    errors: list[BaseException] = []
    outcomes: dict[int, list[str]] = {}
    conversations: dict[int, str] = {}
    start = threading.Barrier(THREADS + 1)

    def user(i: int) -> None:
        try:
            cid = eng.catalog.create_conversation(f"chat of user {i}", owner=f"user{i}")
            conversations[i] = cid
            start.wait(60)
            said = outcomes.setdefault(i, [])
            for turn in range(2):
                question = f"{QUESTIONS[(i + turn) % len(QUESTIONS)]} (user {i}, turn {turn})"
                eng.catalog.add_message(cid, "user", question)
                if i in GENERATING and turn == 0:
                    answer = list(eng.chat.stream(question, options=ChatOptions()))[-1].answer
                    assert answer.error is None or "busy" in answer.error, answer.error
                    said.append("busy" if answer.error else "answered")
                    text = answer.text
                else:
                    hits = eng.retriever.search(question, k=3)
                    assert hits, question
                    said.append("retrieved")
                    text = f"{len(hits)} sources, first {hits[0].source}"
                eng.catalog.add_message(cid, "assistant", f"[user {i}, turn {turn}] {text}", meta={"user": i})
        except BaseException as exc:  # reported below with the thread's number
            exc.add_note(f"in user thread {i}")
            errors.append(exc)

    def ingest() -> None:
        try:
            start.wait(60)
            results = eng.ingestor.ingest(collect([more]), "default")
            assert [r.outcome for r in results] == ["added"] * 12
        except BaseException as exc:
            exc.add_note("in the ingestion thread")
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(i,), name=f"user-{i}") for i in range(THREADS)]
    threads.append(threading.Thread(target=ingest, name="ingest"))
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, DEADLINE_S - (time.monotonic() - began)))
    assert not [t.name for t in threads if t.is_alive()], "threads still running after the deadline"
    if errors:
        raise errors[0]

    assert len(outcomes) == THREADS and all(len(v) == 2 for v in outcomes.values())
    assert sum(v.count("answered") for v in outcomes.values()) >= 1
    assert eng.gate._active == 0 and eng.gate._waiting == 0
    # every conversation holds exactly its own four messages, in order
    for i, cid in conversations.items():
        msgs = eng.catalog.messages(cid)
        assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"], i
        assert all(f"(user {i}, turn {t})" in msgs[2 * t].content for t in range(2)), i
        assert all(msgs[2 * t + 1].content.startswith(f"[user {i}, turn {t}]") for t in range(2)), i
        assert [c.id for c in eng.catalog.conversations(owner=f"user{i}")] == [cid]
    # the ingestion that ran meanwhile left consistent indexes
    assert eng.catalog.all_chunk_ids() == eng.vectors.chunk_ids() == eng.lexical.chunk_ids()
    assert len(eng.catalog.documents(status="done")) == len(TOPICS) + 12


def test_past_the_queue_limit_people_hear_busy_at_once(eng):
    gate = LLMGate(max_concurrent=1, max_queue=1)
    chat = ChatEngine(eng.settings.chat, eng.retriever, eng.llm_for, gate, eng.settings.llm.timeout_s, eng.has_documents)
    release = threading.Event()
    held = threading.Event()

    def occupy() -> None:
        with gate.slot():
            held.set()
            release.wait(60)

    holder = threading.Thread(target=occupy)
    holder.start()
    assert held.wait(10)
    queued: list = []
    waiter = threading.Thread(target=lambda: queued.append(list(chat.stream(QUESTIONS[0]))[-1].answer))
    waiter.start()
    deadline = time.monotonic() + 60
    while gate._waiting < 1:  # the queued question reached the gate (after its retrieval)
        assert time.monotonic() < deadline and waiter.is_alive()
        time.sleep(0.02)

    began = time.monotonic()
    busy = list(chat.stream(QUESTIONS[1]))[-1].answer
    assert time.monotonic() - began < 30  # retrieval only: it never waited for the slot
    assert busy.error and busy.error.startswith("ragchat is busy answering other questions")
    assert busy.text == busy.error and not busy.partial
    with pytest.raises(BusyError, match="busy"):
        with gate.slot():
            pass

    release.set()
    holder.join(10)
    waiter.join(120)
    assert queued and queued[0].error is None and queued[0].text
    assert gate._active == 0 and gate._waiting == 0
