"""An uploaded QA set (.zip) is opened safely: only the BEIR files are written; paths that leave the
folder, too many entries, too many bytes, damaged zips and files that are not zips are refused with a
clear reason."""

from __future__ import annotations

import json
import zipfile

import pytest

from ragchat.core.errors import RagchatError
from ragchat.eval import qaset

QUERY = {"_id": "q1", "text": "How deep is the harbor?", "metadata": {"reference": "14 metres"}}


def make_zip(path, files: dict[str, str]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def beir(prefix: str = "") -> dict[str, str]:
    return {f"{prefix}corpus.jsonl": json.dumps({"_id": "harbor.txt", "text": "The harbor is 14 metres deep."}) + "\n",
            f"{prefix}queries.jsonl": json.dumps(QUERY) + "\n",
            f"{prefix}qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\tharbor.txt\t1\n"}


def test_a_zipped_folder_gives_only_the_sets_files(tmp_path):
    z = make_zip(tmp_path / "set.zip", {**beir("myset/"), "myset/notes/run.sh": "rm -rf /", "myset/README.md": "hi"})
    out = qaset.extract_zip(z, tmp_path / "out")
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["corpus.jsonl", "qrels/test.tsv", "queries.jsonl"]
    assert qaset.corpus_ids(out / "corpus.jsonl") == ["harbor.txt"]


@pytest.mark.parametrize("evil", ["../escape.jsonl", "set/../../escape.jsonl", "/etc/corpus.jsonl", "C:/x/corpus.jsonl"])
def test_paths_that_leave_the_folder_are_refused(tmp_path, evil):
    z = make_zip(tmp_path / "evil.zip", {**beir(), evil: "x"})
    with pytest.raises(RagchatError, match="a path outside its folder"):
        qaset.extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.jsonl").exists()


def test_too_big_and_too_many_are_refused(tmp_path, monkeypatch):
    big = make_zip(tmp_path / "big.zip", {**beir(), "corpus.jsonl": json.dumps({"_id": "a", "text": "x" * 5000})})
    monkeypatch.setattr(qaset, "MAX_BYTES", 1000)
    with pytest.raises(RagchatError, match="MB unpacked"):
        qaset.extract_zip(big, tmp_path / "out")
    monkeypatch.setattr(qaset, "MAX_ENTRIES", 5)
    many = make_zip(tmp_path / "many.zip", {**beir(), **{f"x{i}.txt": "" for i in range(5)}})
    with pytest.raises(RagchatError, match="8 entries"):
        qaset.extract_zip(many, tmp_path / "out2")


def test_a_zip_whose_declared_sizes_lie_is_refused_as_damaged(tmp_path, monkeypatch):
    z = make_zip(tmp_path / "liar.zip", {**beir(), "corpus.jsonl": json.dumps({"_id": "a", "text": "y" * 5000})})
    real = zipfile.ZipFile.infolist

    def lying(self):
        infos = real(self)
        for info in infos:
            info.file_size = 10  # what a crafted zip may claim
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises(RagchatError, match="liar.zip is damaged"):
        qaset.extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip_and_a_zip_without_the_set_are_refused(tmp_path):
    bad = tmp_path / "set.zip"
    bad.write_text("this is not a zip")
    with pytest.raises(RagchatError, match="set.zip is not a .zip file"):
        qaset.extract_zip(bad, tmp_path / "out")
    partial = make_zip(tmp_path / "partial.zip", {"queries.jsonl": json.dumps(QUERY)})
    with pytest.raises(RagchatError, match="lacks corpus.jsonl, qrels/test.tsv"):
        qaset.extract_zip(partial, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
