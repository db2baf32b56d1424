"""The web app's evaluations (``EvalRuns``) over a real engine: the bundled test embedder and LLM, a
real store, real ratings.

Alice (an admin) and bob each keep a private document named harbor.txt, with other words. Alice
rates answers about hers. A run on her feedback searches only her document (bob's, of the same name,
is never given to the model), gives each set-up its row of figures, and the next run on the same set
is compared with it. Bob may not start runs, and sees none of alice's. An uploaded .zip's corpus is
ingested into a temporary collection of alice's, removed when the run ends; a bad zip is refused
before anything runs; a run the app's stop cut short is marked failed and its documents removed.
"""

from __future__ import annotations

import json
import time
import zipfile

import pytest
from conftest import ask_and_save, make_settings

from ragchat.answer.setups import Setup
from ragchat.auth.users import add_user
from ragchat.core.access import AccessError
from ragchat.core.errors import RagchatError
from ragchat.engine import Engine
from ragchat.eval.runs import LIVE, EvalRuns, temporary_collection
from ragchat.ingest.pipeline import SourceFile

pytestmark = [pytest.mark.slow]  # the built-in LLM answers every question

ALICE = "The Veltmar harbor was dredged in 2011 to a depth of 14 metres. Its lighthouse, the Grey Finch, is white."
BOB = "Bob's notes: the Veltmar harbor is said to be 90 metres deep, and its lighthouse is painted green."
RUN_TIMEOUT = 600


def wait(runs: EvalRuns, run_id: str):
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        row = runs.catalog.eval_run(run_id)
        if row.status not in LIVE:
            return row
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {row.status} after {RUN_TIMEOUT} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalruns")
    engine = Engine(make_settings(root / "store"))
    add_user(engine.catalog, "alice", "alice-pass-4821", admin=True)
    add_user(engine.catalog, "bob", "bob-pass-97310")
    docs = {}
    for owner, text in (("alice", ALICE), ("bob", BOB)):
        (root / owner).mkdir()
        (root / owner / "harbor.txt").write_text(text, encoding="utf-8")
        (done,) = engine.ingestor.ingest([SourceFile(root / owner / "harbor.txt", "harbor.txt")], "default", owner=owner)
        docs[owner] = done.doc_id
    cid, index = ask_and_save(engine, "alice", "How deep was the Veltmar harbor dredged?")
    engine.feedback.rate_message("alice", cid, index, 1)
    cid, index = ask_and_save(engine, "alice", "What colour is the Grey Finch lighthouse?")
    down = engine.feedback.rate_message("alice", cid, index, -1)
    engine.catalog.amend_feedback(down, "alice", note="", correction="The Grey Finch lighthouse is white.")
    cid, index = ask_and_save(engine, "bob", "How deep is the Veltmar harbor?")
    engine.feedback.rate_message("bob", cid, index, 1)
    runs = EvalRuns(engine)
    yield {"root": root, "engine": engine, "runs": runs, "docs": docs}
    engine.close()


def test_a_run_on_feedback_reads_only_the_starters_documents(world):
    runs, docs = world["runs"], world["docs"]
    setups = [Setup(), Setup(mode="lexical", top_k=2)]
    first = wait(runs, runs.start_feedback("alice", setups))
    assert first.status == "done", first.error
    assert (first.done, first.total) == (4, 4)  # 2 questions x 2 set-ups
    assert [r["setup"] for r in first.results] == ["auto (SmolLM2-135M)", "auto (SmolLM2-135M), lexical, 2 sources"]
    for result in first.results:
        assert result["questions"] == 2 and result["with_reference"] == 2
        assert result["documents"] == [docs["alice"]]  # bob's harbor.txt, same name, never read
        assert result["first_token_s_p50"] is not None and 0 <= result["accuracy"] <= 1
        assert len(result["wrong"]) == round(2 * (1 - result["accuracy"]))
    assert not (runs.root / first.id).exists()  # the exported set is gone with the run
    assert runs.previous(first) is None
    second = wait(runs, runs.start_feedback("alice", [Setup()]))
    assert second.status == "done" and runs.previous(second).id == first.id  # the next run is compared with it


def test_bob_may_not_start_runs_nor_see_alices(world):
    runs = world["runs"]
    with pytest.raises(AccessError):
        runs.start_feedback("bob", [Setup()])
    with pytest.raises(AccessError):
        runs.start_feedback("bob", [Setup()], team=True)
    alices = runs.runs("alice")
    assert alices and all(r.owner == "alice" for r in alices)
    assert runs.runs("bob") == [] and runs.get(alices[0].id, "bob") is None
    assert runs.get(alices[0].id, "alice") is not None and not runs.stop(alices[0].id, "bob")


def test_an_uploaded_set_is_ingested_into_a_temporary_collection_removed_after(world, tmp_path):
    runs, engine = world["runs"], world["engine"]
    z = tmp_path / "lighthouses.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("lighthouses/corpus.jsonl", json.dumps({"_id": "finch.txt", "text": ALICE}) + "\n")
        f.writestr("lighthouses/queries.jsonl", json.dumps(
            {"_id": "q1", "text": "How deep was the Veltmar harbor dredged?", "metadata": {"answers": [["14"]]}}) + "\n")
        f.writestr("lighthouses/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tfinch.txt\t1\n")
    before = {d.id for d in engine.catalog.documents()}
    run_id = runs.start_zip("alice", z, [Setup()], name="lighthouses")
    row = wait(runs, run_id)
    assert row.status == "done", row.error
    assert row.set_name == "lighthouses" and row.results[0]["gold_retrieved"] == 1.0  # its own corpus was searched
    assert row.results[0]["documents"] and not set(row.results[0]["documents"]) & before
    assert {d.id for d in engine.catalog.documents()} == before  # the temporary collection is gone
    assert f"~alice/{temporary_collection(run_id)}" not in engine.catalog.collections()


def test_a_bad_zip_is_refused_before_anything_runs(world, tmp_path):
    runs = world["runs"]
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("../../corpus.jsonl", "{}")
    count = len(runs.runs("alice"))
    with pytest.raises(RagchatError, match="a path outside its folder"):
        runs.start_zip("alice", z, [Setup()])
    assert len(runs.runs("alice")) == count and not any(runs.root.iterdir())


def test_a_run_the_app_stop_cut_short_is_failed_and_cleaned_at_the_next_start(world):
    engine = world["engine"]
    run_id = "0" * 32
    engine.catalog.add_eval_run(run_id=run_id, owner="alice", set_name="x", setups=[{}], total=1)
    engine.catalog.update_eval_run(run_id, status="running")
    engine.ingestor.ingest_texts([("left.txt", "left over")], temporary_collection(run_id), owner="alice")
    assert engine.catalog.documents(collections=[f"~alice/{temporary_collection(run_id)}"])
    EvalRuns(engine)
    row = engine.catalog.eval_run(run_id)
    assert row.status == "failed" and "stopped" in row.error
    assert not engine.catalog.documents(collections=[f"~alice/{temporary_collection(run_id)}"])
