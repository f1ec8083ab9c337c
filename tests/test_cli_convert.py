"""`longrvos convert`: targets, policy flags, reports, and bad input through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import longrvos_data
from longrvos_data import DataError
from longrvos_data.cli import main
from longrvos_data.converters.base import convert
from longrvos_data.sidecar import SIDECAR

from fixtures import fixture


long_rvos_hand = fixture("long_rvos_hand")
mevis_hand = fixture("mevis_hand")
hand = fixture("interchange_hand")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["convert", *(str(a) for a in argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def lr(tmp_path: Path) -> Path:
    return long_rvos_hand.build(tmp_path / "src")


def test_convert_writes_the_target_and_reports(tmp_path: Path, lr: Path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, _ = _run(capsys, lr, "--to", "ytvis", out, "--no-progress")
    assert code == 0
    assert stdout.splitlines() == [
        f"wrote 3 video(s) as ytvis to {out} (train: 2, test: 1)",
        f"kept what ytvis cannot hold in {out / 'train' / SIDECAR}",
        f"kept what ytvis cannot hold in {out / 'test' / SIDECAR}",
    ]
    assert longrvos_data.detect_format(out) == "ytvis"
    source, back = longrvos_data.load(lr), longrvos_data.load(out)
    for split in ("train", "test"):
        hand.assert_same_split(list(source[split]), list(back[split]))


def test_lossy_prints_exactly_what_was_dropped(tmp_path: Path, lr: Path, capsys) -> None:
    code, stdout, _ = _run(capsys, lr, "--to", "davis", tmp_path / "out", "--lossy")
    assert code == 0
    expected = convert(lr, "davis", tmp_path / "lib", lossy=True)
    lines = stdout.splitlines()
    assert lines[1] == f"dropped {len(expected.dropped)} item(s):"
    assert lines[2:] == [f"  {d}" for d in expected.dropped]
    # the Long-RVOS fixture has an empty mask and no overlap: DAVIS drops exactly that mask
    assert lines[2:] == ["  train/vidA: track '2' frames 1: present but empty: a palette PNG shows it absent"]


def test_json_report(tmp_path: Path, capsys) -> None:
    src = mevis_hand.build(tmp_path / "src")
    code, stdout, _ = _run(capsys, src, "--to", "sola", tmp_path / "out", "--json", "--split", "train")
    assert code == 0
    report = json.loads(stdout)
    assert report["target"] == "sola" and report["videos"] == {"train": 2} and report["dropped"] == []
    assert report["sidecars"] == [str(tmp_path / "out" / "train" / SIDECAR)]
    assert set(longrvos_data.load(tmp_path / "out").splits) == {"train"}


def test_no_sidecar_refuses_with_one_line(tmp_path: Path, capsys) -> None:
    src = mevis_hand.build(tmp_path / "src")
    code, stdout, stderr = _run(capsys, src, "--to", "davis", tmp_path / "out", "--split", "train", "--no-sidecar")
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("longrvos convert: error: ")
    assert "video 'vidA'" in stderr and "field 'expressions.1'" in stderr and "one object per expression" in stderr


@pytest.mark.parametrize("target", ["ytvis", "davis", "sola", "long_rvos", "mevis"])
def test_a_corrupt_png_gives_the_loaders_error(tmp_path: Path, lr: Path, capsys, target: str) -> None:
    png = lr / "train" / "Annotations" / "vidA" / "1" / "00000.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(DataError) as info:
        longrvos_data.load(lr)["train"].video("vidA").frame_masks(0)
    code, stdout, stderr = _run(capsys, lr, "--to", target, tmp_path / "out")
    assert code == 2
    assert stderr.splitlines()[-1] == f"longrvos convert: error: {info.value}"
    assert str(png) in stderr and "video 'vidA'" in stderr


@pytest.mark.parametrize("target", ["ytvis", "davis", "sola"])
def test_on_error_skip_warns_and_converts_the_rest(tmp_path: Path, lr: Path, capsys, target: str) -> None:
    png = lr / "train" / "Annotations" / "vidA" / "1" / "00000.png"
    png.write_bytes(png.read_bytes()[:40])
    code, stdout, stderr = _run(capsys, lr, "--to", target, tmp_path / "out", "--on-error", "skip")
    assert code == 3  # finished, but skipped something
    assert f"wrote 2 video(s) as {target}" in stdout and "train: 1" in stdout
    lines = stderr.splitlines()
    assert lines[0] == "longrvos convert: 1 skipped (--on-error skip), not written:"
    assert len(lines) == 2 and lines[1].startswith(f"  {png}: video 'vidA': field ")
    assert longrvos_data.load(tmp_path / "out")["train"].video_ids() == ["vidB"]


def test_a_truncated_meta_file_gives_the_loaders_error(tmp_path: Path, lr: Path, capsys) -> None:
    meta = lr / "train" / "meta_expressions.json"
    meta.write_text(meta.read_text()[:120])
    with pytest.raises(DataError) as info:
        longrvos_data.load(lr, format="long_rvos")
    code, _, stderr = _run(capsys, lr, "--to", "sola", tmp_path / "out", "--format", "long_rvos")
    assert code == 2
    assert stderr.splitlines()[-1] == f"longrvos convert: error: {info.value}"
    assert "invalid JSON" in stderr and str(meta) in stderr


def test_a_bad_ytvis_source_names_file_video_and_field(tmp_path: Path, capsys) -> None:
    src = hand.build_ytvis(tmp_path / "src")
    data = json.loads(hand.YTVIS_JSON)
    data["annotations"][1]["segmentations"] = [None]
    (src / "valid" / "instances.json").write_text(json.dumps(data))
    code, _, stderr = _run(capsys, src, "--to", "davis", tmp_path / "out")
    assert code == 2
    assert stderr.splitlines()[-1] == (
        f"longrvos convert: error: {src / 'valid' / 'instances.json'}: video 'v5': "
        "field 'annotations[id=12].segmentations': 1 segmentations for 2 frames")


@pytest.mark.parametrize("argv, message", [
    (["--to", "davis", "OUT", "--link-frames"], "--link-frames applies to --to hf only"),
    (["--to", "davis", "OUT", "--workers", "0"], "--workers must be at least 1"),
    (["--to", "davis", "OUT", "--lossy", "--no-sidecar"], "--lossy and --no-sidecar exclude each other"),
    (["--to", "davis", "OUT", "--split", "nope"], "no split 'nope'"),
], ids=["link-frames", "workers", "lossy-no-sidecar", "split"])
def test_bad_arguments(tmp_path: Path, lr: Path, capsys, argv, message) -> None:
    code, _, stderr = _run(capsys, lr, *[str(tmp_path / "out") if a == "OUT" else a for a in argv])
    assert code == 2 and message in stderr and stderr.count("\n") == 1


def test_an_unknown_source_format(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, _, stderr = _run(capsys, tmp_path / "empty", "--to", "ytvis", tmp_path / "out")
    assert code == 2 and "matches no known format" in stderr


def test_to_hf_with_link_frames(tmp_path: Path, lr: Path, capsys) -> None:
    code, stdout, _ = _run(capsys, lr, "--to", "hf", tmp_path / "out", "--link-frames", "--json")
    assert code == 0
    assert json.loads(stdout)["target"] == "hf"
    back = longrvos_data.load(tmp_path / "out", format="hf")
    hand.assert_same_split(list(longrvos_data.load(lr)["train"]), list(back["train"]))


def test_a_rerun_resumes_and_says_so(tmp_path: Path, lr: Path, capsys) -> None:
    from longrvos_data.converters import sola
    from longrvos_data.converters.base import SplitJob

    out = tmp_path / "out"
    # what a run killed after its first video leaves: that video's files and its marker
    job = SplitJob(out, "sola", "train", {"lossy": False, "sidecar": True, "options": {}})
    job.start()
    video = longrvos_data.load(lr)["train"].video("vidA")
    job.save("vidA", sola._write_video(video, out=str(out), split="train", lossy=False, sidecar=True))
    code, stdout, _ = _run(capsys, lr, "--to", "sola", out, "--split", "train")
    assert code == 0 and stdout.splitlines()[0].endswith("; 1 already complete from an interrupted run")
    hand.assert_same_split(list(longrvos_data.load(lr)["train"]), list(longrvos_data.load(out)["train"]))
