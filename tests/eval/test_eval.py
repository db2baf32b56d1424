"""`ragchat eval`: metrics against hand-computed values, and the command on a tiny BEIR set."""

import json
import math
import subprocess
import sys

import pytest

from ragchat.eval.retrieval import load_qrels, mrr_at, ndcg_at, recall_at


def test_metrics_match_hand_computed_values():
    ranked = ["d2", "d1", "d3"]
    rels = {"d1": 1, "d3": 2}
    dcg = 0 + 1 / math.log2(3) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, rels) == pytest.approx(dcg / idcg)
    assert ndcg_at(ranked, rels) == pytest.approx(0.58688, abs=1e-5)
    assert mrr_at(ranked, rels) == 0.5
    assert recall_at(ranked, rels) == 1.0
    assert recall_at(ranked, rels, k=2) == 0.5
    assert ndcg_at(["d1", "d3"], {"d1": 2, "d3": 2}) == pytest.approx(1.0)
    assert ndcg_at(["x"], {"d1": 1}) == 0.0 and mrr_at(["x"], {"d1": 1}) == 0.0
    assert mrr_at(["x"] * 10 + ["d1"], {"d1": 1}) == 0.0  # rank 11 is outside MRR@10


@pytest.fixture
def tiny_beir(tmp_path):
    d = tmp_path / "tiny"
    (d / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "c1", "title": "Zebrafish", "text": "The zebrafish heart regenerates after injury."},
        {"_id": "c2", "title": "Annealing", "text": "Quantum annealers use superconducting qubits."},
        {"_id": "c3", "title": "Kelp", "text": "Kelp forests grow quickly in cold water."},
        {"_id": "c4", "title": "锂电池", "text": "磷酸铁锂刀片电池的安全性很高。"},
    ]
    (d / "corpus.jsonl").write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in corpus), encoding="utf-8")
    queries = [{"_id": "q1", "text": "heart regeneration in zebrafish"}, {"_id": "q2", "text": "superconducting qubits"},
               {"_id": "q3", "text": "刀片电池安全性"}, {"_id": "q4", "text": "unjudged query"}]
    (d / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries), encoding="utf-8")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tc1\t1\nq2\tc2\t1\nq3\tc4\t1\n")
    return d


def test_qrels_header_is_skipped(tiny_beir):
    assert load_qrels(tiny_beir / "qrels" / "test.tsv") == {"q1": {"c1": 1}, "q2": {"c2": 1}, "q3": {"c4": 1}}


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_eval_command_json(tiny_beir, mode, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ragchat.cli", "eval", str(tiny_beir), "--mode", mode, "--json"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == {"ndcg@10", "recall@100", "mrr@10", "queries", "docs", "chunks", "mode", "ingest_s", "query_ms_p50",
                           "query_ms_p95"}
    assert result["queries"] == 3 and result["docs"] == 4 and result["mode"] == mode
    assert result["ndcg@10"] == 1.0 and result["mrr@10"] == 1.0 and result["recall@100"] == 1.0
    assert "nDCG@10" in out.stdout
