"""`push`: checks and licence warnings up to the network call, which is replaced here."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from longrvos_data import DataError, LongRVOSError
from longrvos_data import hub
from longrvos_data.cli import main as cli_main
from longrvos_data.converters import hf
from longrvos_data.loaders import load
from longrvos_data.synth import generate

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("_fixture_hf_hand", FIXTURES / "hf_hand.py")
hand = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hand)


@pytest.fixture
def uploads(monkeypatch):
    calls = []

    def fake(folder, repo_id, **kw):
        calls.append({"folder": folder, "repo_id": repo_id, **kw})
        return f"https://huggingface.co/datasets/{repo_id}/commit/abc"

    monkeypatch.setattr(hub, "_upload", fake)
    return calls


def _convert(fmt: str, tmp_path: Path, **kw) -> Path:
    src = generate(fmt, tmp_path / f"src_{fmt}", num_videos=1, num_frames=2, splits=["train"])
    out = tmp_path / f"hf_{fmt}"
    hf.write(load(src, format=fmt).splits, out, **kw)
    return out


def test_non_commercial_source_warns_and_still_uploads(tmp_path, uploads):
    out = _convert("mevis", tmp_path)
    with pytest.warns(hub.LicenceWarning, match="non-commercial"):
        result = hub.push(out, "me/mevis-hf", private=True)
    assert result.url == "https://huggingface.co/datasets/me/mevis-hf/commit/abc"
    assert uploads == [{"folder": out.absolute(), "repo_id": "me/mevis-hf", "token": None, "private": True,
                        "revision": None, "commit_message": "Upload MeViS with longrvos-data"}]
    assert hub.plan_push(out).non_commercial


@pytest.mark.parametrize("fmt, expected", [("revos", "non-commercial"), ("lvos", "non-commercial"),
                                           ("long_rvos", "does not state a licence")])
def test_licence_warnings_per_source(fmt, expected, tmp_path):
    plan = hub.plan_push(_convert(fmt, tmp_path))
    assert len(plan.warnings) == 1 and expected in plan.warnings[0]


def test_permissive_source_gives_no_warning(tmp_path, uploads, recwarn):
    out = _convert("ref_youtube_vos", tmp_path)
    plan = hub.plan_push(out)
    assert plan.warnings == () and not plan.non_commercial
    hub.push(out, "me/rytvos")
    assert not [w for w in recwarn if issubclass(w.category, hub.LicenceWarning)]
    assert len(uploads) == 1


def test_unknown_source_dataset_warns(tmp_path):
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")
    warnings = hub.plan_push(tmp_path / "out").warnings
    assert len(warnings) == 1 and "not known" in warnings[0]


def test_linked_frames_are_not_pushed(tmp_path, uploads):
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out", link_frames=True,
             source_root=tmp_path / "src")
    with pytest.raises(LongRVOSError, match="without --link-frames"):
        hub.push(tmp_path / "out", "me/x")
    assert uploads == []


def test_unfinished_conversion_is_not_pushed(tmp_path, uploads):
    out = _convert("ref_youtube_vos", tmp_path)
    assert not (out / ".longrvos_hf").exists()  # a finished output keeps no resume state
    progress = out / ".longrvos_hf/progress.json"  # what a run killed while writing valid leaves
    progress.parent.mkdir()
    progress.write_text(json.dumps({"splits": {"valid": {"done": False}}}))
    with pytest.raises(LongRVOSError, match="did not finish"):
        hub.push(out, "me/x")
    assert uploads == []


def test_folder_that_is_no_hf_output_is_refused(tmp_path, uploads):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="dataset card is missing"):
        hub.push(tmp_path / "x", "me/x")
    assert uploads == []


def test_bad_repo_id_is_refused(tmp_path, uploads):
    with pytest.raises(LongRVOSError, match="user/name"):
        hub.push(tmp_path, "a/b/c")


def test_upload_calls_create_repo_and_upload_folder_with_the_card_and_shards(tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

            class Info:
                commit_url = "https://hub/commit/1"
            return Info()

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = hub._upload(tmp_path, "me/x", token="t", private=False, revision="dev", commit_message="m")
    assert url == "https://hub/commit/1"
    assert calls == [
        ("init", "t"),
        ("create_repo", "me/x", {"repo_type": "dataset", "private": False, "exist_ok": True}),
        ("upload_folder", {"repo_id": "me/x", "repo_type": "dataset", "folder_path": tmp_path, "revision": "dev",
                           "commit_message": "m", "allow_patterns": ["README.md", "data/**"]}),
    ]


def test_cli_push_prints_the_warning_once_and_the_url(tmp_path, uploads, capsys):
    out = _convert("mevis", tmp_path)
    assert cli_main(["push", str(out), "me/mevis", "--private", "--message", "hello"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("non-commercial") == 1 and "warning" in captured.err
    assert "https://huggingface.co/datasets/me/mevis/commit/abc" in captured.out
    assert uploads[0]["commit_message"] == "hello" and uploads[0]["private"] is True


def test_cli_push_error_is_one_line(tmp_path, uploads, capsys):
    assert cli_main(["push", str(tmp_path), "me/x"]) == 2
    assert "dataset card is missing" in capsys.readouterr().err
