"""Feedback on answers becomes a team's own test set: ratings on real answers (the bundled test
embedder and LLM), `ragchat feedback export`, then `ragchat eval DIR --answers` and `ragchat eval DIR`
on the exported folder as it is.

Alice and bob each have a private document; the export of one user's feedback holds only what that
user may read, and no one rates another user's conversation.
"""

from __future__ import annotations

import json

import pytest
from conftest import TEST_MODEL, ask_and_save, make_settings, run_cli

from ragchat.core.errors import RagchatError
from ragchat.engine import Engine
from ragchat.ingest.pipeline import SourceFile

pytestmark = [pytest.mark.slow]

ALICE = ("harbor.txt", "The Veltmar harbor was dredged in 2011 to a depth of 14 metres. Its lighthouse, the "
                       "Grey Finch, is painted white with a red lantern room.")
BOB = ("orchard.txt", "Bob's orchard grows the Ilsen pear, a late variety picked in October and stored in "
                      "cold cellars until spring.")


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback")
    store = root / "store"
    engine = Engine(make_settings(store))
    try:
        for owner, (name, text) in (("alice", ALICE), ("bob", BOB)):
            (root / name).write_text(text, encoding="utf-8")
            (done,) = engine.ingestor.ingest([SourceFile(root / name, name)], f"~{owner}/default", owner=owner)
            assert done.outcome == "added", done.error
        cid, first = ask_and_save(engine, "alice", cid=None, question="How deep was the Veltmar harbor dredged?")
        up = engine.feedback.rate_message("alice", cid, first, 1, note="right")
        cid, second = ask_and_save(engine, "alice", cid=cid, question="What colour is the Grey Finch lighthouse?")
        down = engine.feedback.rate_message("alice", cid, second, -1)
        assert engine.catalog.amend_feedback(down, "alice", note="it missed the colour",
                                             correction="It is white, with a red lantern room.")
        assert not engine.catalog.amend_feedback(down, "bob", note="bob edits", correction="")
        _, third = ask_and_save(engine, "alice", cid=cid, question="When was the harbor dredged?")
        plain_down = engine.feedback.rate_message("alice", cid, third, -1)
        with pytest.raises(RagchatError):  # bob cannot rate alice's conversation
            engine.feedback.rate_message("bob", cid, first, 1)
        with pytest.raises(RagchatError):  # only answers are rated, not questions
            engine.feedback.rate_message("alice", cid, first - 1, 1)
        bob_cid, bob_answer = ask_and_save(engine, "bob", cid=None, question="When is the Ilsen pear picked?")
        bob_up = engine.feedback.rate_message("bob", bob_cid, bob_answer, 1)
    finally:
        engine.close()
    return {"root": root, "store": store, "ids": {"up": up, "down": down, "plain_down": plain_down, "bob": bob_up}}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_export_holds_the_users_ratings_and_only_documents_they_may_read(rated):
    out = rated["root"] / "alice-set"
    done = run_cli("--store", str(rated["store"]), "feedback", "export", str(out), "--user", "alice", cwd=rated["root"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 questions (2 with a reference answer, 1 retrieval-only) over 1 documents" in done.stdout
    queries = {q["_id"]: q for q in read_jsonl(out / "queries.jsonl")}
    ids = rated["ids"]
    assert set(queries) == {ids["up"], ids["down"], ids["plain_down"]}  # not bob's
    assert queries[ids["down"]]["metadata"]["reference"] == "It is white, with a red lantern room."
    assert "reference" not in queries[ids["plain_down"]]["metadata"]
    up = queries[ids["up"]]["metadata"]["reference"]
    assert up and "[1]" not in up and ">" not in up  # the model's own words, no markers, no quoted lines
    corpus = read_jsonl(out / "corpus.jsonl")
    assert [d["_id"] for d in corpus] == ["harbor.txt"] and "Veltmar" in corpus[0]["text"]
    assert "Ilsen" not in (out / "corpus.jsonl").read_text(encoding="utf-8")
    qrels = (out / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) == 4


def test_the_exported_set_runs_through_eval_as_it_is(rated):
    out = rated["root"] / "alice-eval"
    assert run_cli("--store", str(rated["store"]), "feedback", "export", str(out), "--user", "alice",
                   cwd=rated["root"]).returncode == 0
    details = rated["root"] / "details.jsonl"
    env = {"RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL,
           "RAGCHAT_LLM__MAX_ANSWER_TOKENS": "64"}
    answers = run_cli("eval", str(out), "--answers", "--json", "--details", str(details),
                      "--store", str(rated["root"] / "eval-store"), cwd=rated["root"], env=env, timeout=900)
    assert answers.returncode == 0, answers.stdout[-2000:] + answers.stderr[-2000:]
    result = json.loads(answers.stdout.strip().splitlines()[-1])
    assert (result["questions"], result["with_reference"], result["with_qrels"]) == (2, 2, 2)
    assert {r["id"] for r in read_jsonl(details)} == {rated["ids"]["up"], rated["ids"]["down"]}
    retrieval = run_cli("eval", str(out), "--json", "--store", str(rated["root"] / "eval-store-2"),
                        cwd=rated["root"], env=env, timeout=600)
    assert retrieval.returncode == 0, retrieval.stdout[-2000:] + retrieval.stderr[-2000:]
    assert json.loads(retrieval.stdout.strip().splitlines()[-1])["queries"] == 3  # the retrieval-only one too


def test_everyone_export_is_the_operators(rated):
    out = rated["root"] / "all-set"
    done = run_cli("--store", str(rated["store"]), "feedback", "export", str(out), "--all", cwd=rated["root"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert {q["_id"] for q in read_jsonl(out / "queries.jsonl")} == set(rated["ids"].values())
    assert sorted(d["_id"] for d in read_jsonl(out / "corpus.jsonl")) == ["harbor.txt", "orchard.txt"]
