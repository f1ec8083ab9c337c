"""Missing and odd predictions: never a crash, always a warning; strict by default, official on request."""
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
    report = evaluate(_videos(), preds, protocol="long_rvos", missing="official", progress=False)
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
    report = evaluate(_videos("referring", "mevis"), preds, protocol="mevis", missing="official", progress=False)
    status = {k[1]: r["status"] for k, r in rows_of(report).items() if k[0] == "v"}
    assert status == {"0": "ok", "1": "dropped", "2": "dropped", "3": "dropped", "4": "dropped", "5": "dropped",
                      "6": "ok", "7": "ok"}
    assert rows_of(report)["w", "0"]["status"] == "zero"
    assert ("missing_frame", "drop") in problems(report, "v", "1")


def test_revos_official_policy_zeroes_any_defect(preds):
    report = evaluate(_videos("referring", "revos"), preds, protocol="revos", missing="official", progress=False)
    rows = rows_of(report)
    for exp in "12345":
        assert rows["v", exp]["status"] == "zero" and rows["v", exp]["A"] == 0.0


def test_strict_is_the_default_and_official_is_reported_beside_it(preds):
    report = evaluate(_videos(), preds, protocol="long_rvos", progress=False)
    rows = rows_of(report)
    got = {k[1]: (r["status"], r["J"]) for k, r in rows.items() if k[0] == "v"}
    # a missing, unreadable or wrong-sized frame is an empty mask: J [1, 0, 1] = 2/3
    assert got == {"0": ("ok", 1.0), "1": ("empty", pytest.approx(2 / 3)), "2": ("empty", pytest.approx(2 / 3)),
                   "3": ("zero", 0.0), "4": ("empty", pytest.approx(2 / 3)), "5": ("empty", pytest.approx(2 / 3)),
                   "6": ("ok", 1.0), "7": ("ok", 0.0)}
    assert rows["w", "0"]["status"] == "zero" and rows["w", "0"]["tIoU"] == 0.0
    # every expression counts: (1 + 4 * 2/3 + 0 + 1 + 0 + 0) / 9 = 14/27; the official handling drops five
    assert report.overall["J"] == pytest.approx(14 / 27)
    assert report.overall_official["J"] == pytest.approx((1 + 2 / 3 + 1 + 0 + 0) / 5)
    official = evaluate(_videos(), preds, protocol="long_rvos", missing="official", progress=False)
    assert report.overall_official == official.overall and official.overall_official == official.overall
    assert report.counts == {"expressions": 9, "scored": 7, "zero": 2, "dropped": 0, "videos": 2,
                             "unit_frames": report.counts["unit_frames"]}
    assert ("missing_frame", "empty") in problems(report, "v", "2")
    assert ("missing_expression", "zero") in problems(report, "v", "3")
    assert ("wrong_size", "empty") in problems(report, "v", "4")
    assert ("unreadable", "empty") in problems(report, "v", "5")
    assert ("missing_video", "zero") in problems(report, "w")
    # counts are frames: the missing expression's 3 and the missing video's 3 (one expression)
    assert [(w["video_id"], w["exp_id"], w["count"], w["frames"]) for w in report.warnings
            if w["problem"] in ("missing_expression", "missing_video")] == [("v", "3", 3, []), ("w", None, 3, [])]
    assert report.options["missing"] == "strict"


def test_the_report_header_says_how_much_strict_and_official_differ(preds, tmp_path):
    report = evaluate(_videos(), preds, protocol="long_rvos", progress=False)
    paths = report.write(tmp_path / "out" / "REPORT.json")
    doc = json.loads(paths["json"].read_text())
    assert doc["overall_official"]["J"] == pytest.approx(8 / 15)
    (diff,) = doc["differences"]
    strict_jf, official_jf = 100 * doc["overall"]["J&F"], 100 * doc["overall_official"]["J&F"]
    assert diff["topic"] == "missing_predictions"
    # a later, a first, a wrong-sized and a corrupt frame, and the 3 + 3 frames of the missing expression
    # and of the missing video
    assert diff["text"].endswith(f"10 defective prediction frame(s) (see warnings): J&F {strict_jf:.2f} here, "
                                 f"{official_jf:.2f} with the official handling (`overall_official`, "
                                 f"`--missing official`), a difference of {strict_jf - official_jf:+.2f}")
    md = paths["md"].read_text().splitlines()
    assert md[2:5] == ["Differences from the official script:", "", f"- {diff['text']}"]
    assert md[8].startswith(f"| **overall** | {100 * doc['overall']['J']:.2f} |")
    assert md[9].startswith("| overall, official handling of missing predictions | "
                            f"{100 * doc['overall_official']['J']:.2f} |")


def test_complete_predictions_state_that_strict_equals_official(tmp_path):
    video = _videos()[1]
    write_pngs(tmp_path, "w", "0", dict.fromkeys(NAMES, OBJ))
    report = evaluate([video], tmp_path, protocol="long_rvos", progress=False)
    assert report.overall == report.overall_official and report.overall["J"] == 1.0
    assert report.differences == [{"topic": "missing_predictions", "text": (
        "missing predictions: `--missing strict`: a missing, unreadable or wrong-sized prediction frame scores as "
        "an empty mask, a missing expression or video scores 0; no prediction is missing or defective, so every "
        "figure equals the official script's")}]
    assert "official handling" not in report.to_markdown().split("| **overall** |")[1]
    official = evaluate([video], tmp_path, protocol="long_rvos", missing="official", progress=False)
    assert official.differences == []


def test_unknown_policy_is_refused(preds):
    with pytest.raises(ValueError, match="missing must be one of"):
        evaluate(_videos(), preds, protocol="long_rvos", missing="zero", progress=False)


def test_rle_json_defects(tmp_path):
    rle = M.encode(OBJ)
    wrong = M.encode(np.zeros((4, 4), bool))
    data = {"v": {"0": [rle, rle, rle], "1": [rle, None, rle], "2": [rle, rle], "4": [rle, wrong, rle],
                  "5": [rle, {"bad": 1}, rle], "6": "nonsense", "7": [rle, rle, rle, rle]},
            "ghost": {}}
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(data))
    report = evaluate(_videos(), path, protocol="long_rvos", missing="official", progress=False)
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
    report = evaluate(_videos(), path, protocol="long_rvos", missing="official", progress=False)
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
    report = evaluate([video], tmp_path, protocol="lvos", lvos_version=2, missing="official", progress=False)
    row = report.rows[0]
    # scored frames 6 and 11: the RGB frame is scored as empty (official: the toolkit fails)
    assert (row["status"], row["J"]) == ("empty", 0.5)
    assert ("unreadable", "empty") in problems(report, "lv")


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_ground_truth_stops_the_run(tmp_path, workers):
    from dataclasses import replace

    from longrvos_data.errors import DataError
    from longrvos_data.schema import MaskSource

    class Broken(MaskSource):
        def masks(self, index):
            raise DataError("mask PNG cannot be decoded", file="gt.png", video="v", field="masks[1][2]")

    videos = _videos()
    videos[0] = replace(videos[0], mask_source=Broken())
    for v in videos:
        for e in v.expressions:
            write_pngs(tmp_path, v.video_id, e.exp_id, dict.fromkeys(NAMES, OBJ))
    with pytest.raises(DataError) as info:
        evaluate(videos, tmp_path, protocol="mevis", workers=workers, progress=False)
    assert str(info.value) == "gt.png: video 'v': field 'masks[1][2]': mask PNG cannot be decoded"
    assert (info.value.file, info.value.video, info.value.field) == ("gt.png", "v", "masks[1][2]")


def test_split_without_masks_is_a_clear_error(tmp_path):
    from dataclasses import replace

    from longrvos_data.errors import LongRVOSError
    video = replace(_videos()[0], mask_source=None)
    with pytest.raises(LongRVOSError, match="no ground-truth masks"):
        evaluate([video], tmp_path, protocol="mevis", progress=False)


def _long_video(frames=12):
    names = [f"{i:05d}" for i in range(frames)]
    return make_video("long", [{"1": OBJ}] * frames, [("a", "static", ("1",)), ("b", "static", ("1",))],
                      size=(10, 10), dataset="long_rvos", frame_names=names), names


@pytest.mark.parametrize("missing", ["strict", "official"])
def test_warning_counts_count_frames(tmp_path, missing):
    video, names = _long_video()
    write_pngs(tmp_path, "long", "a", dict.fromkeys(names, np.zeros((12, 10), bool)))    # 12 wrong-sized frames
    for n in names:                                                                       # 12 zero-byte files
        (tmp_path / "long" / "b").mkdir(parents=True, exist_ok=True)
        (tmp_path / "long" / "b" / f"{n}.png").write_bytes(b"")
    report = evaluate([video], tmp_path, protocol="long_rvos", missing=missing, progress=False)
    by_exp = {w["exp_id"]: w for w in report.warnings}
    assert set(by_exp) == {"a", "b"} and len(report.warnings) == 2
    assert (by_exp["a"]["problem"], by_exp["a"]["count"], by_exp["a"]["frames"]) == ("wrong_size", 12, names[:10])
    assert by_exp["a"]["message"] == "prediction size differs from the video's frame size: 10x12, the video is 10x10"
    assert (by_exp["b"]["problem"], by_exp["b"]["count"]) == ("unreadable", 12)
    assert by_exp["b"]["message"] == "prediction cannot be decoded: empty file (0 bytes)"
    cost = {"strict": "empty", "official": "drop"}[missing]
    assert by_exp["a"]["policy"] == by_exp["b"]["policy"] == cost
    # under strict every frame is an empty mask: J = 0 (the object is in every frame)
    assert [r["J"] for r in report.rows] == ([0.0, 0.0] if missing == "strict" else [None, None])


def test_zero_byte_and_non_image_predictions_are_listed_warnings(tmp_path):
    write_pngs(tmp_path, "v", "0", {"00000": OBJ, "00002": OBJ})
    (tmp_path / "v" / "0" / "00001.png").write_bytes(b"")                       # zero bytes
    write_pngs(tmp_path, "v", "1", {"00000": OBJ, "00001": OBJ})
    (tmp_path / "v" / "1" / "00002.png").write_bytes(b"this is no image\n")     # text under a PNG name
    video = _videos()[0]
    report = evaluate([video], tmp_path, protocol="long_rvos", progress=False)
    got = [(w["exp_id"], w["problem"], w["count"], w["frames"], w["policy"], w["message"]) for w in report.warnings
           if w["exp_id"] in ("0", "1")]
    assert got == [("0", "unreadable", 1, ["00001"], "empty", "prediction cannot be decoded: empty file (0 bytes)"),
                   ("1", "unreadable", 1, ["00002"], "empty", "prediction cannot be decoded: not an image")]
    rows = rows_of(report)
    assert rows["v", "0"]["J"] == rows["v", "1"]["J"] == pytest.approx(2 / 3)


def test_lvos_zero_byte_and_text_frames_are_listed_warnings(tmp_path):
    names = [f"{1 + 5 * i:08d}" for i in range(4)]
    rng = {"1": {"frame_range": {"start": 1, "end": 16, "frame_nums": 4}}}
    video = make_video("lv", [{"1": OBJ}] * 4, [], size=(10, 10), dataset="lvos", frame_names=names,
                       track_meta=rng, tracks=["1"])
    for n in names:
        M.write_palette_png(tmp_path / "lv" / f"{n}.png", OBJ.astype(np.uint8))
    (tmp_path / "lv" / f"{names[1]}.png").write_bytes(b"")
    (tmp_path / "lv" / f"{names[2]}.png").write_bytes(b"GIF? no")
    report = evaluate([video], tmp_path, protocol="lvos", lvos_version=2, progress=False)
    got = sorted((w["problem"], w["frames"], w["message"]) for w in report.warnings if w["video_id"] == "lv")
    assert got == [("unreadable", [names[1]], "prediction cannot be decoded: empty file (0 bytes)"),
                   ("unreadable", [names[2]], "prediction cannot be decoded: not an image")]
    # both scored slots (frames 6 and 11) are empty masks: J = 0
    assert (report.rows[0]["status"], report.rows[0]["J"]) == ("empty", 0.0)


def test_lvos_missing_video_scores_zero_when_strict(tmp_path):
    names = [f"{1 + 5 * i:08d}" for i in range(4)]
    rng = {"1": {"frame_range": {"start": 1, "end": 16, "frame_nums": 4}}}
    videos = [make_video(v, [{"1": OBJ if k else EMPTY} for k in range(4)], [], size=(10, 10), dataset="lvos",
                         frame_names=names, track_meta=rng, tracks=["1"]) for v in ("lv", "gone")]
    for n in names:
        M.write_palette_png(tmp_path / "lv" / f"{n}.png", OBJ.astype(np.uint8))
    report = evaluate(videos, tmp_path, protocol="lvos", lvos_version=2, progress=False)
    rows = {r["video_id"]: (r["status"], r["J"], r["V"]) for r in report.rows}
    assert rows == {"lv": ("ok", 1.0, 0.0), "gone": ("zero", 0.0, 0.0)}
    (gone,) = [w for w in report.warnings if w["video_id"] == "gone"]
    assert (gone["problem"], gone["count"], gone["policy"]) == ("missing_video", 4, "zero")   # its 4 PNGs
    official = evaluate(videos, tmp_path, protocol="lvos", lvos_version=2, missing="official", progress=False)
    # officially the toolkit stops; here the gone video's frames are empty masks: J 0 on frames 6 and 11
    assert {r["video_id"]: r["status"] for r in official.rows} == {"lv": "ok", "gone": "empty"}
    assert report.overall_official == official.overall
    assert [d["topic"] for d in official.differences] == ["missing_predictions"]
    assert official.differences[0]["text"].endswith(
        "where the official toolkit stops (a missing video or frame) or fails (an unreadable or wrong-sized frame) "
        "those frames are scored as empty masks instead")


def test_revos_strict_is_its_official_zero(preds):
    report = evaluate(_videos("referring", "revos"), preds, protocol="revos", progress=False)
    assert report.overall == report.overall_official
    assert {r["status"] for r in report.rows if r["exp_id"] in "12345"} == {"zero"}
    assert [d["topic"] for d in report.differences] == ["revos_binarised", "revos_r_denominator"]


def test_no_prediction_matching_the_ground_truth_is_an_error(tmp_path):
    from longrvos_data.errors import LongRVOSError
    write_pngs(tmp_path / "a", "other", "0", {"00000": OBJ})          # videos the split does not list
    with pytest.raises(LongRVOSError) as info:
        evaluate(_videos(), tmp_path / "a", protocol="long_rvos", progress=False)
    assert str(info.value) == (f"{tmp_path / 'a'}: no prediction matches the ground truth (videos, split 'valid': "
                               "9 expressions in 2 video(s)): it has none of the split's videos; expected e.g. "
                               f"{tmp_path / 'a' / 'v' / '0'}/<frame>.png")
    write_pngs(tmp_path / "b", "v", "obj1", {"00000": OBJ})            # the video, but not one of its expressions
    with pytest.raises(LongRVOSError, match="it has 1 of the split's videos but none of their expressions"):
        evaluate(_videos(), tmp_path / "b", protocol="long_rvos", missing="official", progress=False)
    (tmp_path / "c.json").write_text(json.dumps({"other": {"0": [None, None, None]}}))
    with pytest.raises(LongRVOSError, match="no prediction matches the ground truth"):
        evaluate(_videos(), tmp_path / "c.json", protocol="long_rvos", workers=2, progress=False)
