"""Each protocol on hand-made videos whose scores are worked out by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pytest

from evalcase import art, make_video, write_pngs
from longrvos_data import masks as M
from longrvos_data.eval import evaluate, unseen_videos

# 10 x 10 frames: boundary radius 1 (the plus-shaped disk).
OBJ = art("""
    ..........
    ..........
    ..####....
    ..####....
    ..####....
    ..........
    ..........
    ..........
    ..........
    ..........
""")
OTHER = art("""
    ..........
    ..........
    ..........
    ..........
    ..........
    ..........
    ......###.
    ......###.
    ..........
    ..........
""")
EMPTY = np.zeros((10, 10), bool)


def dot(y, x):
    m = EMPTY.copy()
    m[y, x] = True
    return m


def by_id(report):
    return {(r["video_id"], r.get("exp_id", r.get("track_id"))): r for r in report.rows}


def test_long_rvos_j_f_tiou_viou_and_kinds(tmp_path):
    # object "1" is present in frames 0 and 1, absent in frame 2
    video = make_video("v", [{"1": OBJ}, {"1": OBJ}, {}], [("0", "static", ("1",)), ("1", "dynamic", ("1",))],
                       size=(10, 10))
    # exp 0: exact, empty, empty   -> J = F = [1, 0, 1]; Tg = {0,1}, Tp = {0}: tIoU 1/2, vIoU 1/2
    write_pngs(tmp_path, "v", "0", {"00000": OBJ, "00001": EMPTY, "00002": EMPTY})
    # exp 1: exact, exact, a false-positive dot -> J = F = [1, 1, 0]; Tg = {0,1}, Tp = {0,1,2}: 2/3, 2/3
    write_pngs(tmp_path, "v", "1", {"00000": OBJ, "00001": OBJ, "00002": dot(8, 1)})
    report = evaluate([video], tmp_path, protocol="long_rvos", progress=False)
    rows = by_id(report)
    r0, r1 = rows["v", "0"], rows["v", "1"]
    assert (r0["J"], r0["F"], r0["tIoU"], r0["vIoU"]) == pytest.approx((2 / 3, 2 / 3, 1 / 2, 1 / 2))
    assert (r1["J"], r1["F"], r1["tIoU"], r1["vIoU"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 2 / 3))
    assert report.overall == pytest.approx({"J": 2 / 3, "F": 2 / 3, "J&F": 2 / 3, "tIoU": 7 / 12, "vIoU": 7 / 12})
    assert set(report.by_kind) == {"static", "dynamic"}
    assert report.by_kind["static"]["tIoU"] == pytest.approx(0.5)
    assert report.warnings == []


def test_multi_object_union_and_no_target_mevis(tmp_path):
    video = make_video("m", [{"a": OBJ, "b": OTHER}],
                       [("0", "referring", ("a", "b")), ("1", "no-target", ()), ("2", "no-target", ())],
                       size=(10, 10), dataset="mevis")
    write_pngs(tmp_path, "m", "0", {"00000": OBJ})        # J = 12 / (12 + 6)
    write_pngs(tmp_path, "m", "1", {"00000": EMPTY})      # nothing to find, nothing found: 1, 1
    write_pngs(tmp_path, "m", "2", {"00000": OTHER})      # a mask where there is none: 0, 0
    report = evaluate([video], tmp_path, protocol="mevis", progress=False)
    rows = by_id(report)
    assert rows["m", "0"]["J"] == pytest.approx(12 / 18)
    assert (rows["m", "1"]["J"], rows["m", "1"]["F"]) == (1.0, 1.0)
    assert (rows["m", "2"]["J"], rows["m", "2"]["F"]) == (0.0, 0.0)
    assert report.by_kind["no-target"]["J"] == 0.5
    # MeViS pools every expression, no-target included
    assert report.overall["J"] == pytest.approx((12 / 18 + 1 + 0) / 3)


def test_revos_accuracy_robustness_foreground_and_rounding(tmp_path):
    # FG = OBJ (12 px) + OTHER (6 px) = 18 pixels of 100
    video = make_video("r", [{"a": OBJ, "b": OTHER}],
                       [("0", "referring", ("a",)), ("1", "reasoning", ("b",)), ("2", "no-target", ())],
                       size=(10, 10), dataset="revos")
    fp = OBJ.copy()
    fp[8, 0:3] = True   # 3 false-positive pixels
    write_pngs(tmp_path, "r", "0", {"00000": fp})
    write_pngs(tmp_path, "r", "1", {"00000": OTHER})
    write_pngs(tmp_path, "r", "2", {"00000": dot(0, 0)})
    report = evaluate([video], tmp_path, protocol="revos", progress=False)
    rows = by_id(report)
    r0 = rows["r", "0"]
    assert r0["J"] == pytest.approx(12 / 15)
    assert r0["A"] == pytest.approx(1 - 3 / 100)
    assert r0["R"] == pytest.approx(1 - 3 / (18 + 1e-6))
    assert (rows["r", "1"]["J"], rows["r", "1"]["A"], rows["r", "1"]["R"]) == (1.0, 1.0, 1.0)
    # no-target rows are listed but enter no aggregate
    assert rows["r", "2"]["J"] == 0.0 and set(report.by_kind) == {"referring", "reasoning"}
    # the official script rounds each row to 0.01 % before the means: J 0.8 -> 80.0; R 0.833333 -> 83.33
    assert report.by_kind["referring"]["R"] == pytest.approx(0.8333)
    assert report.overall["J"] == pytest.approx((0.8 + 1.0) / 2)
    assert report.overall["R"] == pytest.approx((0.8333 + 1.0) / 2)
    assert any(w["problem"] == "kinds_not_aggregated" for w in report.warnings)


def test_revos_raw_reproduces_the_official_values(tmp_path):
    video = make_video("r", [{"a": OBJ}], [("0", "referring", ("a",)), ("1", "reasoning", ("a",))],
                       size=(10, 10), dataset="revos")
    write_pngs(tmp_path, "r", "0", {"00000": OBJ})       # a perfect 0/255 prediction
    write_pngs(tmp_path, "r", "1", {"00000": OBJ})
    binarised = by_id(evaluate([video], tmp_path, protocol="revos", progress=False))["r", "0"]
    raw = by_id(evaluate([video], tmp_path, protocol="revos", revos_raw=True, progress=False))["r", "0"]
    assert (binarised["A"], binarised["R"]) == (1.0, 1.0)
    # raw: 255 != 1 on the 12 object pixels -> A = 88/100; R: (1 - 1) * 255 = 0 -> 1
    assert raw["A"] == pytest.approx(0.88) and raw["R"] == 1.0
    assert raw["J"] == binarised["J"] == 1.0


LVOS_NAMES = [f"{1 + 5 * i:08d}" for i in range(5)]     # 00000001 .. 00000021


def _lvos_video(vid, meta=None):
    rng = {"1": {"frame_range": {"start": "00000001", "end": "00000021", "frame_nums": 5}}}
    return make_video(vid, [{"1": OBJ} for _ in LVOS_NAMES], [], size=(10, 10), dataset="lvos",
                      frame_names=LVOS_NAMES, track_meta=rng, tracks=["1"], meta=meta)


def _lvos_preds(root, vid, per_frame):
    for name, mask in zip(LVOS_NAMES, per_frame):
        M.write_palette_png(root / vid / f"{name}.png", mask.astype(np.uint8))


def test_lvos_frame_range_first_and_last_excluded_and_v(tmp_path):
    # range(1, 21, 5) = 1, 6, 11, 16; the first (1) is skipped and 21 is never reached:
    # slots = frame_nums - 2 = 3 for frames 6, 11, 16.
    seen_id = "seenvid1"
    unseen_id = sorted(unseen_videos(2))[0]
    for vid in (seen_id, unseen_id):
        # frame 1 and 21 are wrong on purpose: they must not count
        _lvos_preds(tmp_path, vid, [EMPTY, OBJ, OBJ, EMPTY if vid == seen_id else OBJ, EMPTY])
    videos = [_lvos_video(seen_id, {"attributes": ["occlusion"]}), _lvos_video(unseen_id, {"attributes": []})]
    report = evaluate(videos, tmp_path, protocol="lvos", lvos_version=2, progress=False)
    rows = by_id(report)
    seen = rows[seen_id, "1"]
    # J = F = [1, 1, 0] -> 2/3; V = sqrt(round(((1/3)^2 * 2 + (2/3)^2) / 3, 4)) = sqrt(0.2222)
    assert (seen["J"], seen["F"]) == pytest.approx((2 / 3, 2 / 3))
    assert seen["V"] == pytest.approx(math.sqrt(0.2222))
    unseen = rows[unseen_id, "1"]
    assert (unseen["J"], unseen["V"], unseen["unseen"]) == (1.0, 0.0, True)
    o = report.overall
    assert o["J_seen"] == pytest.approx(2 / 3) and o["J_unseen"] == 1.0
    assert o["J"] == pytest.approx((2 / 3 + 1) / 2)
    assert o["J&F"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4)
    assert o["V"] == pytest.approx((math.sqrt(0.2222) + 0) / 2)
    assert report.extra["by_attribute"]["occlusion"]["J"] == pytest.approx(2 / 3)
    assert report.rows_key == "objects"


def test_lvos_without_frame_range_uses_the_annotated_span(tmp_path):
    # the object is annotated in frames 1..3 of 5: scored on frame 2 only
    frames = [{}, {"1": OBJ}, {"1": OBJ}, {"1": OBJ}, {}]
    video = make_video("noframes", frames, [], size=(10, 10), dataset="lvos", frame_names=LVOS_NAMES,
                       tracks=["1"])
    _lvos_preds(tmp_path, "noframes", [OBJ, EMPTY, OBJ, EMPTY, OBJ])
    report = evaluate([video], tmp_path, protocol="lvos", lvos_version=1, progress=False)
    assert by_id(report)["noframes", "1"]["J"] == 1.0
    assert any(w["problem"] == "no_frame_range" for w in report.warnings)
    assert any(w["problem"] == "one_group" for w in report.warnings)


def test_lvos_inconsistent_frame_nums_is_reported(tmp_path):
    rng = {"1": {"frame_range": {"start": 1, "end": 21, "frame_nums": 3}}}
    video = make_video("bad", [{"1": OBJ} for _ in LVOS_NAMES], [], size=(10, 10), dataset="lvos",
                       frame_names=LVOS_NAMES, track_meta=rng, tracks=["1"])
    _lvos_preds(tmp_path, "bad", [OBJ] * 5)
    report = evaluate([video], tmp_path, protocol="lvos", lvos_version=2, progress=False)
    # one slot (frame 6); frame 11 is the skipped "last" and 16 would overflow the official array
    assert by_id(report)["bad", "1"]["J"] == 1.0
    assert any(w["problem"] == "bad_frame_range" for w in report.warnings)


def _revos_hand_predictions(root, pred):
    """Predictions for the hand-written ReVOS train split: r1/0 is anno 1 plus one false-positive pixel
    (row 3, column 5) in every frame; every other expression is exact (no-target: empty)."""
    import longrvos_data
    from fixtures import fixture
    base = fixture("revos_hand").build(root)
    videos = list(longrvos_data.load(base, split="train")["train"])
    for v in videos:
        for e in v.expressions:
            for i, f in enumerate(v.frames):
                target = v.target_mask(e, v.frame_masks(i))
                m = np.zeros((v.height, v.width), bool) if target is None else target.copy()
                if (v.video_id, e.exp_id) == ("r1", "0"):
                    m[3, 5] = True
                write_pngs(pred, v.video_id, e.exp_id, {f.name: m})
    return base, videos


@pytest.mark.parametrize("workers", [1, 2])
def test_revos_r_divides_by_mask_dict_foreground(tmp_path, ref, workers):
    import json
    base, videos = _revos_hand_predictions(tmp_path / "gt", tmp_path / "pred")
    report = evaluate(base, tmp_path / "pred", protocol="revos", split="train", workers=workers, progress=False)
    r0 = by_id(report)["r1", "0"]
    # FG_t from mask_dict_foreground.json: 3, 7 and 5 pixels (frame 2 is a list of two RLEs, one of them a
    # pixel no object covers); one false positive per frame
    assert r0["R"] == pytest.approx(np.mean([1 - 1 / (3 + 1e-6), 1 - 1 / (7 + 1e-6), 1 - 1 / (5 + 1e-6)]),
                                    abs=1e-12)
    fg = json.loads((base / "mask_dict_foreground.json").read_text())
    want = {(w["video_id"], w["exp_id"]): w for w in ref.score_referring(videos, tmp_path / "pred",
                                                                          protocol="revos", foreground=fg)}
    for key, row in by_id(report).items():
        assert (row["A"], row["R"]) == (pytest.approx(want[key]["A"], abs=1e-12),
                                        pytest.approx(want[key]["R"], abs=1e-12)), key
    texts = {d["topic"]: d["text"] for d in report.differences}
    assert texts["revos_r_denominator"] == ("ReVOS R divides by the foreground masks of mask_dict_foreground.json, "
                                            "as the official script (2 video(s))")
    assert texts["revos_binarised"].startswith("ReVOS A and R: predictions are binarised (non-zero = 1)")
    assert "revos_binarised" not in {d["topic"] for d in evaluate(
        base, tmp_path / "pred", protocol="revos", split="train", revos_raw=True, progress=False).differences}


def test_revos_r_falls_back_to_the_union_of_the_objects(tmp_path):
    base, _ = _revos_hand_predictions(tmp_path / "gt", tmp_path / "pred")
    (base / "mask_dict_foreground.json").unlink()
    report = evaluate(base, tmp_path / "pred", protocol="revos", split="train", progress=False)
    # the union of anno 1 and 2: 3, 7 and 4 pixels
    assert by_id(report)["r1", "0"]["R"] == pytest.approx(
        np.mean([1 - 1 / (3 + 1e-6), 1 - 1 / (7 + 1e-6), 1 - 1 / (4 + 1e-6)]), abs=1e-12)
    (text,) = [d["text"] for d in report.differences if d["topic"] == "revos_r_denominator"]
    assert text == ("ReVOS R divides by the union of the video's objects in this split, as mask_dict_foreground.json "
                    "was not found beside the expression file; the official script reads that file (2 video(s))")
    md = report.to_markdown().splitlines()
    assert md[2] == "Differences from the official script:" and f"- {text}" in md[4:7]


def test_revos_foreground_without_the_video_stops_the_run(tmp_path):
    import json

    from longrvos_data.errors import DataError
    base, _ = _revos_hand_predictions(tmp_path / "gt", tmp_path / "pred")
    fg = json.loads((base / "mask_dict_foreground.json").read_text())
    del fg["r2"]
    (base / "mask_dict_foreground.json").write_text(json.dumps(fg))
    with pytest.raises(DataError) as info:
        evaluate(base, tmp_path / "pred", protocol="revos", split="train", workers=2, progress=False)
    assert (info.value.file, info.value.video, info.value.field) == (
        str(base / "mask_dict_foreground.json"), "r2", "mask_dict_foreground[r2]")
