"""Missing and odd predictions: never a crash, always a warning, the official policy by default."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from evalcase import art, make_video, write_pngs
from longrvos_data import masks as M
from longrvos_data.eval import evaluate

OBJ = art("""
    ..........
    ..####....
    ..####....
    ..........
    ..........
    ..........
    ..........
    ..........
    ..........
    ..........
""")
EMPTY = np.zeros((10, 10), bool)
NAMES = ["00000", "00001", "00002"]


def _videos(kind="static", dataset="long_rvos"):
    exps = [(str(k), kind, ("1",)) for k in range(8)]
    return [make_video("v", [{"1": OBJ}] * 3, exps, size=(10, 10), dataset=dataset),
            make_video("w", [{"1": OBJ}] * 3, [("0", kind, ("1",))], size=(10, 10), dataset=dataset)]


@pytest.fixture()
def preds(tmp_path):
    root = tmp_path / "pred"
    write_pngs(root, "v", "0", dict.fromkeys(NAMES, OBJ))                           # complete, exact
    write_pngs(root, "v", "1", {"00000": OBJ, "00002": OBJ})                        # later frame missing
    write_pngs(root, "v", "2", {"00001": OBJ, "00002": OBJ})                        # first frame missing
    # "3": no folder at all
    write_pngs(root, "v", "4", {"00000": OBJ, "00001": np.zeros((12, 10), bool), "00002": OBJ})  # wrong size
    write_pngs(root, "v", "5", {"00000": OBJ, "00001": OBJ})
    (root / "v" / "5" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")           # corrupt
    for name in NAMES:                                                               # RGB: red object
        rgb = np.zeros((10, 10, 3), np.uint8)
        rgb[OBJ] = (0, 0, 255)
        (root / "v" / "6").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "v" / "6" / f"{name}.png"), rgb)
        (root / "v" / "7").mkdir(parents=True, exist_ok=True)                        # 16-bit 0/1
        cv2.imwrite(str(root / "v" / "7" / f"{name}.png"), OBJ.astype(np.uint16))
    M.write_binary_png(root / "v" / "0" / "99999.png", OBJ)                          # extra frame
    write_pngs(root, "v", "zz", {"00000": OBJ})                                      # extra expression
    write_pngs(root, "ghost", "0", {"00000": OBJ})                                   # extra video
    # video "w": no folder (missing video)
    return root


def rows_of(report):
    return {(r["video_id"], r["exp_id"]): r for r in report.rows}


def problems(report, video=None, exp=None):
    return {(w["problem"], w["policy"]) for w in report.warnings
            if (video is None or w["video_id"] == video) and (exp is None or w["exp_id"] == exp)}


def test_long_rvos_official_policy(preds):
    report = evaluate(_videos(), preds, protocol="long_rvos", progress=False)
    rows = rows_of(report)
    status = {k[1]: r["status"] for k, r in rows.items() if k[0] == "v"}
    assert status == {"0": "ok", "1": "empty", "2": "dropped", "3": "dropped", "4": "dropped", "5": "dropped",
                      "6": "ok", "7": "ok"}
    assert rows["v", "1"]["J"] == pytest.approx(2 / 3)          # missing later frame scored empty: [1, 0, 1]
    assert rows["v", "2"]["J"] is None                           # the official script crashes on it
    assert rows["v", "6"]["J"] == 1.0                            # RGB read as luminance: red is non-zero
    assert rows["v", "7"]["J"] == 0.0                            # 16-bit 0/1 becomes 0 in 8 bits
    assert rows["w", "0"]["status"] == "zero" and rows["w", "0"]["J"] == 0.0 and rows["w", "0"]["tIoU"] == 0.0
    assert ("missing_frame", "empty") in problems(report, "v", "1")
    assert ("missing_frame", "drop") in problems(report, "v", "2")
    assert ("missing_expression", "drop") in problems(report, "v", "3")
    assert ("wrong_size", "drop") in problems(report, "v", "4")
    assert ("unreadable", "drop") in problems(report, "v", "5")
    assert ("converted", "none") in problems(report, "v", "6")
    assert ("converted", "none") in problems(report, "v", "7")
    assert ("missing_video", "zero") in problems(report, "w")
    extra = {(w["video_id"], w["exp_id"]) for w in report.warnings if w["problem"] == "extra"}
    assert {("v", "0"), ("v", "zz"), ("ghost", None)} <= extra
    missing = [w for w in report.warnings if w["problem"] == "missing_frame" and w["exp_id"] == "1"]
    assert missing[0]["frames"] == ["00001"] and missing[0]["count"] == 1
    # the mean leaves the dropped rows out: (1 + 2/3 + 1 + 1 + 0 + 0) / 6 with w/0 scored 0
    assert report.overall["J"] == pytest.approx((1 + 2 / 3 + 1 + 0 + 0) / 5)
    assert report.counts == {"expressions": 9, "scored": 4, "zero": 1, "dropped": 4, "videos": 2,
                             "unit_frames": report.counts["unit_frames"]}


def test_mevis_official_policy_drops_any_defect(preds):
    report = evaluate(_videos("referring", "mevis"), preds, protocol="mevis", progress=False)
    status = {k[1]: r["status"] for k, r in rows_of(report).items() if k[0] == "v"}
    assert status == {"0": "ok", "1": "dropped", "2": "dropped", "3": "dropped", "4": "dropped", "5": "dropped",
                      "6": "ok", "7": "ok"}
    assert rows_of(report)["w", "0"]["status"] == "zero"
    assert ("missing_frame", "drop") in problems(report, "v", "1")


def test_revos_official_policy_zeroes_any_defect(preds):
    report = evaluate(_videos("referring", "revos"), preds, protocol="revos", progress=False)
    rows = rows_of(report)
    for exp in "12345":
        assert rows["v", exp]["status"] == "zero" and rows["v", exp]["A"] == 0.0


@pytest.mark.parametrize("policy, expected", [
    ("zero", {"1": ("zero", 0.0), "2": ("zero", 0.0), "3": ("zero", 0.0)}),
    ("empty", {"1": ("empty", 2 / 3), "2": ("empty", 2 / 3), "3": ("empty", 0.0)}),
    ("drop", {"1": ("dropped", None), "2": ("dropped", None), "3": ("dropped", None)}),
])
def test_missing_override(preds, policy, expected):
    report = evaluate(_videos(), preds, protocol="long_rvos", missing=policy, progress=False)
    rows = rows_of(report)
    for exp, (status, j) in expected.items():
        assert rows["v", exp]["status"] == status
        assert rows["v", exp]["J"] == (pytest.approx(j) if j is not None else None)
    assert all(w["policy"] in (policy, "none") for w in report.warnings)


def test_rle_json_defects(tmp_path):
    rle = M.encode(OBJ)
    wrong = M.encode(np.zeros((4, 4), bool))
    data = {"v": {"0": [rle, rle, rle], "1": [rle, None, rle], "2": [rle, rle], "4": [rle, wrong, rle],
                  "5": [rle, {"bad": 1}, rle], "6": "nonsense", "7": [rle, rle, rle, rle]},
            "ghost": {}}
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(data))
    report = evaluate(_videos(), path, protocol="long_rvos", progress=False)
    rows = rows_of(report)
    assert rows["v", "0"]["J"] == 1.0
    assert rows["v", "1"]["J"] == pytest.approx(2 / 3) and rows["v", "1"]["status"] == "ok"   # null = empty
    assert rows["v", "2"]["status"] == "empty"             # short list: the last frame is missing
    assert rows["v", "3"]["status"] == "dropped"           # no entry
    assert rows["v", "4"]["status"] == "dropped"           # wrong size
    assert rows["v", "5"]["status"] == "dropped"           # not an RLE
    assert rows["v", "6"]["status"] == "dropped"           # not a list
    assert rows["v", "7"]["J"] == 1.0                      # extra entries are ignored, and reported
    assert rows["w", "0"]["status"] == "zero"              # missing video
    assert ("extra", "none") in problems(report, "v", "7")
    assert any(w["video_id"] == "ghost" and w["problem"] == "extra" for w in report.warnings)


def test_corrupt_prediction_json_is_a_clear_error(tmp_path):
    from longrvos_data.errors import LongRVOSError
    path = tmp_path / "preds.json"
    path.write_text('{"v": {"0": [')
    with pytest.raises(LongRVOSError, match="invalid prediction JSON"):
        evaluate(_videos(), path, protocol="long_rvos", progress=False)


def test_missing_prediction_folder_is_a_clear_error(tmp_path):
    from longrvos_data.errors import LongRVOSError
    with pytest.raises(LongRVOSError, match="not found"):
        evaluate(_videos(), tmp_path / "nope", protocol="long_rvos", progress=False)


def test_rle_counts_beyond_the_frame_are_unreadable(tmp_path):
    rle = M.encode(OBJ)
    data = {"v": {str(k): [rle, rle, rle] for k in range(8)}, "w": {"0": [rle, rle, rle]}}
    data["v"]["1"] = [rle, {"size": [10, 10], "counts": [5, 200]}, rle]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(data))
    report = evaluate(_videos(), path, protocol="long_rvos", progress=False)
    assert rows_of(report)["v", "1"]["status"] == "dropped"
    assert ("unreadable", "drop") in problems(report, "v", "1")


def test_lvos_rgb_prediction_is_unreadable_not_a_crash(tmp_path):
    from evalcase import make_video
    names = [f"{1 + 5 * i:08d}" for i in range(4)]
    rng = {"1": {"frame_range": {"start": 1, "end": 16, "frame_nums": 4}}}
    video = make_video("lv", [{"1": OBJ}] * 4, [], size=(10, 10), dataset="lvos", frame_names=names,
                       track_meta=rng, tracks=["1"])
    for n in names:
        M.write_palette_png(tmp_path / "lv" / f"{n}.png", OBJ.astype(np.uint8))
    rgb = np.zeros((10, 10, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "lv" / f"{names[1]}.png"), rgb)    # frame 6: the first scored frame
    report = evaluate([video], tmp_path, protocol="lvos", lvos_version=2, progress=False)
    row = report.rows[0]
    # scored frames 6 and 11: the RGB frame is scored as empty (official: the toolkit fails)
    assert (row["status"], row["J"]) == ("empty", 0.5)
    assert ("unreadable", "empty") in problems(report, "lv")


def test_unreadable_ground_truth_drops_the_video_with_a_warning(tmp_path):
    from longrvos_data.errors import DataError
    from longrvos_data.schema import MaskSource

    class Broken(MaskSource):
        def masks(self, index):
            raise DataError("mask PNG cannot be decoded", file="gt.png", video="v")

    from dataclasses import replace
    video = replace(_videos()[0], mask_source=Broken())
    write_pngs(tmp_path, "v", "0", dict.fromkeys(NAMES, OBJ))
    report = evaluate([video], tmp_path, protocol="mevis", progress=False)
    assert {r["status"] for r in report.rows} == {"dropped"}
    assert any(w["problem"] == "ground_truth_error" and w["policy"] == "drop" for w in report.warnings)


def test_split_without_masks_is_a_clear_error(tmp_path):
    from dataclasses import replace

    from longrvos_data.errors import LongRVOSError
    video = replace(_videos()[0], mask_source=None)
    with pytest.raises(LongRVOSError, match="no ground-truth masks"):
        evaluate([video], tmp_path, protocol="mevis", progress=False)
