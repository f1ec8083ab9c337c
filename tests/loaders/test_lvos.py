"""LVOS v1/v2 loader and writer: hand-written fixture, generated round trips, detection, bad inputs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import longrvos_data
from longrvos_data import DataError
from longrvos_data.converters import lvos as writer
from longrvos_data.loaders import lvos
from longrvos_data.schema import Expression, Frame, MaskSource, Track, Video
from longrvos_data.synth import generate, synth_splits, synth_videos
from longrvos_data.validate import validate

from fixtures import assert_masks, fixture, grid


hand = fixture("lvos_hand")


# Expected masks, frame by frame, written independently of the fixture's art (void is no object).
EXPECTED_TRAIN = [
    {"1": grid("##....", "##....", "......", "......"),
     "3": grid("......", "....##", "....##", "......")},
    {"1": grid(".##...", ".##...", "......", "......"),
     "3": grid("......", "....##", "....##", "......")},
    {},                                                            # 00000011 has no PNG
    {"1": grid("....##", "....##", "......", "......")},          # 3 has gone, 1 is back
]
EXPECTED_VAL = [{"2": grid("##...", "##...", ".....")}, {}]
EXPECTED_V2 = [{"5": grid("##..", "#...", "....")}, {"5": grid("....", ".##.", ".##.")}]


@pytest.fixture
def v1_root(tmp_path: Path) -> Path:
    return hand.build(tmp_path)


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    return hand.build_v2(tmp_path)


# -- hand-written fixture --------------------------------------------------------------------------
def test_hand_v1_records(v1_root: Path) -> None:
    ds = lvos.load(v1_root)
    assert (ds.format, ds.version) == ("lvos", "v1")
    assert list(ds.splits) == ["train", "val"]

    (v,) = list(ds["train"])
    assert (v.dataset, v.split, v.video_id, v.height, v.width, v.fps) == ("lvos", "train", "lv000001", 4, 6, 6.0)
    assert v.frame_names == ["00000001", "00000006", "00000011", "00000016"]
    assert v.frames[2].path == v1_root / "train/JPEGImages/lv000001/00000011.jpg"
    assert [(t.track_id, dict(t.meta)) for t in v.tracks] == [
        ("1", {"frame_range": {"start": "00000001", "end": "00000016", "frame_nums": 3}}),
        ("3", {"frame_range": {"start": 1, "end": 6, "frame_nums": 2}}),
    ]
    assert [(e.exp_id, e.text, e.track_ids, e.kind, e.kind_raw) for e in v.expressions] == [
        ("1", "a red kite flying in the sky", ("1",), "caption", None),
        ("3", "the man holding the string", ("3",), "caption", None),
    ]
    assert v.meta == {}
    assert v.source_file == str(v1_root / "train/train_meta.json")

    (w,) = list(ds["val"])
    assert (w.split, w.video_id, w.height, w.width) == ("val", "lv000002", 3, 5)
    assert w.frame_names == ["00000001", "00000006"]
    assert [(t.track_id, t.meta["frame_range"]) for t in w.tracks] == [("2", {"start": 1, "end": 6, "frame_nums": 2})]
    assert [(e.exp_id, e.text, e.kind) for e in w.expressions] == [("2", "the dog on the left", "caption")]
    assert not ds.problems.problems


def test_hand_v1_masks_pixel_by_pixel(v1_root: Path) -> None:
    ds = lvos.load(v1_root)
    assert_masks(ds["train"].video("lv000001"), EXPECTED_TRAIN)
    assert_masks(ds["val"].video("lv000002"), EXPECTED_VAL)


def test_hand_v2_records_and_masks(v2_root: Path) -> None:
    ds = longrvos_data.load(v2_root, format="lvos")
    assert ds.version == "v2" and list(ds.splits) == ["valid"]
    assert ds["valid"].attribute_lists == {"sets": ["valid"], "attributes": ["LRA", "OCC", "SV"]}
    (v,) = list(ds["valid"])
    assert (v.video_id, v.height, v.width, v.frame_names) == ("lv000009", 3, 4, ["00000001", "00000006"])
    assert dict(v.meta) == {"set": "valid", "attributes": ["LRA", "OCC"], "num_scribbles": 3, "name": "lv000009",
                            "image_size": [3, 4]}
    assert [t.track_id for t in v.tracks] == ["5"] and v.expressions == ()
    assert_masks(v, EXPECTED_V2)


@pytest.mark.parametrize("name", ["valid_meta_attributes.json", "valid_attribute_meta.json", "valid_attributes.json"])
def test_attribute_file_spellings(v2_root: Path, name: str) -> None:
    (v2_root / "valid/valid_meta_attribute.json").rename(v2_root / "valid" / name)
    ds = lvos.load(v2_root)
    assert ds.version == "v2" and ds["valid"].video("lv000009").meta["num_scribbles"] == 3


def test_version_unknown_without_captions_or_attributes(v1_root: Path) -> None:
    (v1_root / "train/train_expression_meta.json").unlink()
    (v1_root / "val/val_expression_meta.json").unlink()
    ds = lvos.load(v1_root)
    assert ds.version is None
    assert ds["train"].video("lv000001").expressions == ()


def test_single_split_folder_and_valid_alias(v1_root: Path) -> None:
    one = lvos.load(v1_root / "val")
    assert list(one.splits) == ["val"] and one.version == "v1"
    (v1_root / "val").rename(v1_root / "valid")          # archives unpack to valid/ with val_meta.json
    ds = lvos.load(v1_root, split="valid")
    assert [v.video_id for v in ds["valid"]] == ["lv000002"]
    with pytest.raises(DataError, match="no split 'test'"):
        lvos.load(v1_root, split="test")


def test_check_reports_unknown_pixel_values(v1_root: Path) -> None:
    png = v1_root / "train/Annotations/lv000001/00000006.png"
    ids = hand.art([".11...", ".11.77", "VVVV77", "......"])
    im = Image.frombytes("P", (6, 4), ids.tobytes())
    im.putpalette([v for i in range(256) for v in (i, i, i)])   # a full palette keeps 8-bit indices
    im.save(png)
    video = lvos.load(v1_root)["train"].video("lv000001")
    (problem,) = video.mask_source.check(1)
    assert str(png) in problem and "7 (4 px)" in problem and "lv000001" in problem
    assert video.frame_masks(1).keys() == {"1"}
    assert video.mask_source.check(0) == [] and video.mask_source.check(2) == []


# -- detection ---------------------------------------------------------------------------------------
def test_detect_positive(v1_root: Path, v2_root: Path) -> None:
    for path in (v1_root, v1_root / "val", v2_root):
        d = lvos.detect(path)
        assert d.confidence == 1.0 and any("frame_range" in r for r in d.reasons), d.reasons
    (v2_root / "valid/valid_meta.json").unlink()        # the attribute file alone is enough
    assert lvos.detect(v2_root).confidence == 1.0


def test_detect_negative(tmp_path: Path, v1_root: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    d = lvos.detect(empty)
    assert d.confidence == 0 and "no <split>_meta.json" in d.reasons[0]
    long_root = fixture("long_rvos_hand").build(tmp_path / "lr")
    assert lvos.detect(long_root).confidence == 0
    (v1_root / "train/train_meta.json").write_text('{"videos": {"lv000001": {"objects": {"1": {"caption": "x"}}}}}')
    d = lvos.detect(v1_root / "train")
    assert d.confidence == 0 and any("no 'frame_range'" in r for r in d.reasons)
    (v1_root / "train/train_meta.json").write_text('{"sequences": {}}')
    assert any("no top-level 'videos'" in r for r in lvos.detect(v1_root / "train").reasons)
    ytvos = tmp_path / "ytvos" / "train"                   # Ref-YouTube-VOS meta.json: no frame ranges
    ytvos.mkdir(parents=True)
    (ytvos / "meta.json").write_text('{"videos": {"a1b2": {"objects": {"1": {"category": "cat", "frames": ["00000"]}}}}}')
    d = lvos.detect(ytvos.parent)
    assert d.confidence == 0 and any("no 'frame_range'" in r for r in d.reasons)


def test_plain_meta_json_name(v1_root: Path) -> None:
    (v1_root / "val/val_meta.json").rename(v1_root / "val/meta.json")
    assert lvos.detect(v1_root / "val").confidence == 1.0
    assert [t.track_id for t in lvos.load(v1_root)["val"].video("lv000002").tracks] == ["2"]


# -- generated round trips ----------------------------------------------------------------------------
def assert_same_videos(loaded, source) -> None:
    """Loaded videos equal their source: ids, frames, sizes, texts, kinds and every mask pixel.

    LVOS names a caption by its object, so expressions are compared by track, text and kind.
    """
    assert [v.video_id for v in loaded] == [v.video_id for v in source]
    for got, want in zip(loaded, source):
        assert (got.height, got.width, got.frame_names) == (want.height, want.width, want.frame_names)
        assert all(g.path.read_bytes() == w.path.read_bytes() for g, w in zip(got.frames, want.frames))
        assert [t.track_id for t in got.tracks] == [t.track_id for t in want.tracks]
        assert sorted((e.track_ids, e.text, e.kind) for e in got.expressions) == \
            sorted((e.track_ids, e.text, e.kind) for e in want.expressions)
        assert all(e.exp_id == e.track_ids[0] for e in got.expressions)
        for i in range(want.num_frames):
            g, w = got.frame_masks(i), want.frame_masks(i)
            assert g.keys() == w.keys(), (got.video_id, i)
            assert all(np.array_equal(g[k], w[k]) for k in w), (got.video_id, i)


def test_writer_round_trip_synth(tmp_path: Path) -> None:
    source = synth_videos(dataset="lvos", split="valid", staging=tmp_path / "stage", num_videos=3, num_frames=10,
                          seed=5)
    writer.write({"valid": source}, tmp_path / "out")
    ds = lvos.load(tmp_path / "out")
    assert ds.version == "v1"
    loaded = list(ds["valid"])
    assert_same_videos(loaded, source)
    # frame ranges are computed from the masks
    for got, want in zip(loaded, source):
        for t in got.tracks:
            present = [i for i in range(want.num_frames) if t.track_id in want.frame_masks(i)]
            # frame_nums spans start..end inclusive, as in the release (00000001..00002296 -> 460)
            assert t.meta["frame_range"] == {"start": want.frame_names[present[0]],
                                             "end": want.frame_names[present[-1]],
                                             "frame_nums": present[-1] - present[0] + 1}
    assert not ds.problems.problems


def test_generate_round_trip(tmp_path: Path) -> None:
    out = generate("lvos", tmp_path / "gen")
    ds = longrvos_data.load(out, format="lvos")
    assert list(ds.splits) == ["train", "valid"] and ds.version == "v1"
    assert lvos.detect(out).confidence == 1.0
    train = list(ds["train"])
    assert train[0].frame_names[:3] == ["00000001", "00000006", "00000011"]
    source = synth_splits("lvos", tmp_path / "again")           # the videos generate() wrote
    assert_same_videos(train, source["train"])
    assert_same_videos(list(ds["valid"]), source["valid"])


def test_hand_round_trip_through_writer(v1_root: Path, v2_root: Path, tmp_path: Path) -> None:
    ds = lvos.load(v1_root)
    writer.write({name: list(split) for name, split in ds.splits.items()}, tmp_path / "copy")
    again = lvos.load(tmp_path / "copy")
    assert again.version == "v1" and list(again.splits) == ["train", "val"]
    for name in ("train", "val"):
        assert_same_videos(list(again[name]), list(ds[name]))
        assert [t.meta for v in again[name] for t in v.tracks] == [t.meta for v in ds[name] for t in v.tracks]
    assert_masks(again["train"].video("lv000001"), EXPECTED_TRAIN)

    v2 = lvos.load(v2_root)
    writer.write({"valid": list(v2["valid"])}, tmp_path / "copy2")
    again2 = lvos.load(tmp_path / "copy2")
    assert again2.version == "v2"
    assert again2["valid"].video("lv000009").meta == v2["valid"].video("lv000009").meta
    assert again2["valid"].attribute_lists == {"sets": ["valid"], "attributes": ["LRA", "OCC"]}
    assert_masks(again2["valid"].video("lv000009"), EXPECTED_V2)


# -- writer refusals ------------------------------------------------------------------------------------
class FixedMasks(MaskSource):
    """Masks given per frame, for writer tests."""

    def __init__(self, frames: list[dict[str, np.ndarray]]) -> None:
        self.frames = frames

    def masks(self, index: int) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.frames[index].items()}


def _video(tmp_path: Path, track_ids, masks, expressions=(), track_meta=None) -> Video:
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    frames = []
    for i in range(len(masks)):
        path = folder / f"{i:05d}.jpg"
        Image.new("RGB", (6, 4)).save(path)
        frames.append(Frame(f"{i:05d}", path))
    tracks = [Track(t, meta=(track_meta or {}).get(t, {})) for t in track_ids]
    return Video(dataset="other", split="train", video_id="w1", frames=frames, height=4, width=6, tracks=tracks,
                 expressions=expressions, mask_source=FixedMasks(masks) if masks[0] is not None else None)


LEFT = grid("###...", "###...", "......", "......")
MIDDLE = grid("..##..", "..##..", "......", "......")
RIGHT = grid("....##", "....##", "......", "......")

REFUSALS = [
    ("overlap", lambda p: _video(p, ["1", "2"], [{"1": LEFT, "2": RIGHT}, {"1": LEFT, "2": MIDDLE}]),
     "masks[1].2", "overlaps track(s) ['1']"),
    ("id-too-large", lambda p: _video(p, ["1", "300"], [{"1": LEFT}]), "tracks.300", "1..254"),
    ("id-void", lambda p: _video(p, ["255"], [{"255": LEFT}]), "tracks.255", "1..254"),
    ("id-zero", lambda p: _video(p, ["0"], [{"0": LEFT}]), "tracks.0", "1..254"),
    ("id-text", lambda p: _video(p, ["cat"], [{"cat": LEFT}]), "tracks.cat", "1..254"),
    ("not-caption", lambda p: _video(p, ["1"], [{"1": LEFT}], [Expression("0", "the left one", ("1",), "static")]),
     "expressions.0.kind", "only captions"),
    ("two-captions", lambda p: _video(p, ["1"], [{"1": LEFT}], [Expression("a", "one", ("1",), "caption"),
                                                                  Expression("b", "two", ("1",), "caption")]),
     "expressions.b.track_ids", "second caption"),
    ("never-present", lambda p: _video(p, ["1", "2"], [{"1": LEFT}, {"1": LEFT}]), "tracks.2.frame_range",
     "never present"),
    ("no-masks-no-range", lambda p: _video(p, ["1"], [None]), "tracks.1.frame_range", "no masks"),
]


@pytest.mark.parametrize("name, make, field, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_writer_refuses(tmp_path: Path, name: str, make, field: str, message: str) -> None:
    video = make(tmp_path)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        writer.write({"train": [video]}, tmp_path / "out")
    err = info.value
    assert (err.video, err.field) == ("w1", field)
    assert "video 'w1'" in str(err) and f"field {field!r}" in str(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_writer_keeps_given_frame_range_and_drops_empty_masks(tmp_path: Path) -> None:
    empty = np.zeros((4, 6), bool)
    video = _video(tmp_path, ["1", "2"], [{"1": LEFT, "2": empty}, {"1": LEFT}],
                   track_meta={"2": {"frame_range": {"start": 1, "end": 1, "frame_nums": 0}}})
    writer.write({"train": [video]}, tmp_path / "out")
    (got,) = list(lvos.load(tmp_path / "out")["train"])
    assert got.tracks[1].meta["frame_range"] == {"start": 1, "end": 1, "frame_nums": 0}
    assert got.tracks[0].meta["frame_range"] == {"start": "00000", "end": "00001", "frame_nums": 2}
    assert got.frame_masks(0).keys() == {"1"}           # a palette PNG cannot hold an empty mask


# -- bad inputs -----------------------------------------------------------------------------------------
def _edit(root: Path, file: str, text: str, edit) -> None:
    data = json.loads(text)
    edit(data["videos"])
    (root / file).write_text(json.dumps(data))


def _rename(videos: dict) -> None:
    videos["../evil"] = videos.pop("lv000001")


BAD_META = [
    ("object-id-text", "train/train_meta.json", hand.TRAIN_META,
     lambda v: v["lv000001"]["objects"].update(x=v["lv000001"]["objects"]["1"]), "objects.x", "1..254"),
    ("object-id-void", "train/train_meta.json", hand.TRAIN_META,
     lambda v: v["lv000001"]["objects"].update({"255": v["lv000001"]["objects"]["1"]}), "objects.255", "1..254"),
    ("object-id-repeats", "train/train_meta.json", hand.TRAIN_META,
     lambda v: v["lv000001"]["objects"].update({"01": v["lv000001"]["objects"]["1"]}), "objects.01", "repeats"),
    ("no-frame-range", "train/train_meta.json", hand.TRAIN_META,
     lambda v: v["lv000001"]["objects"]["3"].pop("frame_range"), "objects.3.frame_range", "missing"),
    ("start-bool", "train/train_meta.json", hand.TRAIN_META,
     lambda v: v["lv000001"]["objects"]["3"]["frame_range"].update(start=True), "objects.3.frame_range.start",
     "bool"),
    ("start-list", "train/train_meta.json", hand.TRAIN_META,
     lambda v: v["lv000001"]["objects"]["3"]["frame_range"].update(start=[1]), "objects.3.frame_range.start",
     "expected int/str"),
    ("dotdot-video-id", "train/train_meta.json", hand.TRAIN_META, _rename, "video_id", "unsafe"),
    ("caption-unknown-object", "train/train_expression_meta.json", hand.TRAIN_CAPTIONS,
     lambda v: v["lv000001"]["objects"].update({"9": {"caption": "a ghost"}}), "objects.9", "does not list"),
    ("empty-caption", "train/train_expression_meta.json", hand.TRAIN_CAPTIONS,
     lambda v: v["lv000001"]["objects"]["3"].update(caption=""), "objects.3.caption", "empty"),
]


@pytest.mark.parametrize("name, file, text, edit, field, message", BAD_META, ids=[b[0] for b in BAD_META])
def test_bad_metadata(v1_root: Path, name, file: str, text: str, edit, field: str, message: str) -> None:
    _edit(v1_root, file, text, edit)
    video = "../evil" if name == "dotdot-video-id" else "lv000001"
    with pytest.raises(DataError, match=message) as info:
        list(lvos.load(v1_root)["train"])
    err = info.value
    assert (err.file, err.video, err.field) == (str(v1_root / file), video, field)
    assert str(v1_root / file) in str(err) and f"video {video!r}" in str(err) and f"field {field!r}" in str(err)

    skipped = lvos.load(v1_root, on_error="skip")
    assert list(skipped["train"]) == [] and len(list(skipped["val"])) == 1
    (problem,) = skipped.problems.errors
    assert (problem.video, problem.field) == (video, field)


def test_truncated_json(v1_root: Path) -> None:
    meta = v1_root / "train/train_meta.json"
    meta.write_text(hand.TRAIN_META[:60])
    with pytest.raises(DataError, match="invalid JSON") as info:
        lvos.load(v1_root)
    assert info.value.file == str(meta)
    assert lvos.detect(v1_root / "train").confidence == 0


def test_missing_frame_folder_and_corrupt_jpeg(v1_root: Path) -> None:
    jpg = v1_root / "train/JPEGImages/lv000001/00000001.jpg"
    jpg.write_bytes(b"GIF89a not a jpeg")
    with pytest.raises(DataError, match="image cannot be read") as info:
        lvos.load(v1_root)["train"].video("lv000001")
    assert (info.value.file, info.value.video, info.value.field) == (str(jpg), "lv000001", "frames")
    folder = v1_root / "val/JPEGImages/lv000002"
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    with pytest.raises(DataError, match="frame folder is missing") as info:
        lvos.load(v1_root)["val"].video("lv000002")
    assert (info.value.file, info.value.video, info.value.field) == (str(folder), "lv000002", "frames")


def test_bad_image_size(v2_root: Path) -> None:
    path = v2_root / "valid/valid_meta_attribute.json"
    path.write_text(hand.V2_ATTRIBUTES.replace('"image_size": [3, 4]', '"image_size": "3x4"'))
    with pytest.raises(DataError, match=r"\[height, width\]") as info:
        lvos.load(v2_root)["valid"].video("lv000009")
    assert (info.value.file, info.value.video, info.value.field) == (str(path), "lv000009", "image_size")


BAD_MASKS = [
    ("corrupt", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR broken"), "cannot be decoded"),
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:45]), "cannot be decoded"),
    ("wrong-size", lambda p: Image.new("P", (5, 4)).save(p), "mask is 4x5, the video is 4x6"),
    ("rgb", lambda p: Image.new("RGB", (6, 4)).save(p), "single-channel"),
]


@pytest.mark.parametrize("name, damage, message", BAD_MASKS, ids=[b[0] for b in BAD_MASKS])
def test_bad_mask_png(v1_root: Path, name: str, damage, message: str) -> None:
    png = v1_root / "train/Annotations/lv000001/00000006.png"
    damage(png)
    video = lvos.load(v1_root)["train"].video("lv000001")
    assert video.frame_masks(0).keys() == {"1", "3"}
    for call in (video.frame_masks, video.frame_areas, video.mask_source.check):
        with pytest.raises(DataError, match=message) as info:
            call(1)
        err = info.value
        assert (err.file, err.video, err.field) == (str(png), "lv000001", "Annotations/00000006.png")
        assert str(png) in str(err) and "video 'lv000001'" in str(err)


def test_validate_extra_reports_frame_ranges_off_the_frames(v1_root: Path) -> None:
    assert lvos.validate_extra(v1_root, split=None, checksums=False) == []
    _edit(v1_root, "train/train_meta.json", hand.TRAIN_META,
          lambda v: v["lv000001"]["objects"]["3"]["frame_range"].update(end=7))
    (problem,) = lvos.validate_extra(v1_root)
    assert (problem.level, problem.video, problem.field) == ("warning", "lv000001", "objects.3.frame_range.end")
    assert problem.file == str(v1_root / "train/train_meta.json") and "7" in problem.message


# -- metadata left at the dataset root ------------------------------------------------------------------
def _to_root(root: Path, *names: str) -> None:
    for name in names:
        (root / name).rename(root / Path(name).name)


def test_metadata_beside_the_split_folders(v1_root: Path) -> None:
    _to_root(v1_root, "train/train_meta.json", "train/train_expression_meta.json", "val/val_meta.json",
             "val/val_expression_meta.json")
    ds = lvos.load(v1_root)
    assert (ds.version, list(ds.splits)) == ("v1", ["train", "val"])
    assert ds["train"].files.meta == v1_root / "train_meta.json"
    assert ds["train"].files.expression == v1_root / "train_expression_meta.json"
    v = ds["train"].video("lv000001")
    assert v.source_file == str(v1_root / "train_meta.json")
    assert [(e.exp_id, e.text) for e in v.expressions] == [("1", "a red kite flying in the sky"),
                                                           ("3", "the man holding the string")]
    assert_masks(v, EXPECTED_TRAIN)
    assert_masks(ds["val"].video("lv000002"), EXPECTED_VAL)
    assert not ds.problems.problems

    one = lvos.load(v1_root / "val")                       # a split folder whose metadata is in its parent
    assert (list(one.splits), one.version) == (["val"], "v1")
    assert one["val"].files.meta == v1_root / "val_meta.json"
    (v1_root / "val").rename(v1_root / "valid")             # valid/ beside val_meta.json
    ds = lvos.load(v1_root)
    assert list(ds.splits) == ["train", "valid"]
    assert [t.track_id for t in ds["valid"].video("lv000002").tracks] == ["2"]


def test_split_folder_files_win_over_root_files(v1_root: Path) -> None:
    _edit(v1_root, "train_meta.json", hand.TRAIN_META, lambda v: v["lv000001"]["objects"].pop("3"))
    ds = lvos.load(v1_root)
    assert ds["train"].files.meta == v1_root / "train/train_meta.json"
    assert [t.track_id for t in ds["train"].video("lv000001").tracks] == ["1", "3"]


def test_v2_attribute_file_at_the_root(v2_root: Path) -> None:
    _to_root(v2_root, "valid/valid_meta.json", "valid/valid_meta_attribute.json")
    ds = lvos.load(v2_root)
    assert (ds.version, list(ds.splits)) == ("v2", ["valid"])
    assert ds["valid"].files.attribute == v2_root / "valid_meta_attribute.json"
    assert ds["valid"].video("lv000009").meta["num_scribbles"] == 3


# -- frame ranges: the start frame holds the reference mask ---------------------------------------------
def _range_problems(root: Path, **changes) -> list[tuple]:
    def edit(videos):
        for obj, fr in changes.items():
            videos["lv000001"]["objects"][obj.lstrip("o")]["frame_range"].update(fr)
    _edit(root, "train/train_meta.json", hand.TRAIN_META, edit)
    return [(p.level, p.message, p.file, p.video, p.field) for p in lvos.validate_extra(root, split="train")]


def test_frame_range_start_that_is_no_frame_is_an_error(v1_root: Path) -> None:
    meta = str(v1_root / "train/train_meta.json")
    jpg = v1_root / "train/JPEGImages/lv000001/00000002.jpg"
    assert _range_problems(v1_root, o3={"start": 2}) == [
        ("error", f"frame_range start 2 is not a frame of the video: there is no {jpg} (the start frame holds "
                  "the object's reference mask)", meta, "lv000001", "objects.3.frame_range.start")]
    assert _range_problems(v1_root, o3={"start": "first"}) == [
        ("error", "frame_range start 'first' is not a frame number", meta, "lv000001", "objects.3.frame_range.start")]


def test_frame_range_start_without_its_image_or_mask_is_an_error(v1_root: Path) -> None:
    meta = str(v1_root / "train/train_meta.json")
    png = v1_root / "train/Annotations/lv000001/00000011.png"        # 00000011 is a frame without PNG
    assert _range_problems(v1_root, o1={"start": "00000011"}) == [
        ("error", f"the reference mask of frame_range start '00000011' is missing: there is no {png}", meta,
         "lv000001", "objects.1.frame_range.start")]
    (v1_root / "train/JPEGImages/lv000001/00000001.jpg").unlink()    # both objects start there
    jpg = v1_root / "train/JPEGImages/lv000001/00000001.jpg"
    found = _range_problems(v1_root)
    assert found == [
        ("error", f"frame_range start {s!r} is not a frame of the video: there is no {jpg} (the start frame holds "
                  "the object's reference mask)", meta, "lv000001", f"objects.{o}.frame_range.start")
        for o, s in (("1", "00000001"), ("3", 1))]
    errors = [p for p in validate(v1_root, split="train") if p.level == "error"]
    assert [(p.message, p.field) for p in errors] == [(f[1], f[4]) for f in found]


def test_frame_range_end_is_a_warning_unless_beyond_the_last_frame(v1_root: Path) -> None:
    meta = str(v1_root / "train/train_meta.json")
    assert _range_problems(v1_root, o3={"end": 7}) == [
        ("warning", "frame_range end 7 is not a frame of the video", meta, "lv000001", "objects.3.frame_range.end")]
    assert _range_problems(v1_root, o1={"end": "00000021"}, o3={"end": 16}) == [
        ("error", "frame_range end '00000021' is beyond the video's last frame 00000016", meta, "lv000001",
         "objects.1.frame_range.end")]
    assert _range_problems(v1_root, o3={"end": "last"}) == [
        ("error", "frame_range end 'last' is not a frame number", meta, "lv000001", "objects.3.frame_range.end")]


# -- unsafe ids in entries the loader ignores -------------------------------------------------------------
def test_unsafe_ids_where_the_loader_only_ignores_the_entry_are_errors(v1_root: Path, v2_root: Path) -> None:
    captions = v1_root / "train/train_expression_meta.json"
    _edit(v1_root, "train/train_expression_meta.json", hand.TRAIN_CAPTIONS,
          lambda v: v.__setitem__("../evil", {"objects": {}}))
    ds = lvos.load(v1_root)
    assert [v.video_id for v in ds["train"]] == ["lv000001"]               # the loader ignores the entry
    assert [p.level for p in ds.problems.problems] == ["warning"]
    found = [(p.level, p.message, p.file, p.video, p.field) for p in validate(v1_root) if p.level == "error"]
    assert found == [("error", "unsafe or empty id '../evil'", str(captions), "../evil", "video_id")]

    attributes = v2_root / "valid/valid_meta_attribute.json"                # objects of the attribute file are ignored
    attributes.write_text(hand.V2_ATTRIBUTES.replace('"objects": {"5"', '"objects": {"a/5"'))
    assert [t.track_id for t in lvos.load(v2_root)["valid"].video("lv000009").tracks] == ["5"]
    found = [(p.message, p.file, p.video, p.field) for p in validate(v2_root) if p.level == "error"]
    assert found == [("unsafe or empty id 'a/5'", str(attributes), "lv000009", "objects.a/5")]


def test_split_folder_alone_finds_the_captions_beside_it(v1_root: Path) -> None:
    _to_root(v1_root, "val/val_expression_meta.json")
    for path in (v1_root, v1_root / "val"):
        ds = lvos.load(path, split="val")
        assert ds.version == "v1" and ds["val"].files.meta == v1_root / "val/val_meta.json"
        assert ds["val"].files.expression == v1_root / "val_expression_meta.json"
        assert [e.text for e in ds["val"].video("lv000002").expressions] == ["the dog on the left"]
