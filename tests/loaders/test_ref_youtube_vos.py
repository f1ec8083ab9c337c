"""Ref-YouTube-VOS: hand-written release, generated round trip, detection, bad inputs, writer refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longrvos_data.converters.ref_youtube_vos import write
from longrvos_data.errors import DataError
from longrvos_data.loaders import ref_youtube_vos as ryv
from longrvos_data.schema import Expression, Frame, MaskSource, Track, Video
from longrvos_data.synth import PROFILES, generate, synth_videos

from fixtures import fixture


hand = fixture("ref_youtube_vos_hand")

A, B, VAL, TEST = "a1b2c3d4e5", "f0e1d2c3b4", "0a1b2c3d4e", "9f8e7d6c5b"

# Expected masks, drawn again by hand ('#' = object), per frame: {track: rows}.
EXPECTED_MASKS = {
    A: [
        {"1": ["##....",
               "##....",
               "##....",
               "......"],
         "2": ["....##",
               "....##",
               "......",
               "......"]},
        {"1": [".##...",
               ".##...",
               ".##...",
               "......"],
         "3": ["......",
               "......",
               "....##",
               "....##"]},
        {},  # 00010 has no PNG: every object absent
    ],
    B: [
        {"1": [".....",
               ".###.",
               "....."]},
        {"1": ["##...",
               "##...",
               "....."]},
    ],
}


def _art(rows: list[str]) -> np.ndarray:
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return hand.build(tmp_path)


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _records(video: Video) -> dict:
    """Everything but masks, in plain values, for equality checks across loads."""
    return {
        "id": video.video_id, "split": video.split, "size": (video.height, video.width), "fps": video.fps,
        "frames": video.frame_names,
        "tracks": [(t.track_id, t.category) for t in video.tracks],
        "expressions": [(e.exp_id, e.text, e.track_ids, e.kind) for e in video.expressions],
    }


def _assert_same_masks(a: Video, b: Video) -> None:
    assert a.num_frames == b.num_frames
    for i in range(a.num_frames):
        ma, mb = a.frame_masks(i), b.frame_masks(i)
        assert sorted(ma) == sorted(mb), (a.video_id, i)
        for tid in ma:
            assert np.array_equal(ma[tid], mb[tid]), (a.video_id, i, tid)


# -- the hand-written release ----------------------------------------------------------
def test_hand_fixture_train_records(root: Path):
    ds = ryv.load(root)
    assert ds.format == "ref_youtube_vos"
    assert sorted(ds.splits) == ["test", "train", "valid"]
    train = ds["train"]
    assert train.video_ids() == [A, B]

    a = train.video(A)
    assert a.frame_names == ["00000", "00005", "00010"]
    assert [f.path for f in a.frames] == [root / "train/JPEGImages" / A / f"{n}.jpg" for n in a.frame_names]
    assert (a.height, a.width) == (4, 6)
    assert a.fps == 6.0
    assert [(t.track_id, t.category) for t in a.tracks] == [("1", "person"), ("2", "dog"), ("3", "cat")]
    assert a.track("2").meta["frames"] == ["00000"]
    assert a.track("3").meta["frames"] == ["00005"]
    assert [(e.exp_id, e.text, e.track_ids, e.kind, e.kind_raw) for e in a.expressions] == [
        ("0", "a person wearing a red shirt", ("1",), "referring", None),
        ("1", "a brown dog running on the grass", ("2",), "referring", None),
        ("2", "the person standing on the left", ("1",), "referring", None),
    ]
    b = train.video(B)
    assert (b.height, b.width, b.frame_names) == (3, 5, ["00000", "00005"])
    assert [(t.track_id, t.category) for t in b.tracks] == [("1", "zebra")]
    assert [(e.text, e.track_ids) for e in b.expressions] == [("a white zebra walking", ("1",))]
    assert ds.problems.problems == []


def test_hand_fixture_every_mask_pixel(root: Path):
    train = ryv.load(root, split="train")["train"]
    for vid, frames in EXPECTED_MASKS.items():
        video = train.video(vid)
        assert video.num_frames == len(frames)
        for i, expected in enumerate(frames):
            got = video.frame_masks(i)
            assert sorted(got) == sorted(expected), (vid, i)
            for tid, rows in expected.items():
                assert got[tid].dtype == bool
                assert np.array_equal(got[tid], _art(rows)), (vid, i, tid)
            assert video.frame_areas(i) == {tid: int(_art(rows).sum()) for tid, rows in expected.items()}
            assert video.mask_source.check(i) == []      # 0, 255 and known ids only
    a = train.video(A)
    # the dog (2) leaves at 00005; the cat (3) is there only
    assert "2" in a.frame_masks(0) and "2" not in a.frame_masks(1) and "3" in a.frame_masks(1)
    # void pixels (255) belong to no track
    assert not any(m[2, 3] or m[2, 4] for m in a.frame_masks(0).values())


def test_hand_fixture_valid_is_filtered_by_test_and_test_reads_valid_frames(root: Path):
    ds = ryv.load(root)
    valid, test = ds["valid"], ds["test"]
    assert valid.video_ids() == [VAL]          # the valid file lists VAL and TEST
    assert test.video_ids() == [TEST]
    v = valid.video(VAL)
    assert v.mask_source is None and not v.has_masks
    assert (v.height, v.width, v.frame_names) == (4, 6, ["00000", "00005"])
    assert [(t.track_id, t.category) for t in v.tracks] == [("1", None)]
    assert [(e.text, e.track_ids, e.kind, dict(e.meta)) for e in v.expressions] == [
        ("a black cat sitting on a sofa", ("1",), "referring", {}),
        ("a man holding a cup", (), "referring", {"target_hidden": True}),
    ]
    t = test.video(TEST)
    assert (t.split, t.height, t.width, t.frame_names) == ("test", 2, 3, ["00000"])
    assert t.frames[0].path == root / "valid/JPEGImages" / TEST / "00000.jpg"
    assert t.meta["frames_folder"] == str(root / "valid/JPEGImages")
    assert t.tracks == () and t.mask_source is None
    with pytest.raises(KeyError):
        valid.video(TEST)


def test_split_folder_loads(root: Path):
    train = ryv.load(root / "train")
    assert list(train.splits) == ["train"]
    assert [_records(v) for v in train["train"]] == [_records(v) for v in ryv.load(root)["train"]]
    valid = ryv.load(root / "valid")
    assert list(valid.splits) == ["valid"] and valid["valid"].video_ids() == [VAL]


def _to_fork(root: Path) -> None:
    """The fork variant: ``<split>/meta_expressions.json``."""
    for split in ("train", "valid", "test"):
        (root / split).mkdir(exist_ok=True)
        shutil.move(root / "meta_expressions" / split / "meta_expressions.json", root / split / "meta_expressions.json")
    shutil.rmtree(root / "meta_expressions")


def test_fork_variant_loads_the_same(root: Path, tmp_path: Path):
    expected = {s.split: [_records(v) for v in s] for s in ryv.load(root)}
    _to_fork(root)
    got = {s.split: [_records(v) for v in s] for s in ryv.load(root)}
    assert got == expected
    assert [_records(v) for v in ryv.load(root / "train")["train"]] == expected["train"]
    assert ryv.load(root / "valid")["valid"].video_ids() == [VAL]       # filtered by test/meta_expressions.json
    _assert_same_masks(ryv.load(root / "train")["train"].video(A), ryv.load(hand.build(tmp_path / "x"))["train"].video(A))


def test_split_without_frames_is_left_out_with_a_warning(root: Path):
    shutil.rmtree(root / "valid")
    ds = ryv.load(root)
    assert list(ds.splits) == ["train"]
    warned = sorted(p.file for p in ds.problems.problems if p.level == "warning")
    assert warned == [str(root / "meta_expressions/test/meta_expressions.json"),
                      str(root / "meta_expressions/valid/meta_expressions.json")]
    assert ryv.load(root, split="valid")["valid"].video_ids() == [VAL]   # asked for: kept


def test_unknown_split_and_empty_folder(root: Path, tmp_path: Path):
    with pytest.raises(DataError, match="no split 'nope'"):
        ryv.load(root, split="nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Ref-YouTube-VOS expression file"):
        ryv.load(tmp_path / "empty")


# -- detection -------------------------------------------------------------------------
def test_detect_positive(root: Path):
    d = ryv.detect(root)
    assert d.confidence == 1.0 and d.format == "ref_youtube_vos"
    assert any("strings" in r for r in d.reasons) and any("step by 5" in r for r in d.reasons)
    assert ryv.detect(root / "train").confidence == 1.0
    assert ryv.detect(root / "valid").confidence > 0


def test_detect_positive_fork(root: Path):
    _to_fork(root)
    d = ryv.detect(root)
    assert d.confidence == 1.0, d.reasons       # base + string ids + step 5 + palette PNG
    assert ryv.detect(root / "train").confidence == 1.0
    assert 0 < ryv.detect(root / "valid").confidence < 1.0


def _long_rvos_tree(root: Path, *, with_type: bool) -> Path:
    """A two-frame Long-RVOS split: ``type`` per expression, per-object binary PNG folders."""
    split = root / "long_rvos" / "train"
    exp = {"exp": "the dog", "obj_id": 1}
    if with_type:
        exp["type"] = "static"
    (split).mkdir(parents=True)
    (split / "meta_expressions.json").write_text(json.dumps(
        {"videos": {"v1": {"frames": ["00000", "00001"], "expressions": {"0": exp}}}}))
    for name in ("00000", "00001"):
        (split / "JPEGImages/v1").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 3)).save(split / "JPEGImages/v1" / f"{name}.jpg")
        (split / "Annotations/v1/1").mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 3), 255).save(split / "Annotations/v1/1" / f"{name}.png")
    return split.parent


def test_detect_rules_out_long_rvos(tmp_path: Path):
    lr = _long_rvos_tree(tmp_path / "a", with_type=True)
    for path in (lr, lr / "train"):
        d = ryv.detect(path)
        assert d.confidence == 0 and any("'type'" in r for r in d.reasons), d.reasons
    # even without 'type', per-object PNG folders are Long-RVOS
    lr = _long_rvos_tree(tmp_path / "b", with_type=False)
    d = ryv.detect(lr)
    assert d.confidence == 0 and any("per-object" in r for r in d.reasons), d.reasons


def test_detect_rules_out_mevis_and_others(tmp_path: Path):
    split = tmp_path / "mevis" / "train"
    split.mkdir(parents=True)
    (split / "meta_expressions.json").write_text(json.dumps({"videos": {"v1": {
        "frames": ["00000", "00001"], "expressions": {"0": {"exp": "two birds", "obj_id": [0, 1], "anno_id": [3, 4]}}}}}))
    (split / "mask_dict.json").write_text("{}")
    assert ryv.detect(tmp_path / "mevis").confidence == 0
    (split / "mask_dict.json").unlink()          # MeViS valid: no mask_dict, still list obj_ids
    (split / "meta_expressions.json").write_text(json.dumps({"videos": {"v1": {
        "frames": ["00000"], "expressions": {"0": {"exp": "two birds", "obj_id": [0, 1]}}}}}))
    d = ryv.detect(split)
    assert d.confidence == 0 and any("lists" in r for r in d.reasons)
    revos = tmp_path / "revos"
    (revos / "JPEGImages").mkdir(parents=True)
    (revos / "meta_expressions_train_.json").write_text(json.dumps({"videos": {}}))
    assert ryv.detect(revos).confidence == 0
    assert ryv.detect(tmp_path / "missing").confidence == 0


def test_registry_loads_with_format(root: Path):
    import longrvos_data.loaders as loaders
    ds = loaders.load(root, format="ref_youtube_vos", split="train")
    assert ds["train"].video_ids() == [A, B]


# -- bad inputs ------------------------------------------------------------------------
TRAIN_META = "meta_expressions/train/meta_expressions.json"


def _truncate(root: Path) -> None:
    path = root / TRAIN_META
    text = path.read_text()
    path.write_text(text[:text.index('"a white zebra')])


def _named_absent_object(root: Path) -> None:
    _edit_json(root / TRAIN_META, lambda d: d["videos"][A]["expressions"]["1"].update(obj_id="7"))


def _unsafe_video_id(root: Path) -> None:
    _edit_json(root / TRAIN_META, lambda d: d["videos"].update({"../evil": d["videos"][B]}))


def _extra_listed_frame(root: Path) -> None:
    _edit_json(root / TRAIN_META, lambda d: d["videos"][B]["frames"].append("00010"))


def _list_obj_id(root: Path) -> None:
    _edit_json(root / TRAIN_META, lambda d: d["videos"][B]["expressions"]["0"].update(obj_id=["1", "2"]))


def _bad_category(root: Path) -> None:
    _edit_json(root / "train/meta.json", lambda d: d["videos"][B]["objects"]["1"].update(category=5))


@pytest.mark.parametrize("mutate, file, video, field, message", [
    (_truncate, TRAIN_META, B, "expressions.0.exp", "invalid JSON"),
    (_named_absent_object, TRAIN_META, A, "expressions.1.obj_id", "names object 7"),
    (_unsafe_video_id, TRAIN_META, "../evil", "video_id", "unsafe"),
    (_extra_listed_frame, TRAIN_META, B, "frames", "no image"),
    (_list_obj_id, TRAIN_META, B, "expressions.0.obj_id", "one object per expression"),
    (_bad_category, "train/meta.json", B, "objects.1.category", "category"),
], ids=["truncated-json", "object-absent-from-annotations", "unsafe-video-id", "frame-without-image",
        "list-obj-id", "bad-category"])
def test_bad_metadata_raises_data_error(root: Path, mutate, file, video, field, message):
    mutate(root)
    with pytest.raises(DataError) as info:
        list(ryv.load(root, split="train")["train"])
    err = info.value
    assert err.file == str(root / file)
    assert err.video == video
    assert err.field == field
    assert message in str(err) and str(root / file) in str(err) and repr(video) in str(err)


def test_truncated_meta_json_is_located(root: Path):
    path = root / "train/meta.json"
    text = path.read_text()
    path.write_text(text[:text.index('"zebra"')])
    with pytest.raises(DataError) as info:
        ryv.load(root, split="train")["train"].video_ids()
    assert (info.value.file, info.value.video, info.value.field) == (str(path), B, "objects.1.category")


def _corrupt_png(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")


def _wrong_size_png(path: Path) -> None:
    hand.write_palette_png(path, ["111", "111", "000"])


@pytest.mark.parametrize("mutate, message", [(_corrupt_png, "cannot be decoded"), (_wrong_size_png, "3x3")],
                         ids=["corrupt", "wrong-size"])
def test_bad_png_raises_data_error(root: Path, mutate, message):
    png = root / "train/Annotations" / A / "00005.png"
    mutate(png)
    video = ryv.load(root)["train"].video(A)
    assert sorted(video.frame_masks(0)) == ["1", "2"]     # other frames still read
    for call in (video.frame_masks, video.frame_areas, video.mask_source.check):
        with pytest.raises(DataError) as info:
            call(1)
        err = info.value
        assert (err.file, err.video, err.field) == (str(png), A, f"Annotations/{A}/00005.png")
        assert message in str(err)


def test_check_reports_unknown_pixel_values(root: Path):
    hand.write_palette_png(root / "train/Annotations" / B / "00005.png", ["11009", "11000", "0000V"])
    video = ryv.load(root)["train"].video(B)
    problems = video.mask_source.check(1)
    assert len(problems) == 1 and "[9]" in problems[0] and B in problems[0] and "00005.png" in problems[0]
    assert video.mask_source.check(0) == []
    assert sorted(video.frame_masks(1)) == ["1"]


def test_on_error_skip_records_and_leaves_out_bad_videos(root: Path):
    _unsafe_video_id(root)
    _named_absent_object(root)
    ds = ryv.load(root, split="train", on_error="skip")
    assert [v.video_id for v in ds["train"]] == [B]
    errors = [(p.video, p.field, p.file) for p in ds.problems.errors]
    assert errors == [(A, "expressions.1.obj_id", str(root / TRAIN_META)),
                      ("../evil", "video_id", str(root / TRAIN_META))]


# -- writer ----------------------------------------------------------------------------
def test_generate_round_trip_same_pixels_ids_texts_kinds(tmp_path: Path):
    out = generate("ref_youtube_vos", tmp_path / "gen", num_videos=3, num_frames=8, seed=2)
    assert not (out / ".staging").exists()
    assert ryv.detect(out).confidence == 1.0
    ds = ryv.load(out)
    profile = PROFILES["ref_youtube_vos"]
    assert sorted(ds.splits) == sorted(profile.splits)
    for s, split in enumerate(profile.splits):
        originals = synth_videos(dataset="ref_youtube_vos", split=split, staging=tmp_path / "orig" / split,
                                 num_videos=3, num_frames=8, seed=2 * 10 + s, profile=profile)
        loaded = list(ds[split])
        assert [v.video_id for v in loaded] == [v.video_id for v in originals]
        for orig, got in zip(originals, loaded):
            assert _records(got) == _records(orig) | {"split": split}
            assert [f.path.read_bytes() for f in got.frames] == [f.path.read_bytes() for f in orig.frames]
            _assert_same_masks(orig, got)
            for i in range(got.num_frames):
                assert got.mask_source.check(i) == []
    assert ds.problems.problems == []


def test_hand_fixture_round_trips_through_the_writer(root: Path, tmp_path: Path):
    src = ryv.load(root)
    write({s.split: iter(s) for s in src}, tmp_path / "out")
    back = ryv.load(tmp_path / "out")
    assert sorted(back.splits) == sorted(src.splits)
    for split in src.splits:
        a_videos, b_videos = list(src[split]), list(back[split])
        assert [_records(v) for v in b_videos] == [_records(v) for v in a_videos]
        for a, b in zip(a_videos, b_videos):
            assert [dict(e.meta) for e in a.expressions] == [dict(e.meta) for e in b.expressions]
            if a.has_masks:
                _assert_same_masks(a, b)
            else:
                assert not b.has_masks
    objects = json.loads((tmp_path / "out/train/meta.json").read_text())["videos"]
    assert objects[A]["objects"]["3"] == {"category": "cat", "frames": ["00005"]}
    entry = json.loads((tmp_path / "out/meta_expressions/valid/meta_expressions.json").read_text())["videos"][VAL]
    assert entry["expressions"]["1"] == {"exp": "a man holding a cup"}      # hidden target: no obj_id
    assert not (tmp_path / "out/valid/meta.json").exists()


class _ArrayMasks(MaskSource):
    def __init__(self, frames: list[dict[str, np.ndarray]]) -> None:
        self.frames = frames

    def masks(self, index: int) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.frames[index].items()}


def _video(tmp_path: Path, *, tracks=("1", "2"), expressions=None, masks=None, kind="referring",
           video_id="vid1", category=None) -> Video:
    folder = tmp_path / "src" / video_id
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for name in ("00000", "00005"):
        Image.new("RGB", (3, 2), (10, 20, 30)).save(folder / f"{name}.jpg")
        frames.append(Frame(name, folder / f"{name}.jpg"))
    if masks is None:
        left = np.array([[1, 0, 0], [1, 0, 0]], dtype=bool)
        right = np.array([[0, 0, 1], [0, 0, 1]], dtype=bool)
        masks = [{tracks[0]: left, tracks[-1]: right}, {tracks[0]: left}]
    if expressions is None:
        expressions = [Expression("0", "the left one", (tracks[0],), kind)]
    return Video(dataset="other", split="train", video_id=video_id, frames=frames, height=2, width=3,
                 tracks=[Track(t, category) for t in tracks], expressions=expressions,
                 mask_source=_ArrayMasks(masks) if masks != "none" else None)


def test_writer_keeps_other_kinds_and_categories(tmp_path: Path):
    video = _video(tmp_path, kind="dynamic", category="bird")
    write({"train": [video]}, tmp_path / "out")
    back = ryv.load(tmp_path / "out")["train"].video("vid1")
    assert [(e.kind, e.track_ids) for e in back.expressions] == [("dynamic", ("1",))]
    assert [(t.track_id, t.category) for t in back.tracks] == [("1", "bird"), ("2", "bird")]
    _assert_same_masks(video, back)
    assert back.track("2").meta["frames"] == ["00000"]


def _overlap():
    m = np.ones((2, 3), dtype=bool)
    return [{"1": np.zeros((2, 3), dtype=bool)}, {"1": m, "2": m}]


@pytest.mark.parametrize("kwargs, field, message", [
    (dict(expressions=[Expression("0", "both of them", ("1", "2"), "referring")]), "expressions.0", "2 objects"),
    (dict(expressions=[Expression("0", "nothing here", (), "no-target")]), "expressions.0", "no-target"),
    (dict(expressions=[Expression("0", "nothing here", (), "referring")]), "expressions.0", "no-target"),
    (dict(masks=_overlap()), "masks[1]", "overlaps"),
    (dict(tracks=("a", "2")), "tracks.a", "decimal integer"),
    (dict(tracks=("1", "255")), "tracks.255", "1..254"),
    (dict(tracks=("0", "2")), "tracks.0", "1..254"),
    (dict(tracks=("1", "300")), "tracks.300", "1..254"),
    (dict(tracks=("01", "2")), "tracks.01", "decimal integer"),
], ids=["multi-object", "no-target", "empty-targets-with-masks", "overlap", "non-integer", "void-id", "zero",
        "too-large", "leading-zero"])
def test_writer_refuses_what_the_format_cannot_hold(tmp_path: Path, kwargs, field, message):
    good = _video(tmp_path, video_id="good")
    bad = _video(tmp_path, video_id="bad", **kwargs)
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        write({"train": [good, bad]}, out)
    assert (info.value.video, info.value.field) == ("bad", field)
    assert message in str(info.value)
    # nothing half-written: no expression file, no frame or mask folders
    assert not (out / "meta_expressions").exists() and not (out / "train").exists()


def test_writer_refuses_a_video_in_valid_and_test(tmp_path: Path):
    video = _video(tmp_path, masks="none", video_id="shared")
    with pytest.raises(DataError) as info:
        write({"valid": [video], "test": [video]}, tmp_path / "out")
    assert (info.value.video, info.value.field) == ("shared", "video_id")


def test_writer_refuses_frames_that_do_not_sort(tmp_path: Path):
    video = _video(tmp_path)
    swapped = Video(dataset="x", split="train", video_id="vid1", frames=video.frames[::-1], height=2, width=3,
                    tracks=video.tracks, expressions=video.expressions)
    with pytest.raises(DataError) as info:
        write({"train": [swapped]}, tmp_path / "out")
    assert (info.value.video, info.value.field) == ("vid1", "frames")


def test_writer_keeps_unnamed_tracks_of_videos_without_masks(tmp_path: Path):
    video = _video(tmp_path, masks="none", video_id="nomask")
    write({"valid": [video]}, tmp_path / "out")
    back = ryv.load(tmp_path / "out")["valid"].video("nomask")
    assert not back.has_masks
    assert [(t.track_id, t.category) for t in back.tracks] == [("1", None), ("2", None)]
    assert [(e.text, e.track_ids) for e in back.expressions] == [("the left one", ("1",))]
    objects = json.loads((tmp_path / "out/valid/meta.json").read_text())["videos"]["nomask"]["objects"]
    assert objects == {"1": {"category": None}, "2": {"category": None}}


# -- valid needs the test file ---------------------------------------------------------------------------
def _missing_test_message(valid_file: Path) -> str:
    return (f"the test expression file is missing: {valid_file} lists the test videos too (507 = 202 valid + 305 "
            "test in the release), and only the test file tells them apart; put the release's test "
            "meta_expressions.json there")


def test_valid_without_the_test_file_is_one_error_naming_it(root: Path):
    test_file = root / "meta_expressions/test/meta_expressions.json"
    test_file.unlink()
    ds = ryv.load(root)
    assert list(ds.splits) == ["train", "valid"]
    with pytest.raises(DataError) as info:
        ds["valid"].video_ids()
    err = info.value
    assert (err.message, err.file, err.video, err.field) == (
        _missing_test_message(root / "meta_expressions/valid/meta_expressions.json"), str(test_file), None, "videos")
    assert [v.video_id for v in ds["train"]] == [A, B]          # train still reads

    from longrvos_data.validate import validate
    errors = [(p.message, p.file, p.field) for p in validate(root) if p.level == "error"]
    assert errors == [(err.message, str(test_file), "videos")]


def test_fork_valid_without_the_test_file_names_the_fork_path(root: Path):
    _to_fork(root)
    (root / "test/meta_expressions.json").unlink()
    with pytest.raises(DataError) as info:
        ryv.load(root / "valid")["valid"].video_ids()
    assert info.value.file == str(root / "test/meta_expressions.json")
    assert info.value.message == _missing_test_message(root / "valid/meta_expressions.json")


def test_writer_puts_an_empty_test_file_beside_a_valid_split(tmp_path: Path):
    write({"valid": [_video(tmp_path, masks="none", video_id="v1")]}, tmp_path / "out")
    test_file = tmp_path / "out/meta_expressions/test/meta_expressions.json"
    assert json.loads(test_file.read_text()) == {"videos": {}}
    ds = ryv.load(tmp_path / "out")
    assert list(ds.splits) == ["valid"] and ds["valid"].video_ids() == ["v1"]
    write({"test": [_video(tmp_path, masks="none", video_id="t1")]}, tmp_path / "out")   # a later run fills it
    write({"valid": [_video(tmp_path, masks="none", video_id="v1")]}, tmp_path / "out")  # and keeps it
    assert list(json.loads(test_file.read_text())["videos"]) == ["t1"]
    ds = ryv.load(tmp_path / "out")
    assert list(ds.splits) == ["test", "valid"] and ds["test"].video_ids() == ["t1"]


def test_unsafe_ids_in_entries_the_loader_ignores_are_errors(root: Path):
    from longrvos_data.validate import validate
    objects = root / "train/meta.json"
    _edit_json(objects, lambda d: d["videos"].update({"../x": {"objects": {"1": {"category": "cat", "frames": []}}},
                                                     A: {"objects": {**d["videos"][A]["objects"],
                                                                     "1": {"category": "person",
                                                                           "frames": ["00000", "..\\00005"]}}}}))
    valid_file = root / "meta_expressions/valid/meta_expressions.json"     # a test video's entry: left out of valid
    _edit_json(valid_file, lambda d: d["videos"][TEST]["expressions"].update({"a/1": {"exp": "a wave"}}))
    ds = ryv.load(root)
    assert [v.video_id for v in ds["train"]] == [A, B] and ds["valid"].video_ids() == [VAL]
    found = [(p.message, p.file, p.video, p.field) for p in validate(root) if p.level == "error"]
    assert found == [
        ("unsafe or empty id '..\\\\00005'", str(objects), A, "objects.1.frames[1]"),
        ("unsafe or empty id '../x'", str(objects), "../x", "video_id"),
        ("unsafe or empty id 'a/1'", str(valid_file), TEST, "expressions.a/1"),
    ]
