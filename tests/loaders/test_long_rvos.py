"""Long-RVOS loader and writer: hand-written fixture, generated round trips, detection, bad inputs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import longrvos_data
from longrvos_data import DataError
from longrvos_data.converters import long_rvos as writer
from longrvos_data.loaders import long_rvos
from longrvos_data.schema import Expression
from longrvos_data.synth import generate, synth_splits, synth_videos
from longrvos_data.validate import validate

from fixtures import assert_masks, fixture, grid


hand = fixture("long_rvos_hand")


# Expected masks of train/vidA, frame by frame, written independently of the fixture's art.
EXPECTED_A = [
    {"1": grid("##....", "##....", "......", "......"),
     "2": grid("......", "......", "...###", "...###"),
     "3": grid("......", "......", "#.....", "#.....")},
    {"1": grid(".##...", ".##...", "......", "......"),
     "2": grid("......", "......", "......", "......")},          # present but empty
    {"2": grid("......", "......", "..###.", "..###.")},          # 1 has left (no PNG)
    {"1": grid("....##", "....##", "......", "......"),           # 1 is back
     "2": grid("......", "......", ".###..", ".###..")},
]
EXPECTED_B = [
    {"cat": grid(".....", ".###.", ".....")},
    {"cat": grid(".....", ".####", ".....")},
]


@pytest.fixture
def hand_root(tmp_path: Path) -> Path:
    return hand.build(tmp_path)


# -- hand-written fixture --------------------------------------------------------------------------
def test_hand_records(hand_root: Path) -> None:
    ds = long_rvos.load(hand_root)
    assert ds.format == "long_rvos" and ds.version is None
    assert list(ds.splits) == ["train", "test"]
    train = ds["train"]
    assert train.video_ids() == ["vidA", "vidB"]

    a = train.video("vidA")
    assert (a.dataset, a.split, a.video_id) == ("long_rvos", "train", "vidA")
    assert (a.height, a.width, a.fps) == (4, 6, 6.0)
    assert a.frame_names == ["00000", "00001", "00002", "00003"]
    assert [f.path for f in a.frames] == [hand_root / "train/JPEGImages/vidA" / f"0000{i}.jpg" for i in range(4)]
    assert [t.track_id for t in a.tracks] == ["1", "2", "3"]
    assert [(e.exp_id, e.text, e.track_ids, e.kind, e.kind_raw) for e in a.expressions] == [
        ("0", "the ball rolling to the right", ("1",), "dynamic", "dynamic"),
        ("1", "the blue box", ("2",), "static", "static"),
        ("5", "the ball that hides and comes back", ("1",), "hybrid", "static+dynamic"),
    ]
    assert a.meta == {}

    b = train.video("vidB")
    assert (b.height, b.width) == (3, 5)
    assert b.frame_names == ["00000", "00001"]
    assert [t.track_id for t in b.tracks] == ["cat"]
    assert [(e.exp_id, e.text, e.track_ids, e.kind) for e in b.expressions] == [
        ("0", "a sleeping cat", ("cat",), "static")]
    assert not ds.problems.problems


def test_hand_masks_pixel_by_pixel(hand_root: Path) -> None:
    train = long_rvos.load(hand_root)["train"]
    assert_masks(train.video("vidA"), EXPECTED_A)
    assert_masks(train.video("vidB"), EXPECTED_B)


def test_split_without_annotations(hand_root: Path) -> None:
    test = long_rvos.load(hand_root)["test"]
    (t,) = list(test)
    assert (t.video_id, t.height, t.width, t.frame_names) == ("vidT", 2, 3, ["00000", "00001", "00002"])
    assert [tr.track_id for tr in t.tracks] == ["1"]
    assert t.mask_source is None and not t.has_masks
    with pytest.raises(DataError, match="no masks"):
        t.frame_masks(0)


def test_single_split_folder_and_split_argument(hand_root: Path) -> None:
    one = long_rvos.load(hand_root / "train")
    assert list(one.splits) == ["train"] and len(one["train"]) == 2
    only = longrvos_data.load(hand_root, format="long_rvos", split="test")
    assert list(only.splits) == ["test"]
    with pytest.raises(DataError, match="no split 'valid'"):
        long_rvos.load(hand_root, split="valid")


# -- detection ---------------------------------------------------------------------------------------
def test_detect_positive(hand_root: Path) -> None:
    d = long_rvos.detect(hand_root)
    assert d.confidence == 1.0 and d.format == "long_rvos"
    assert any("'type'" in r for r in d.reasons)
    d = long_rvos.detect(hand_root / "test")
    assert d.confidence == 1.0 and any("no Annotations" in r for r in d.reasons)


def _meta_only(folder: Path, meta: dict, extra: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "meta_expressions.json").write_text(json.dumps(meta))
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("meta, extra, reason", [
    ({"videos": {"v": {"frames": ["00000"], "expressions": {"0": {"exp": "x", "obj_id": [1, 2]}}}}}, None,
     "list"),
    ({"videos": {"v": {"frames": ["00000"], "expressions": {"0": {"exp": "x", "obj_id": [1]}}}}},
     {"mask_dict.json": "{}"}, "mask_dict.json"),
    ({"videos": {"v": {"frames": ["00000"], "expressions": {"0": {"exp": "x", "obj_id": "1"}}}}}, None,
     "no 'type'"),
    ({"not_videos": {}}, None, "no top-level 'videos'"),
], ids=["mevis-lists", "mevis-mask-dict", "ref-youtube-vos", "no-videos"])
def test_detect_negative(tmp_path: Path, meta: dict, extra, reason: str) -> None:
    folder = _meta_only(tmp_path / "valid", meta, extra)
    d = long_rvos.detect(folder)
    assert d.confidence == 0 and not d
    assert any(reason in r for r in d.reasons), d.reasons


def test_detect_negative_without_meta(tmp_path: Path) -> None:
    d = long_rvos.detect(tmp_path)
    assert d.confidence == 0 and "no meta_expressions.json" in d.reasons[0]
    lvos_root = fixture("lvos_hand").build(tmp_path / "l")
    assert long_rvos.detect(lvos_root).confidence == 0


# -- generated round trips ----------------------------------------------------------------------------
def assert_same_videos(loaded, source, *, frame_bytes: bool = True) -> None:
    """Loaded videos equal their source: ids, frames, sizes, texts, kinds and every mask pixel."""
    assert [v.video_id for v in loaded] == [v.video_id for v in source]
    for got, want in zip(loaded, source):
        assert (got.height, got.width, got.frame_names) == (want.height, want.width, want.frame_names)
        if frame_bytes:
            assert all(g.path.read_bytes() == w.path.read_bytes() for g, w in zip(got.frames, want.frames))
        assert [t.track_id for t in got.tracks] == [t.track_id for t in want.tracks]
        assert [(e.exp_id, e.text, e.track_ids, e.kind) for e in got.expressions] == \
            [(e.exp_id, e.text, e.track_ids, e.kind) for e in want.expressions]
        assert got.has_masks == want.has_masks
        if want.has_masks:
            for i in range(want.num_frames):
                g, w = got.frame_masks(i), want.frame_masks(i)
                assert g.keys() == w.keys(), (got.video_id, i)
                assert all(np.array_equal(g[k], w[k]) for k in w), (got.video_id, i)


def test_writer_round_trip_synth(tmp_path: Path) -> None:
    source = synth_videos(dataset="long_rvos", split="valid", staging=tmp_path / "stage", num_videos=3,
                          num_frames=10, seed=7)
    assert any(len(v.frame_masks(i)) < len(v.tracks) for v in source for i in range(v.num_frames))
    writer.write({"valid": source}, tmp_path / "out")
    ds = long_rvos.load(tmp_path / "out")
    assert_same_videos(list(ds["valid"]), source)
    assert not ds.problems.problems
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_generate_round_trip(tmp_path: Path) -> None:
    out = generate("long_rvos", tmp_path / "gen")
    ds = longrvos_data.load(out, format="long_rvos")
    assert list(ds.splits) == ["train", "valid", "test"]
    assert long_rvos.detect(out).confidence == 1.0
    assert not (out / "test" / "Annotations").exists()
    assert all(v.mask_source is None for v in ds["test"])
    source = synth_splits("long_rvos", tmp_path / "again")      # the videos generate() wrote
    for name in ("train", "valid", "test"):
        assert_same_videos(list(ds[name]), source[name])
    kinds = {e.kind_raw for v in ds["train"] for e in v.expressions}
    assert kinds == {"static", "dynamic", "static+dynamic"}


def test_hand_round_trip_through_writer(hand_root: Path, tmp_path: Path) -> None:
    ds = long_rvos.load(hand_root)
    writer.write({name: list(split) for name, split in ds.splits.items()}, tmp_path / "copy")
    again = long_rvos.load(tmp_path / "copy")
    assert_same_videos(list(again["train"]), list(ds["train"]))
    assert_same_videos(list(again["test"]), list(ds["test"]))
    assert_masks(again["train"].video("vidA"), EXPECTED_A)     # the empty PNG survives
    written = json.loads((tmp_path / "copy/train/meta_expressions.json").read_text())
    assert written["videos"]["vidA"]["expressions"]["5"] == {
        "exp": "the ball that hides and comes back", "obj_id": 1, "type": "static+dynamic"}
    assert written["videos"]["vidB"]["expressions"]["0"]["obj_id"] == "cat"
    assert not (tmp_path / "copy/test/Annotations").exists()


# -- writer refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, field, message", [
    (lambda v: (Expression("9", "both shapes", tuple(t.track_id for t in v.tracks[:2]), "static"),),
     "expressions.9.track_ids", "exactly one object"),
    (lambda v: (Expression("9", "the purple giraffe", (), "no-target"),), "expressions.9.track_ids", "no-target"),
    (lambda v: (Expression("9", "the shape", (v.tracks[0].track_id,), "referring"),), "expressions.9.kind",
     "no Long-RVOS type"),
], ids=["multi-object", "no-target", "kind"])
def test_writer_refuses(tmp_path: Path, change, field: str, message: str) -> None:
    videos = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "s", num_videos=2)
    bad = dataclasses.replace(videos[1], expressions=change(videos[1]))
    with pytest.raises(DataError, match=message) as info:
        writer.write({"train": [videos[0], bad]}, tmp_path / "out")
    err = info.value
    assert (err.video, err.field) == (bad.video_id, field)
    assert f"video {bad.video_id!r}" in str(err) and f"field {field!r}" in str(err)
    assert not (tmp_path / "out" / "train").exists()
    assert not [p for p in (tmp_path / "out").iterdir()]


def test_writer_refuses_mixed_annotation(tmp_path: Path) -> None:
    videos = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "s", num_videos=2)
    bare = dataclasses.replace(videos[1], mask_source=None)
    with pytest.raises(DataError, match="annotated as a whole") as info:
        writer.write({"train": [videos[0], bare]}, tmp_path / "out")
    assert (info.value.video, info.value.field) == (bare.video_id, "masks")


def test_writer_replaces_existing_split(tmp_path: Path) -> None:
    first = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "a", num_videos=2, seed=1)
    second = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "b", num_videos=1, seed=2)
    writer.write({"train": first}, tmp_path / "out")
    writer.write({"train": second}, tmp_path / "out")
    assert_same_videos(list(long_rvos.load(tmp_path / "out")["train"]), second)


# -- bad inputs -----------------------------------------------------------------------------------------
def _edit_meta(root: Path, edit) -> None:
    meta = json.loads(hand.TRAIN_META)
    edit(meta["videos"])
    (root / "train/meta_expressions.json").write_text(json.dumps(meta))


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _rename_video(videos: dict) -> None:
    videos["../evil"] = videos.pop("vidB")


BAD_META = [
    ("dotdot-video-id", _rename_video, "../evil", "video_id", "unsafe"),
    ("frames-not-in-folder", lambda v: v["vidA"]["frames"].append("00009"), "vidA", "frames",
     "have no image"),
    ("empty-text", lambda v: v["vidA"]["expressions"]["1"].update(exp="  "), "vidA", "expressions.1.exp",
     "empty"),
    ("unknown-type", lambda v: v["vidA"]["expressions"]["0"].update(type="moving"), "vidA",
     "expressions.0.type", "unknown type"),
    ("obj-id-list", lambda v: v["vidB"]["expressions"]["0"].update(obj_id=["cat"]), "vidB",
     "expressions.0.obj_id", "expected int/str"),
    ("obj-id-bool", lambda v: v["vidB"]["expressions"]["0"].update(obj_id=True), "vidB",
     "expressions.0.obj_id", "bool"),
    ("no-frames-key", lambda v: v["vidB"].pop("frames"), "vidB", "frames", "missing"),
]


@pytest.mark.parametrize("name, edit, video, field, message", BAD_META, ids=[b[0] for b in BAD_META])
def test_bad_metadata(hand_root: Path, name, edit, video: str, field: str, message: str) -> None:
    _edit_meta(hand_root, edit)
    split = long_rvos.load(hand_root)["train"]
    with pytest.raises(DataError, match=message) as info:
        list(split)
    meta_file = hand_root / "train" / "meta_expressions.json"
    text = str(info.value)
    assert str(meta_file) in text and f"video {video!r}" in text and f"field {field!r}" in text

    skipped = long_rvos.load(hand_root, on_error="skip")
    good = [v.video_id for v in skipped["train"]]
    assert video not in good and len(good) == 1
    (problem,) = skipped.problems.errors
    assert (problem.file, problem.video, problem.field) == (str(meta_file), video, field)


def test_truncated_json(hand_root: Path) -> None:
    meta = hand_root / "train/meta_expressions.json"
    meta.write_text(hand.TRAIN_META[:120])
    with pytest.raises(DataError, match="invalid JSON") as info:
        long_rvos.load(hand_root)
    assert info.value.file == str(meta) and str(meta) in str(info.value)
    assert long_rvos.detect(hand_root / "train").confidence == 0


def test_corrupt_jpeg_header(hand_root: Path) -> None:
    jpg = hand_root / "train/JPEGImages/vidA/00000.jpg"
    jpg.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    split = long_rvos.load(hand_root)["train"]
    with pytest.raises(DataError, match="image cannot be read") as info:
        split.video("vidA")
    assert str(jpg) in str(info.value) and "video 'vidA'" in str(info.value) and "field 'frames'" in str(info.value)
    skipped = long_rvos.load(hand_root, on_error="skip")
    assert [v.video_id for v in skipped["train"]] == ["vidB"]
    assert skipped.problems.errors[0].file == str(jpg)


BAD_MASKS = [
    ("corrupt", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR broken"), "cannot be decoded"),
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:40]), "cannot be decoded"),
    ("wrong-size", lambda p: _png(p, np.zeros((3, 6), np.uint8)), "mask is 3x6, the video is 4x6"),
    ("rgb", lambda p: _png(p, np.zeros((4, 6, 3), np.uint8)), "single-channel"),
]


@pytest.mark.parametrize("name, damage, message", BAD_MASKS, ids=[b[0] for b in BAD_MASKS])
def test_bad_mask_png(hand_root: Path, name: str, damage, message: str) -> None:
    png = hand_root / "train/Annotations/vidA/2/00002.png"
    damage(png)
    video = long_rvos.load(hand_root)["train"].video("vidA")
    assert video.frame_masks(1).keys() == {"1", "2"}        # other frames still read
    with pytest.raises(DataError, match=message) as info:
        video.frame_masks(2)
    err = info.value
    assert (err.file, err.video, err.field) == (str(png), "vidA", "Annotations/2/00002.png")
    assert str(png) in str(err) and "video 'vidA'" in str(err) and "field 'Annotations/2/00002.png'" in str(err)
    with pytest.raises(DataError):
        video.mask_source.check(2)


def test_validate_extra_reports_stray_annotations(hand_root: Path) -> None:
    assert long_rvos.validate_extra(hand_root, split="train", checksums=False) == []
    _png(hand_root / "train/Annotations/vidA/1/00007.png", np.zeros((4, 6), np.uint8))
    (hand_root / "train/Annotations/ghost").mkdir()
    found = long_rvos.validate_extra(hand_root)
    assert [(p.level, p.video, p.field) for p in found] == [
        ("warning", None, "Annotations"), ("warning", "vidA", "Annotations/1")]
    assert "ghost" in found[0].message and "00007" in found[1].message


# -- lenient ground truth, as the official evaluation reads it ------------------------------------------
GREY_WARNING = ("{n} mask PNG(s) hold values other than 0 and 255 (e.g. {first}.png): values {values}; any "
                "non-zero pixel is read as the object, as the official evaluation reads them (the official "
                "training takes only 255)")


def test_grey_value_png_is_foreground_where_non_zero_and_validate_warns(hand_root: Path) -> None:
    png = hand_root / "train/Annotations/vidA/2/00002.png"
    _png(png, np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 128, 128, 128, 0], [0, 0, 128, 0, 0, 0]],
                       np.uint8))
    video = long_rvos.load(hand_root)["train"].video("vidA")
    expected = [dict(m) for m in EXPECTED_A]
    expected[2] = {"2": grid("......", "......", "..###.", "..#...")}
    assert_masks(video, expected)
    (finding,) = video.mask_source.findings()
    assert (finding.level, finding.file, finding.video, finding.field) == (
        "warning", str(hand_root / "train/Annotations/vidA/2"), "vidA", "Annotations/2")
    assert finding.message == GREY_WARNING.format(n=1, first="00002", values=[0, 128])

    problems = validate(hand_root, split="train")
    assert [p for p in problems if p.level == "error"] == []
    assert [p for p in problems if "0 and 255" in p.message] == [finding]


def test_one_bit_pngs_are_foreground_where_set(hand_root: Path) -> None:
    for name, rows in [("00000", ["......", "......", "...###", "...###"]),
                       ("00003", ["......", "......", ".###..", ".###.."])]:
        Image.fromarray(grid(*rows)).save(hand_root / f"train/Annotations/vidA/2/{name}.png")  # mode "1"
        with Image.open(hand_root / f"train/Annotations/vidA/2/{name}.png") as im:
            assert im.mode == "1"
    video = long_rvos.load(hand_root)["train"].video("vidA")
    assert_masks(video, EXPECTED_A)
    (finding,) = video.mask_source.findings()
    assert finding.message == GREY_WARNING.format(n=2, first="00000", values=[0, 1])


def test_expression_object_without_folder_is_an_empty_track_with_a_warning(hand_root: Path) -> None:
    _edit_meta(hand_root, lambda v: (v["vidA"]["expressions"]["0"].update(obj_id=7),
                                     v["vidA"]["expressions"]["5"].update(obj_id=7)))
    ds = long_rvos.load(hand_root)
    video = ds["train"].video("vidA")
    assert [t.track_id for t in video.tracks] == ["1", "2", "3", "7"]
    assert [(e.exp_id, e.track_ids) for e in video.expressions] == [("0", ("7",)), ("1", ("2",)), ("5", ("7",))]
    assert_masks(video, EXPECTED_A)                       # "7" is in no frame: absent everywhere
    exp = video.expression("0")
    assert [video.target_mask(exp, video.frame_masks(i)) for i in range(4)] == [None] * 4
    folder = hand_root / "train/Annotations/vidA/7"
    message = (f"object '7' has no folder {folder}: it is read as absent from every frame (all-empty masks, "
               "as the official evaluation scores it)")
    assert [(p.level, p.message, p.file, p.video, p.field) for p in ds.problems.problems] == [
        ("warning", message, str(hand_root / "train/meta_expressions.json"), "vidA", "expressions.0.obj_id")]

    problems = validate(hand_root, split="train")
    assert [(p.level, p.message, p.video, p.field) for p in problems] == [
        ("warning", message, "vidA", "expressions.0.obj_id")]


def test_missing_frame_is_named_by_its_full_path(hand_root: Path) -> None:
    (hand_root / "train/JPEGImages/vidA/00002.jpg").unlink()
    with pytest.raises(DataError) as info:
        long_rvos.load(hand_root)["train"].video("vidA")
    expected = hand_root / "train/JPEGImages/vidA/00002.jpg"
    assert info.value.message == f"1 listed frame(s) have no image: {expected}"
    assert (info.value.file, info.value.video, info.value.field) == (
        str(hand_root / "train/meta_expressions.json"), "vidA", "frames")


def test_missing_frame_folder_names_the_first_expected_frame(hand_root: Path) -> None:
    folder = hand_root / "train/JPEGImages/vidB"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    with pytest.raises(DataError) as info:
        long_rvos.load(hand_root)["train"].video("vidB")
    assert info.value.message == f"frame folder is missing: 2 listed frame(s) have no image, e.g. {folder}/00000.jpg"
    assert (info.value.file, info.value.video, info.value.field) == (str(folder), "vidB", "frames")


def test_unsafe_video_id_is_one_validate_error(hand_root: Path) -> None:
    _edit_meta(hand_root, _rename_video)
    found = [(p.level, p.message, p.file, p.video, p.field) for p in validate(hand_root, split="train")
             if p.level == "error"]
    assert found == [("error", "unsafe or empty id '../evil'", str(hand_root / "train/meta_expressions.json"),
                      "../evil", "video_id")]
