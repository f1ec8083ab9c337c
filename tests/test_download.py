"""`longrvos download`: a stand-in for ``huggingface_hub.snapshot_download`` serves a small repository laid
out as the Hub's (split folders of archives built from samples/, the Hub README and .gitattributes) and
writes, as the real one does, only the files matching the patterns asked for, plus ``.cache/huggingface/``."""
import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import errors as hub_errors

from longrvos_data.cli import main
from longrvos_data.download import MANUAL
from longrvos_data.summary import summarise

from fixtures.archives import RELEASES, SAMPLES, release, tree

HUB_README = "---\nlicense: mit\ntask_categories:\n- video-segmentation\n---\n# Long-RVOS\n"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """``{repo_id: folder}`` served by a fake ``snapshot_download``; ``hub.calls`` records each call."""
    repos = {}
    lr = release(SAMPLES / "long_rvos", tmp_path / "hub" / "long_rvos", RELEASES["long_rvos"]["none"])
    mv = release(SAMPLES / "mevis", tmp_path / "hub" / "mevis", RELEASES["mevis"]["top"])
    shutil.rmtree(mv / "valid_u")  # a split the repository lacks
    for repo, folder in (("iSEE-Laboratory/Long-RVOS", lr), ("FudanCVL/MeViSv2", mv)):
        (folder / "README.md").write_text(HUB_README)
        (folder / ".gitattributes").write_text("*.tar.gz filter=lfs diff=lfs merge=lfs -text\n")
        repos[repo] = folder
    calls = []

    def snapshot_download(repo_id, *, repo_type=None, local_dir=None, allow_patterns=None, ignore_patterns=None,
                          **kwargs):
        calls.append({"repo_id": repo_id, "repo_type": repo_type, "local_dir": Path(local_dir),
                      "allow_patterns": allow_patterns, "ignore_patterns": ignore_patterns})
        if repo_id not in repos:
            raise hub_errors.RepositoryNotFoundError("404", response=_response(404))
        out = Path(local_dir)
        for f in sorted(repos[repo_id].rglob("*")):
            rel = f.relative_to(repos[repo_id]).as_posix()
            if not f.is_file() or (allow_patterns is not None and not any(fnmatch(rel, p) for p in allow_patterns)):
                continue
            if ignore_patterns and any(fnmatch(rel, p) for p in ignore_patterns):
                continue
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out / rel)
            meta = out / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text("0123abcd\n")
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    snapshot_download.calls = calls
    return snapshot_download


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/datasets/x"))


def _counts(path: Path, **kwargs) -> dict:
    summary = summarise(path, deep=True, **kwargs)
    summary.pop("path")
    return summary


def test_download_long_rvos_runs_the_whole_chain(hub, tmp_path, capsys):
    out = tmp_path / "data" / "long_rvos"
    code, stdout, err = _run(capsys, "download", "long_rvos", out)
    assert (code, err) == (0, "")
    assert [(c["repo_id"], c["repo_type"], c["local_dir"], c["allow_patterns"], c["ignore_patterns"])
            for c in hub.calls] == [("iSEE-Laboratory/Long-RVOS", "dataset", out,
                                     ["README.md", "train/*", "valid/*", "test/*"], None)]
    sample = _counts(SAMPLES / "long_rvos")
    lines = stdout.splitlines()
    assert len([line for line in lines if ": extracted " in line]) == 5
    for split in ("train", "valid", "test"):
        s = sample["splits"][split]
        assert (f"{out}/{split}: {s['videos']} videos, {s['frames']} frames, {s['tracks']} tracks, "
                f"{s['expressions']} expressions") in lines
    assert lines[-1] == (f"downloaded iSEE-Laboratory/Long-RVOS to {out}; next: `longrvos validate {out}` "
                         "decodes every file")
    assert (out / "README.md").read_text() == HUB_README and (out / ".cache" / "huggingface").is_dir()
    assert tree(out, content_only=True) | {"README.md": None} == tree(SAMPLES / "long_rvos") | {"README.md": None}
    code, stdout, err = _run(capsys, "info", out, "--deep", "--json")
    assert (code, err) == (0, "")
    info = json.loads(stdout)
    info.pop("path")
    assert info == sample


def test_split_valid_fetches_nothing_of_train(hub, tmp_path, capsys):
    out = tmp_path / "lr"
    code, _, err = _run(capsys, "download", "long_rvos", out, "--split", "valid")
    assert (code, err) == (0, "")
    assert hub.calls[0]["allow_patterns"] == ["README.md", "valid/*"]
    fetched = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and ".cache" not in p.parts)
    assert fetched == sorted(["README.md", "valid/.Annotations.tar.gz.prepared", "valid/.JPEGImages.tar.gz.prepared",
                              "valid/Annotations.tar.gz", "valid/JPEGImages.tar.gz",
                              *(p.relative_to(SAMPLES / "long_rvos").as_posix()
                                for p in (SAMPLES / "long_rvos" / "valid").rglob("*") if p.is_file())])
    assert not (out / "train").exists() and not (out / "test").exists()
    assert _counts(out, format="long_rvos") == _counts(SAMPLES / "long_rvos", split="valid")


def test_removed_archives_are_not_fetched_again(hub, tmp_path, capsys):
    out = tmp_path / "lr"
    assert _run(capsys, "download", "long_rvos", out, "--split", "valid", "--remove-archives")[0] == 0
    assert not (out / "valid" / "JPEGImages.tar.gz").exists()
    code, stdout, err = _run(capsys, "download", "long_rvos", out, "--split", "valid")
    assert (code, err) == (0, "")
    assert hub.calls[1]["ignore_patterns"] == ["valid/Annotations.tar.gz", "valid/JPEGImages.tar.gz"]
    assert not (out / "valid" / "JPEGImages.tar.gz").exists()
    assert f"{out}/valid: 3 videos" in stdout


def test_mevis_v2_split_missing_from_the_repository(hub, tmp_path, capsys, caplog):
    out = tmp_path / "mevis"
    code, stdout, _ = _run(capsys, "download", "mevis_v2", out)
    assert code == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "FudanCVL/MeViSv2 has no valid_u/ folder; skipped"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["README.md", "train", "valid"]
    for split in ("train", "valid"):
        assert (out / split / "JPEGImages").is_dir() and f"{out}/{split}: " in stdout
    code, stdout, err = _run(capsys, "download", "mevis_v2", tmp_path / "m2", "--split", "valid_u")
    assert (code, stdout) == (2, "")
    assert err == ("longrvos download: error: FudanCVL/MeViSv2 has no valid_u/ folder: nothing was downloaded for "
                   "it (see https://huggingface.co/datasets/FudanCVL/MeViSv2/tree/main)\n")


@pytest.mark.parametrize("error,message", [
    (hub_errors.GatedRepoError("403", response=_response(403)),
     "iSEE-Laboratory/Long-RVOS is gated: accept its terms at https://huggingface.co/datasets/iSEE-Laboratory/"
     "Long-RVOS while logged in, then log in here (`hf auth login`, or set HF_TOKEN) and run again"),
    (hub_errors.RepositoryNotFoundError("404", response=_response(404)),
     "iSEE-Laboratory/Long-RVOS was not found at https://huggingface.co (or is private and no token was given): "
     "check HF_ENDPOINT, log in (`hf auth login`) and run again"),
    (hub_errors.LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub"),
     "cannot reach https://huggingface.co to download iSEE-Laboratory/Long-RVOS (no network?): check the "
     "connection, or set HF_ENDPOINT to a mirror; what was downloaded is kept and a re-run resumes"),
    (hub_errors.HfHubHTTPError("500", response=_response(500)),
     "the Hub answered HTTP 500 for iSEE-Laboratory/Long-RVOS: run again later (a re-run resumes)"),
    (httpx2.ConnectError("connection reset"),
     "the download of iSEE-Laboratory/Long-RVOS from https://huggingface.co broke off (ConnectError): run "
     "again, it resumes"),
], ids=["gated", "missing", "offline", "http-500", "broken-off"])
def test_hub_failures_are_one_line(error, message, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)

    def snapshot_download(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    code, out, err = _run(capsys, "download", "long_rvos", tmp_path / "lr")
    assert (code, out, err) == (2, "", f"longrvos download: error: {message}\n")


def test_dry_run_touches_no_network(tmp_path, monkeypatch, capsys):
    def snapshot_download(*args, **kwargs):
        raise AssertionError("--dry-run called the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    out = tmp_path / "dl"
    code, stdout, err = _run(capsys, "download", "long_rvos", out, "--split", "valid", "--split", "test", "--dry-run")
    assert (code, err) == (0, "")
    then = "then extracted into {}/ by `longrvos prepare`"
    assert stdout.splitlines() == [
        "repo: iSEE-Laboratory/Long-RVOS (dataset, https://huggingface.co/datasets/iSEE-Laboratory/Long-RVOS)",
        "patterns: README.md valid/* test/*",
        f"files (as the release is known to hold them) -> {out}:",
        f"  README.md                    -> {out}/README.md",
        f"  valid/JPEGImages.tar.gz      -> {out}/valid/JPEGImages.tar.gz, {then.format(out / 'valid/JPEGImages')}",
        f"  valid/Annotations.tar.gz     -> {out}/valid/Annotations.tar.gz, {then.format(out / 'valid/Annotations')}",
        f"  valid/meta_expressions.json  -> {out}/valid/meta_expressions.json",
        f"  test/JPEGImages.tar.gz       -> {out}/test/JPEGImages.tar.gz, {then.format(out / 'test/JPEGImages')}",
        f"  test/Annotations.tar.gz      -> {out}/test/Annotations.tar.gz, {then.format(out / 'test/Annotations')}",
        f"  test/meta_expressions.json   -> {out}/test/meta_expressions.json",
    ]
    assert not out.exists()
    code, _, err = _run(capsys, "download", "long_rvos", out, "--split", "val", "--dry-run")
    assert (code, err) == (2, "longrvos download: error: iSEE-Laboratory/Long-RVOS has no split 'val'; its "
                              "splits: train, valid, test\n")


@pytest.mark.parametrize("dataset,first,placed", [
    ("lvos", "LVOS (v1 and v2) is not on the Hugging Face Hub. Its README lists the downloads:",
     "{out}/train.zip, {out}/valid.zip, {out}/test.zip"),
    ("mevis", "MeViS v1 is not on the Hugging Face Hub (MeViS v2 is: `longrvos download mevis_v2 {out}`).",
     "{out}/train.zip, {out}/valid_u.zip, {out}/valid.zip"),
    ("revos", "ReVOS is not on the Hugging Face Hub. Its README lists the downloads:",
     "meta_expressions_train_.json, meta_expressions_train_sub_.json, meta_expressions_valid_.json -> {out}/"),
    ("ref_youtube_vos", "Ref-YouTube-VOS is not on the Hugging Face Hub. The files are on its CodaLab competition,",
     "train.zip, valid.zip, test.zip      -> {out}/"),
])
def test_datasets_not_on_the_hub_print_where_files_go_and_exit_1(dataset, first, placed, tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", None)
    out = tmp_path / dataset
    code, stdout, err = _run(capsys, "download", dataset, out, "--dry-run")
    assert (code, err) == (1, "")
    assert stdout == MANUAL[dataset].format(out=out) + "\n"
    assert stdout.splitlines()[0] == first.format(out=out)
    assert placed.format(out=out) in stdout and f"run `longrvos prepare {out}`" in stdout
    assert not out.exists()
