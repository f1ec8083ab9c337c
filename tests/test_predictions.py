"""Prediction writers: what eval reads back, overlaps, unions, no-target, atomic per video, resume."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from longrvos_data.errors import DataError, LongRVOSError
from longrvos_data.eval import evaluate
from longrvos_data.loaders import load
from longrvos_data.predictions import (IssueLog, LvosPngFolder, PngFolder, is_written, layout_for, video_writer,
                                       write_video)
from longrvos_data.schema import Expression, Frame, Track, Video
from longrvos_data.synth import generate

H, W = 12, 16


def _video(dataset: str, expressions=(), tracks=("1", "2"), frames: int = 3) -> Video:
    return Video(dataset=dataset, split="valid", video_id="v1", frames=[Frame(f"{1 + 5 * i:08d}", None)
                                                                        for i in range(frames)],
                 height=H, width=W, tracks=[Track(t) for t in tracks], expressions=expressions)


def _box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_lvos_palette_overlap_goes_to_the_higher_score(tmp_path):
    video = _video("lvos")
    a, b = _box(0, 8, 0, 8), _box(4, 12, 4, 12)
    with video_writer(tmp_path, video) as w:
        assert w.layout == "lvos" and layout_for(video) == "lvos"
        w.write_frame(0, {"1": (a, 0.9), "2": (b, 0.4)})
        w.write_frame(1, {"1": (a, 0.2), "2": (b, 0.7)})
        w.write_frame(2, {"1": (None, 1.0), "2": (b, 0.1)})
    with Image.open(tmp_path / "v1" / "00000001.png") as im:
        assert im.mode == "P"
    f0, f1, f2 = (_png(tmp_path / "v1" / f"{n}.png") for n in ("00000001", "00000006", "00000011"))
    assert f0[5, 5] == 1 and f1[5, 5] == 2                      # the overlap, both ways
    assert f0[10, 10] == 2 and f1[1, 1] == 1 and f0[0, 15] == 0
    assert set(np.unique(f2)) == {0, 2}                         # an absent track paints nothing
    # and eval reads it as the object masks
    preds = LvosPngFolder(tmp_path).open(video, IssueLog("v1"))
    assert (preds.read("1", 0, "00000001").mask == a).all() and (preds.read("2", 0, "00000001").mask == b & ~a).all()
    assert (preds.read("2", 1, "00000006").mask == b).all()


def test_lvos_refuses_ids_a_pixel_cannot_hold_and_wrong_sizes(tmp_path):
    with pytest.raises(DataError, match="tracks.obj"):
        video_writer(tmp_path, _video("lvos", tracks=("1", "obj")))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match=r"frames\[0\]\.1"), video_writer(tmp_path, _video("lvos")) as w:
        w.write_frame(0, {"1": np.zeros((H, W + 1), bool)})
    with pytest.raises(DataError, match="unknown track"), video_writer(tmp_path, _video("lvos")) as w:
        w.write_frame(0, {"9": _box(0, 2, 0, 2)})
    assert list(tmp_path.iterdir()) == []        # neither the video nor its .partial


def test_referring_union_per_expression_and_empty_no_target(tmp_path):
    exps = [Expression("0", "left", ("1",), "referring"), Expression("1", "both", ("1", "2"), "referring"),
            Expression("2", "nothing", (), "no-target")]
    video = _video("mevis", exps)
    a, b = _box(0, 4, 0, 4), _box(6, 10, 6, 10)
    write_video(tmp_path, video, [(0, {"1": (a, 0.5), "2": (b, 0.5)}), (1, {"2": b})])  # frame 2 never given
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["0", "1", "2"]
    for exp in ("0", "1", "2"):
        assert sorted(p.name for p in (tmp_path / "v1" / exp).iterdir()) == ["00000001.png", "00000006.png",
                                                                            "00000011.png"]
    assert (_png(tmp_path / "v1/0/00000001.png") == np.where(a, 255, 0)).all()
    assert (_png(tmp_path / "v1/1/00000001.png") == np.where(a | b, 255, 0)).all()
    assert not _png(tmp_path / "v1/0/00000006.png").any()      # its track is absent there
    assert (_png(tmp_path / "v1/1/00000006.png") == np.where(b, 255, 0)).all()
    for name in ("00000001", "00000006", "00000011"):
        assert not _png(tmp_path / f"v1/2/{name}.png").any()
    assert not _png(tmp_path / "v1/1/00000011.png").any()
    preds = PngFolder(tmp_path).open(video, IssueLog("v1"))
    assert (preds.read("1", 0, "00000001").mask > 0).sum() == a.sum() + b.sum()


def test_a_failed_video_leaves_nothing_and_a_leftover_partial_is_redone(tmp_path):
    video = _video("lvos")
    with pytest.raises(KeyboardInterrupt):
        with video_writer(tmp_path, video) as w:
            w.write_frame(0, {"1": _box(0, 2, 0, 2)})
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    leftover = tmp_path / ".v1.partial"          # a killed run's folder, with a stale frame
    leftover.mkdir()
    (leftover / "00000001.png").write_bytes(b"stale")
    (leftover / "junk.txt").write_text("x")
    write_video(tmp_path, video, [(0, {"2": _box(0, 2, 0, 2)})])
    assert not leftover.exists() and is_written(tmp_path, "v1")
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["00000001.png", "00000006.png", "00000011.png"]
    assert _png(tmp_path / "v1/00000001.png")[0, 0] == 2


def test_a_half_written_video_is_invisible_to_eval(tmp_path):
    """Eval skips hidden folders: a .partial is no video at all, never a half one."""
    gt = generate("lvos", tmp_path / "gt", num_videos=1, num_frames=6, splits=["valid"])
    pred = tmp_path / "pred"
    reader = load(gt, split="valid")["valid"]
    video = reader.video(reader.video_ids()[0])
    w = video_writer(pred, video)
    w.write_frame(0, video.frame_masks(0))
    assert not is_written(pred, video.video_id)
    with pytest.raises(LongRVOSError, match="none of the split's videos"):
        evaluate(gt, pred, protocol="lvos", split="valid")
    w.commit()
    full = write_video(pred, video, ((i, video.frame_masks(i)) for i in range(video.num_frames)))
    assert full == pred / video.video_id
    assert evaluate(gt, pred, protocol="lvos", split="valid").overall["J&F"] == pytest.approx(1.0)


def test_one_mask_per_expression_in_both_layouts(tmp_path):
    """A referring model's output (one mask per expression): its own PNG, or for LVOS its object's id."""
    exps = [Expression("0", "left", ("1",), "referring"), Expression("1", "both", ("1", "2"), "referring")]
    video = _video("mevis", exps)
    a, b = _box(0, 8, 0, 8), _box(4, 12, 4, 12)
    with video_writer(tmp_path / "ref", video) as w:
        w.write_expressions(0, {"0": (a, 0.5), "1": b})
        w.write_expressions(1, {"1": None})
    assert (_png(tmp_path / "ref" / "v1" / "1" / "00000001.png") == b * 255).all()   # b as given, not a union
    assert not _png(tmp_path / "ref" / "v1" / "0" / "00000006.png").any()
    assert not _png(tmp_path / "ref" / "v1" / "1" / "00000011.png").any()              # never given: empty
    caps = [Expression("0", "the dog", ("1",), "caption"), Expression("1", "the dog again", ("1",), "caption"),
            Expression("2", "the cat", ("2",), "caption")]
    lvos = _video("lvos", caps)
    with video_writer(tmp_path / "lvos", lvos) as w:
        w.write_expressions(0, {"0": (a, 0.2), "1": (b, 0.9), "2": None})
    f0 = _png(tmp_path / "lvos" / "v1" / "00000001.png")
    assert (f0 == np.where(b, 1, 0)).all()              # object 1 takes its higher-scoring caption
    with pytest.raises(DataError, match=r"unknown expression '7'"), video_writer(tmp_path / "x", video) as w:
        w.write_expressions(0, {"7": a})
    with pytest.raises(DataError, match="names 2 objects"), \
            video_writer(tmp_path / "y", _video("lvos", [Expression("0", "both", ("1", "2"), "caption")])) as w:
        w.write_expressions(0, {"0": a})
    with pytest.raises(DataError, match=r"frames\[0\]\.expressions\.0"), video_writer(tmp_path / "z", video) as w:
        w.write_expressions(0, {"0": np.zeros((H + 1, W), bool)})
    assert not (tmp_path / "x" / "v1").exists() and not (tmp_path / "z" / "v1").exists()
