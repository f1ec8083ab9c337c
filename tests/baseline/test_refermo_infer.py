"""ReferMo inference: keyframe masks propagated segment by segment, written as eval reads them.

The pipeline is checked with a stand-in detector that returns the ground truth's keyframe
masks (so the scores measure the engine between keyframes) and with the tiny ReferMo model;
resuming, SIGKILL, rle-json, torchrun sharding and pre-annotation use real processes, files
and databases.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from longrvos_data.baseline.infer import (GroundTruthDetector, ReferMoDetector, infer, keyframe_j, segments)
from longrvos_data.errors import DataError, LongRVOSError
from longrvos_data.eval.runner import evaluate
from longrvos_data.loaders import load
from longrvos_data.synth import generate

CLI = [sys.executable, "-m", "longrvos_data.cli"]
SIZES = ((72, 96), (96, 128))
# dataset-level notes of the protocols, about the ground truth and not the predictions
PROTOCOL_NOTES = {"lvos": {"one_group"}, "revos": {"kinds_not_aggregated"}}


def synthetic(root: Path, fmt: str, *, videos: int = 2, frames: int = 40) -> Path:
    """A synthetic dataset whose videos are long enough for three keyframes (0, 12, 24)."""
    return generate(fmt, root / fmt, num_videos=videos, num_frames=frames, sizes=SIZES)


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) by relative path -> SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_segments_start_at_each_keyframe():
    assert segments([0, 12, 24], 40) == [(0, 12), (12, 24), (24, 40)]
    assert segments([0], 5) == [(0, 5)]
    with pytest.raises(ValueError, match="start at frame 0"):
        segments([12], 40)


@pytest.mark.parametrize("fmt,split,protocol", [("long_rvos", "valid", "long_rvos"), ("mevis", "valid_u", "mevis"),
                                                ("revos", "valid", "revos"), ("lvos", "valid", "lvos")])
def test_ground_truth_keyframes_and_the_classical_engine_reach_0_8(tmp_path, fmt, split, protocol):
    src = synthetic(tmp_path, fmt)
    out = tmp_path / "pred"
    report = infer(src, out, detector=GroundTruthDetector(), split=split)
    assert report.complete and report.written == 2
    meta = json.loads((out / "predictions.json").read_text())
    assert all(v["keyframes"] == [0, 12, 24] for v in meta["videos"].values())
    result = evaluate(src, out, protocol=protocol, split=split)
    assert result.overall["J&F"] >= 0.8
    assert {w["problem"] for w in result.warnings} <= PROTOCOL_NOTES.get(protocol, set()), result.warnings
    if fmt == "lvos":      # palette PNGs, one per frame, pixel = object id
        video = load(src, split=split)[split].video(sorted(meta["videos"])[0])
        assert sorted(p.name for p in (out / video.video_id).iterdir()) == [f"{n}.png" for n in video.frame_names]


def test_rle_json_scores_as_the_png_folder(tmp_path):
    src = synthetic(tmp_path, "long_rvos")
    png = infer(src, tmp_path / "png", detector=GroundTruthDetector(), split="valid")
    rle = infer(src, tmp_path / "rle", detector=GroundTruthDetector(), split="valid", output="rle-json")
    assert rle.masks == tmp_path / "rle" / "masks.json" and not any((tmp_path / "rle").glob("va*"))
    a = evaluate(src, png.predictions.parent, protocol="long_rvos", split="valid")
    b = evaluate(src, rle.masks, protocol="long_rvos", split="valid")
    assert a.overall == b.overall and not b.warnings
    masks = json.loads(rle.masks.read_text())
    video = load(src, split="valid")["valid"].video(sorted(masks)[0])
    assert all(len(seq) == video.num_frames for seq in masks[video.video_id].values())
    with pytest.raises(LongRVOSError, match="palette PNGs"):
        infer(synthetic(tmp_path, "lvos"), tmp_path / "x", detector=GroundTruthDetector(), split="valid",
              output="rle-json")


def test_a_rerun_skips_finished_videos_and_redoes_the_rest(tmp_path):
    src = synthetic(tmp_path, "long_rvos", videos=3, frames=14)
    out = tmp_path / "pred"
    ids = sorted(load(src, split="valid")["valid"].video_ids())
    first = infer(src, out, detector=GroundTruthDetector(), split="valid", video_ids=ids[:1])
    assert first.written == 1 and list(json.loads(first.predictions.read_text())["videos"]) == ids[:1]
    # a killed run's leftovers: a partial folder, and a record whose video folder is gone
    (out / f".{ids[1]}.partial" / "0").mkdir(parents=True)
    infer(src, out, detector=GroundTruthDetector(), split="valid", video_ids=ids[2:])
    shutil.rmtree(out / ids[2])
    again = infer(src, out, detector=GroundTruthDetector(), split="valid")
    assert (again.written, again.skipped, again.complete) == (2, 1, True)
    assert list(json.loads(again.predictions.read_text())["videos"]) == ids
    assert not (out / f".{ids[1]}.partial").exists()
    clean = infer(src, tmp_path / "clean", detector=GroundTruthDetector(), split="valid")
    assert tree(out) == tree(clean.predictions.parent)


@pytest.mark.slow
def test_sigkill_midway_then_a_rerun_gives_the_clean_runs_folder(tmp_path):
    src = synthetic(tmp_path, "long_rvos", videos=6, frames=60)
    out = tmp_path / "pred"
    cmd = CLI + ["baseline", "infer", str(src), "--split", "valid", "--detector", "ground-truth", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / ".infer").glob("*.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / ".infer").glob("*.json")))
    assert 1 <= done < 6, "the run was not killed midway"
    assert not (out / "predictions.json").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{done} already finished" in r.stdout
    clean = tmp_path / "clean"
    r = subprocess.run(cmd[:-1] + [str(clean)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(clean)


@pytest.mark.slow
def test_two_torchrun_ranks_write_the_one_process_folder_byte_for_byte(tmp_path):
    pytest.importorskip("transformers")
    from longrvos_data.baseline.config import load_config
    from longrvos_data.baseline.train import train

    src = synthetic(tmp_path, "mevis", videos=3, frames=26)
    run = tmp_path / "run"
    train(src, run, config=load_config("refermo-tiny"), max_steps=2)
    base = ["baseline", "infer", str(src), "--split", "valid_u", "--checkpoint", str(run), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}    # torchrun's default for each rank, so both runs compute alike
    one = subprocess.run(CLI + base + ["--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300,
                         env=env)
    assert one.returncode == 0, one.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port()), "-m", "longrvos_data.cli"]
    two = subprocess.run(launcher + base + ["--out", str(tmp_path / "two")], capture_output=True, text=True,
                         timeout=300, env=env)
    assert two.returncode == 0, two.stderr
    assert "rank 0/2: 2 video(s) written" in two.stdout and "rank 1/2: 1 video(s) written" in two.stdout
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
    meta = json.loads((tmp_path / "two" / "predictions.json").read_text())
    assert meta["detector"]["checkpoint"]["file"] == "step_00000002.pt" and len(meta["videos"]) == 3
    assert all(e["query"] is not None for v in meta["videos"].values() for e in v["expressions"].values())


def test_into_project_pre_annotates_with_model_refermo(tmp_path):
    from longrvos_data.annotation.project import init_project
    from longrvos_data.annotation.store import Store

    src = synthetic(tmp_path, "long_rvos", videos=1, frames=14)
    bare = tmp_path / "bare"                     # the same videos, not annotated yet
    (bare / "valid").mkdir(parents=True)
    shutil.copytree(src / "valid" / "JPEGImages", bare / "valid" / "JPEGImages")
    shutil.copy(src / "valid" / "meta_expressions.json", bare / "valid")
    project = tmp_path / "project"
    init_project(project, bare, split="valid")
    report = infer(src, tmp_path / "pred", detector=GroundTruthDetector(), split="valid", into_project=project)
    with Store.open(project) as store:
        rows = dict(store.con.execute("SELECT provenance, COUNT(*) FROM cells GROUP BY provenance").fetchall())
    video = load(src, split="valid")["valid"].video(load(src, split="valid")["valid"].video_ids()[0])
    assert report.project_cells == rows["model:refermo"] == 14 * len(video.expressions)
    # a project that does not exist yet is made from SRC; its annotated cells are never replaced
    made = infer(src, tmp_path / "pred", detector=GroundTruthDetector(), split="valid",
                 into_project=tmp_path / "new")
    with Store.open(tmp_path / "new") as store:
        rows = dict(store.con.execute("SELECT provenance, COUNT(*) FROM cells GROUP BY provenance").fetchall())
    assert made.skipped == 1 and rows.get("model:refermo", 0) == made.project_cells and rows["imported"] > 0


def test_a_missing_motion_file_names_the_file_and_the_video(tmp_path):
    src = synthetic(tmp_path, "long_rvos", videos=1, frames=14)
    with pytest.raises(DataError, match=r"no motion file .*video") as err:
        infer(src, tmp_path / "pred", detector=GroundTruthDetector(), split="valid", motion_dir=tmp_path / "none")
    assert err.value.file.endswith(".npz") and err.value.video


def test_cli_refuses_what_cannot_work(tmp_path):
    src = synthetic(tmp_path, "long_rvos", videos=1, frames=14)
    base = CLI + ["baseline", "infer", str(src), "--split", "valid", "--out", str(tmp_path / "p")]
    for extra, message in ((["--detector", "refermo"], "--checkpoint is required"),
                           (["--detector", "ground-truth", "--sam2-checkpoint", "x.pt"], "only to --engine sam2"),
                           (["--checkpoint", str(tmp_path / "missing.pt")], "missing.pt")):
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


# -- the tiny model ---------------------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from longrvos_data.baseline.inputs import tokenizer_for
    from longrvos_data.baseline.model import build_model

    torch.manual_seed(0)
    model = build_model("refermo-tiny")
    return model, tokenizer_for(model.config)


def test_refermo_keyframe_masks_whether_features_are_kept_or_recomputed(tmp_path, tiny):
    from longrvos_data.baseline.motion import extract

    model, tok = tiny
    src = synthetic(tmp_path, "long_rvos", videos=1, frames=40)
    video = load(src, split="valid")["valid"].video(sorted(load(src, split="valid")["valid"].video_ids())[0])
    motion = extract(video)
    keys = list(motion.keyframes)
    kept = list(ReferMoDetector(model, tok).detect(video, keys, motion))           # 3 keyframes in one chunk
    whole = model.config
    model.config = dataclasses.replace(whole, chunk_size=2)                        # two chunks: recomputed
    try:
        again = list(ReferMoDetector(model, tok).detect(video, keys, motion))
    finally:
        model.config = whole
    assert [d.exp_id for d in kept] == [e.exp_id for e in video.expressions]
    for a, b in zip(kept, again):
        assert len(a.masks) == len(keys) and a.query == b.query
        assert np.allclose(a.keyframe_scores, b.keyframe_scores, atol=1e-5)
        assert all(0 <= s <= 1 for s in a.keyframe_scores)
    assert 0.0 <= float(np.mean(keyframe_j(video, keys, kept))) <= 1.0


def test_train_and_infer_from_the_command_line(tmp_path):
    """The demo's path: train 2 steps, resume to 3 with the run's own config, predict from the run folder."""
    run, pred = tmp_path / "run", tmp_path / "pred"
    samples = Path(__file__).resolve().parents[2] / "samples" / "long_rvos"
    train = CLI + ["baseline", "train", str(samples), "--out", str(run), "--no-progress"]
    r = subprocess.run(train + ["--config", "refermo-tiny", "--max-steps", "2"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "2 step(s)" in r.stdout, r.stderr
    r = subprocess.run(train + ["--max-steps", "3", "--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "step_00000003.pt" in r.stdout, r.stderr
    r = subprocess.run(train + ["--config", "refermo-tiny"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "holds checkpoints already" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(train[:-3] + ["--out", str(tmp_path / "other"), "--config", "refermo-huge"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "unknown ReferMo config 'refermo-huge'" in r.stderr
    r = subprocess.run(CLI + ["baseline", "infer", str(samples), "--split", "valid", "--checkpoint", str(run),
                              "--format", "rle-json", "--out", str(pred), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "masks.json written" in r.stdout, r.stderr
    report = evaluate(samples, pred / "masks.json", protocol="long_rvos", split="valid")
    assert not report.warnings and 0.0 <= report.overall["J&F"] <= 1.0


def test_no_target_and_min_score_predict_empty(tmp_path):
    src = synthetic(tmp_path, "mevis", videos=1, frames=14)
    report = infer(src, tmp_path / "pred", detector=GroundTruthDetector(), split="valid_u")
    video = load(src, split="valid_u")["valid_u"].video(load(src, split="valid_u")["valid_u"].video_ids()[0])
    record = json.loads(report.predictions.read_text())["videos"][video.video_id]["expressions"]
    no_target = [e.exp_id for e in video.expressions if e.kind == "no-target"]
    assert no_target and all(record[x]["empty"] for x in no_target)
    assert not any(cv2.imread(str(tmp_path / "pred" / video.video_id / x / f"{n}.png"), cv2.IMREAD_GRAYSCALE).any()
                   for x in no_target for n in video.frame_names)
    low = infer(src, tmp_path / "low", detector=GroundTruthDetector(), split="valid_u", min_score=2.0)
    meta = json.loads(low.predictions.read_text())
    assert meta["min_score"] == 2.0 and all(e["empty"] for e in meta["videos"][video.video_id]["expressions"].values())


def test_shared_backbone_features_change_nothing(tiny):
    """The detector runs Swin once per chunk for all of a video's expressions: the same encoder output."""
    model, tok = tiny
    model.eval()
    gen = torch.Generator().manual_seed(0)
    px = torch.randn(2, 3, 64, 96, generator=gen)
    mask = torch.ones(2, 64, 96, dtype=torch.bool)
    motion = torch.randn(2, 3, 2, 4, 6, generator=gen)
    valid = torch.ones(2, 3, 4, 6, dtype=torch.bool)
    ids = ReferMoDetector(model, tok).tokenizer_inputs("the red car", "cpu")
    text = model.encode_text(ids["input_ids"], ids["attention_mask"]).per_frame(2)
    with torch.no_grad():
        a = model.encode_frames(px, mask, text, motion, valid, layers=[1])
        b = model.encode_frames(px, mask, text, motion, valid, layers=[1], features=model.backbone_features(px))
    assert torch.equal(a.hs[0], b.hs[0]) and torch.equal(a.boxes[0], b.boxes[0])
    assert all(torch.equal(x, y) for x, y in zip(a.memory, b.memory)) and torch.equal(a.stride4, b.stride4)
