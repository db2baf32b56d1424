"""The CLI contract that later issues and checks rely on, run as a real subprocess."""

import json

import pytest

from conftest import PDFS, TEST_MODEL, run_cli

pytestmark = [pytest.mark.slow]  # the real CLI in child processes, with the built-in model


def ragchat(*args, store, env_extra=None, timeout=600):
    return run_cli("--store", str(store), *args, timeout=timeout, env={
        "RAGCHAT_LLM__PROVIDER": "llamacpp", "RAGCHAT_LLM__BUILTIN_MODEL": TEST_MODEL,
        "RAGCHAT_LLM__MAX_ANSWER_TOKENS": "48", **(env_extra or {})})


def test_ingest_docs_ask_remove(tmp_path):
    store = tmp_path / "store"
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "notes.md").write_text("# Kelp\nKelp forests grow quickly in cold water and shelter sea otters.")
    (docs / "sub" / "zh.txt").write_bytes("刀片电池的安全性很高，适合储能。".encode("gb18030"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf")

    r = ragchat("ingest", str(docs), store=store)
    assert r.returncode == 1, r.stdout + r.stderr  # one file failed
    lines = dict(line.split(None, 1) for line in r.stdout.strip().splitlines())
    assert lines["notes.md"].startswith("added ") and lines["notes.md"].endswith(" chunks")
    assert lines["sub/zh.txt"].startswith("added ")
    assert lines["broken.pdf"].startswith("failed: ")

    (docs / "broken.pdf").unlink()
    r = ragchat("ingest", str(docs), store=store)
    assert r.returncode == 0
    assert all(v == "unchanged" for v in dict(line.split(None, 1) for line in r.stdout.strip().splitlines()).values())

    r = ragchat("docs", "--json", store=store)
    docs_list = {d["source"]: d for d in json.loads(r.stdout)}
    assert docs_list["notes.md"]["status"] == "done" and docs_list["notes.md"]["chunks"] >= 1
    assert docs_list["broken.pdf"]["status"] == "failed"
    assert {"source", "pages", "chunks", "status", "collection"} <= set(docs_list["notes.md"])

    r = ragchat("ask", "Where do kelp forests grow quickly?", "--json", store=store)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["provider"] == "llamacpp" and out["model"].endswith(".gguf") and out["answer"]
    assert out["sources"] and out["sources"][0]["source"] == "notes.md"
    assert set(out["sources"][0]) == {"id", "source", "page", "text", "score"}

    r = ragchat("remove", "notes.md", store=store)
    assert r.returncode == 0 and "removed" in r.stdout
    r = ragchat("ask", "Where do kelp forests grow quickly?", "--json", store=store)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(s["source"] != "notes.md" for s in out["sources"])


def test_encrypted_pdf_with_password(tmp_path):
    r = ragchat("ingest", str(PDFS / "unstructured__password.pdf"), store=tmp_path / "s")
    assert r.returncode == 1 and "failed: encrypted" in r.stdout
    r = ragchat("ingest", str(PDFS / "unstructured__password.pdf"), "--password", "password", store=tmp_path / "s")
    assert r.returncode == 0 and "added" in r.stdout


def test_usage_and_config_errors_exit_2(tmp_path):
    r = ragchat("ingest", store=tmp_path / "s")
    assert r.returncode == 2
    r = ragchat("docs", store=tmp_path / "s", env_extra={"RAGCHAT_LLM__PROVIDER": "nope"})
    assert r.returncode == 2 and "llm.provider" in r.stderr and "Traceback" not in r.stderr
    r = ragchat("ingest", str(tmp_path / "missing"), store=tmp_path / "s")
    assert r.returncode == 1 and "failed: file not found" in r.stdout and "Traceback" not in r.stderr
