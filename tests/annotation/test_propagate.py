"""``longrvos propagate``: semi-supervised propagation from each track's first annotated frame,
scored through the CLI; resume, clean failures, referring layouts, engine options."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longrvos_data.annotation import propagate as P
from longrvos_data.annotation.propagate import first_masks, propagate_dataset
from longrvos_data.cli import main
from longrvos_data.errors import LongRVOSError
from longrvos_data.eval import evaluate
from longrvos_data.loaders import load
from longrvos_data.predictions import write_video
from longrvos_data.synth import generate, textured_lvos

LONGRVOS = Path(sys.executable).with_name("longrvos")   # the installed command, as a user runs it
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([str(LONGRVOS), *map(str, argv)], capture_output=True, text=True, timeout=600)


def cli_score(gt: Path, pred: Path, protocol: str, split: str, report: Path) -> dict:
    """``longrvos eval ... --out report`` through the CLI; the report's JSON."""
    res = cli("eval", "--gt", gt, "--split", split, "--pred", pred, "--protocol", protocol, "--out", report)
    assert res.returncode == 0, res.stderr
    return json.loads(report.read_text())


def write_copy_baseline(gt: Path, pred: Path, split: str = "valid") -> None:
    """Each track's first annotated mask copied to every later frame (the do-nothing tracker)."""
    reader = load(gt, split=split)[split]
    for vid in reader.video_ids():
        video = reader.video(vid)
        firsts = first_masks(video, [t.track_id for t in video.tracks])
        write_video(pred, video, ((i, {t: m for t, (f, m) in firsts.items() if f <= i})
                                  for i in range(video.num_frames)))


@pytest.fixture(scope="module")
def textured(tmp_path_factory) -> Path:
    """The CI fixture: 320x240, 30 frames, seed 0."""
    return textured_lvos(tmp_path_factory.mktemp("textured") / "lvos", width=320, height=240, num_frames=30)


@pytest.fixture(scope="module")
def copy_jf(textured, tmp_path_factory) -> float:
    pred = tmp_path_factory.mktemp("copy") / "pred"
    write_copy_baseline(textured, pred)
    return evaluate(textured, pred, protocol="lvos", split="valid").overall["J&F"]


def test_copying_the_first_mask_scores_poorly_on_the_fixture(copy_jf):
    """The fixture really moves: a tracker that stands still scores at most 0.6 J&F."""
    assert copy_jf <= 0.6


@pytest.mark.slow
def test_classical_propagation_through_the_cli_tracks_the_fixture(textured, copy_jf, tmp_path):
    pytest.importorskip("longrvos_data.annotation.engines.classical")
    pred = tmp_path / "pred"
    res = cli("propagate", textured, "--split", "valid", "--engine", "classical", "--out", pred)
    assert res.returncode == 0, res.stderr
    assert "1 video(s) written (lvos layout)" in res.stdout
    report = cli_score(textured, pred, "lvos", "valid", tmp_path / "report.json")
    jf = report["overall"]["J&F"]
    assert report["counts"]["scored"] == 2 and report["counts"]["zero"] == 0
    assert jf >= 0.8, f"classical J&F {jf:.3f} (copy baseline {copy_jf:.3f})"
    assert jf >= copy_jf + 0.2, f"classical J&F {jf:.3f} vs copy {copy_jf:.3f}"
    # the same figure the copy baseline was scored with, through the CLI as well
    copy = tmp_path / "copy"
    write_copy_baseline(textured, copy)
    assert cli_score(textured, copy, "lvos", "valid", tmp_path / "copy.json")["overall"]["J&F"] == \
        pytest.approx(copy_jf)


def test_predictions_start_at_each_first_frame_and_cover_every_frame(tmp_path):
    """samples/lvos has an object that first appears at frame 1: nothing of it before."""
    pytest.importorskip("longrvos_data.annotation.engines.classical")
    src = SAMPLES / "lvos"
    report = propagate_dataset(src, tmp_path / "pred", split="valid")
    reader = load(src, split="valid")["valid"]
    assert report.written == len(reader.video_ids()) and report.layout == "lvos"
    for vid in reader.video_ids():
        video = reader.video(vid)
        names = sorted(p.name for p in (tmp_path / "pred" / vid).iterdir())
        assert names == sorted(f"{f.name}.png" for f in video.frames)
        firsts = first_masks(video, [t.track_id for t in video.tracks])
        for tid, (frame, mask) in firsts.items():
            for i, f in enumerate(video.frames):
                with Image.open(tmp_path / "pred" / vid / f"{f.name}.png") as im:
                    assert im.mode == "P"
                    ids = np.asarray(im)
                if i < frame:
                    assert not (ids == int(tid)).any(), (vid, tid, i)
                elif i == frame:   # the prompt frame gives the prompt back (where no higher score covers it)
                    assert (ids == int(tid)).sum() >= 0.9 * mask.sum(), (vid, tid, i)
    assert any(f > 0 for v in reader.video_ids() for f, _ in first_masks(reader.video(v), ["1"]).values())


def test_resume_skips_finished_videos_and_redoes_a_partial_one(tmp_path):
    pytest.importorskip("longrvos_data.annotation.engines.classical")
    src, pred = SAMPLES / "lvos", tmp_path / "pred"
    first = propagate_dataset(src, pred, split="valid")
    ids = sorted(p.name for p in pred.iterdir() if not p.name.startswith("."))
    assert first.written == 3 and len(ids) == 3
    kept = {v: (pred / v / "00000001.png").stat().st_mtime_ns for v in ids[:2]}
    redo = ids[2]
    (pred / redo).rename(pred / f".{redo}.partial")       # as a run killed midway leaves it
    (pred / f".{redo}.partial" / "00000006.png").write_bytes(b"half")
    res = cli("propagate", src, "--split", "valid", "--out", pred)
    assert res.returncode == 0, res.stderr
    assert "1 video(s) written (lvos layout), 2 already finished" in res.stdout
    assert not (pred / f".{redo}.partial").exists()
    assert {v: (pred / v / "00000001.png").stat().st_mtime_ns for v in ids[:2]} == kept
    with Image.open(pred / redo / "00000006.png") as im:
        assert im.mode == "P"
    assert evaluate(src, pred, protocol="lvos", split="valid").counts["zero"] == 0


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_or_failed_video_leaves_nothing_half_written(tmp_path, monkeypatch, stop):
    pytest.importorskip("longrvos_data.annotation.engines.classical")
    real = P.write_steps

    def dies_midway(steps, write, video):
        def some():
            for k, step in enumerate(steps):
                if k == 6:
                    raise stop("stopped")
                yield step
        real(some(), write, video)

    monkeypatch.setattr(P, "write_steps", dies_midway)
    pred = tmp_path / "pred"
    with pytest.raises(stop):
        propagate_dataset(SAMPLES / "lvos", pred, split="valid")
    assert [p.name for p in pred.iterdir()] == [".longrvos.lock"]   # no video, no .partial


@pytest.mark.slow
def test_referring_layout_through_the_cli_writes_every_expression_and_frame(tmp_path):
    """MeViS train (multi-object and no-target expressions) in two worker processes."""
    pytest.importorskip("longrvos_data.annotation.engines.classical")
    src, pred = SAMPLES / "mevis", tmp_path / "pred"
    res = cli("propagate", src, "--split", "train", "--out", pred, "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "(referring layout)" in res.stdout
    reader = load(src, split="train")["train"]
    for vid in reader.video_ids():
        video = reader.video(vid)
        assert sorted(p.name for p in (pred / vid).iterdir()) == sorted(e.exp_id for e in video.expressions)
        for e in video.expressions:
            files = sorted((pred / vid / e.exp_id).iterdir())
            assert [p.name for p in files] == sorted(f"{f.name}.png" for f in video.frames)
            if not e.track_ids:
                assert all(not np.asarray(Image.open(p)).any() for p in files), (vid, e.exp_id)
    report = cli_score(src, pred, "mevis", "train", tmp_path / "report.json")
    assert report["counts"]["scored"] == report["counts"]["expressions"] > 0
    assert report["counts"]["zero"] == report["counts"]["dropped"] == 0
    assert report["overall"]["J&F"] > 0.3


def _error_line(capsys, *argv) -> str:
    assert main(["propagate", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_errors_are_one_line(tmp_path, capsys):
    src = SAMPLES / "lvos"
    assert "--sam2-config and --checkpoint" in _error_line(capsys, src, "--split", "valid", "--engine", "sam2",
                                                           "--out", tmp_path / "p")
    assert "--checkpoint" in _error_line(capsys, src, "--split", "valid", "--engine", "sam2", "--sam2-config",
                                         "configs/sam2.1/sam2.1_hiera_t.yaml", "--out", tmp_path / "p")
    assert "not found" in _error_line(capsys, src, "--split", "valid", "--engine", "sam2", "--sam2-config", "c.yaml",
                                      "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "p")
    assert "--device applies only to --engine sam2" in _error_line(capsys, src, "--split", "valid", "--device",
                                                                   "cuda", "--out", tmp_path / "p")
    assert "pass --split" in _error_line(capsys, src, "--out", tmp_path / "p")
    assert "never written into their source" in _error_line(capsys, src, "--split", "valid", "--out",
                                                            src / "valid" / "pred")
    assert "--workers" in _error_line(capsys, src, "--split", "valid", "--workers", "0", "--out", tmp_path / "p")
    assert not (tmp_path / "p").exists() and not (src / "valid" / "pred").exists()


def test_a_split_without_masks_is_refused_per_video(tmp_path, capsys):
    """Long-RVOS test ships no masks in the samples: nothing to start from."""
    src = SAMPLES / "long_rvos"
    test = load(src, split="test")["test"]
    assert not test.video(test.video_ids()[0]).has_masks
    with pytest.raises(LongRVOSError, match="no masks"):
        propagate_dataset(src, tmp_path / "p", split="test")
    assert main(["propagate", str(src), "--split", "test", "--out", str(tmp_path / "q"), "--on-error", "skip"]) == 3
    assert "skipped" in capsys.readouterr().err


@pytest.mark.slow
def test_sam2_engine_options_reach_the_engine(tmp_path):
    """A tiny random-weight SAM2 saved as a checkpoint: the sam2 path runs and writes every frame."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from fixtures.sam2_tiny import CONFIG, OVERRIDES, stock_predictor
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": stock_predictor().state_dict()}, ckpt)
    src = generate("lvos", tmp_path / "lvos", num_videos=2, num_frames=4, max_objects=2, splits=["valid"])
    pred = tmp_path / "pred"
    report = propagate_dataset(src, pred, split="valid", engine="sam2",
                               engine_options={"config": CONFIG, "checkpoint": ckpt, "device": "cpu",
                                               "overrides": OVERRIDES})
    assert report.written == 2 and report.tracks == 3
    reader = load(src, split="valid")["valid"]
    for vid in reader.video_ids():
        assert len(list((pred / vid).iterdir())) == reader.video(vid).num_frames
