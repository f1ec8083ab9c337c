"""MeViS loader and writer: hand-written fixture, generated round trips, detection, bad inputs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longrvos_data import DataError, masks
from longrvos_data.converters import mevis as writer
from longrvos_data.loaders import mask_dict as md
from longrvos_data.loaders import mevis
from longrvos_data.schema import Expression, Frame, RLEMaskSource, Track, Video
from longrvos_data.synth import generate, synth_splits

from fixtures import assert_masks, fixture, grid


hand = fixture("mevis_hand")


# Expected masks, frame by frame, written independently of the fixture's art.
EXPECTED_A = [
    {"10": grid("##....", "##....", "......", "......"),
     "11": grid("......", "......", "....##", "....##")},
    {"10": grid(".##...", ".##...", "......", "......")},                     # 11 is null here
    {"10": grid("..##..", "..##..", "..##..", "......"),
     "11": grid("......", "......", "......", "#####.")},
]
EXPECTED_B = [{"12": grid(".....", ".###.", ".....")}, {}]
EXPECTED_U = [{"20": grid("......", "..#...", "..#...", "......")},
              {"20": grid("......", "......", "......", "......")}]       # present but empty


# -- the hand-written fixture ------------------------------------------------------------------
def test_hand_fixture_root(tmp_path):
    root = hand.build(tmp_path)
    ds = mevis.load(root)
    assert ds.format == "mevis" and ds.version == "v2"        # train has meta_expressions_v2.json
    assert list(ds.splits) == ["train", "valid_u", "valid"]
    train = ds["train"]
    assert train.meta_file.name == "meta_expressions_v2.json"
    assert train.video_ids() == ["vidA", "vidB"]

    a = train.video("vidA")
    assert (a.dataset, a.split, a.video_id, a.height, a.width, a.fps) == ("mevis", "train", "vidA", 4, 6, None)
    assert a.frame_names == ["00000", "00001", "00002"]
    assert [f.path for f in a.frames] == [root / "train" / "JPEGImages" / "vidA" / f"0000{i}.jpg" for i in range(3)]
    assert dict(a.meta) == {"vid_id": 0}
    assert [(t.track_id, dict(t.meta)) for t in a.tracks] == [("10", {"obj_id": 0}), ("11", {"obj_id": 1})]
    exps = {e.exp_id: e for e in a.expressions}
    assert list(exps) == ["0", "1", "2"]
    assert (exps["0"].text, exps["0"].track_ids, exps["0"].kind, exps["0"].kind_raw) == \
        ("the cat jumping onto the sofa", ("10",), "referring", None)
    assert (exps["1"].text, exps["1"].track_ids, exps["1"].kind) == ("two cats playing", ("10", "11"), "referring")
    assert (exps["2"].text, exps["2"].track_ids, exps["2"].kind, exps["2"].kind_raw) == \
        ("the dog running in circles", (), "no-target", {"obj_id": [], "anno_id": []})
    assert all(dict(e.meta) == {} for e in a.expressions)
    assert_masks(a, EXPECTED_A)
    union = a.target_mask(exps["1"], a.frame_masks(2))
    np.testing.assert_array_equal(union, grid("..##..", "..##..", "..##..", "#####."))
    assert a.target_mask(exps["2"], a.frame_masks(0)) is None
    assert a.frame_areas(0) == {"10": 4, "11": 4}

    b = train.video("vidB")
    assert (b.height, b.width, b.frame_names) == (3, 5, ["00000", "00001"])
    assert [(t.track_id, dict(t.meta)) for t in b.tracks] == [("12", {"obj_id": 0})]
    assert_masks(b, EXPECTED_B)

    u = ds["valid_u"].video("vidU")                           # valid_u only has the v1 file
    assert ds["valid_u"].meta_file.name == "meta_expressions.json"
    assert [(t.track_id, dict(t.meta)) for t in u.tracks] == [("20", {"obj_id": 3})]
    assert_masks(u, EXPECTED_U)


def test_hand_fixture_valid_split_has_withheld_targets(tmp_path):
    root = hand.build(tmp_path)
    ds = mevis.load(root / "valid")
    assert list(ds.splits) == ["valid"] and ds.version is None
    v = ds["valid"].video("vidV")
    assert v.mask_source is None and not v.has_masks
    assert (v.height, v.width, dict(v.meta)) == (4, 6, {"vid_id": 9})
    assert [(t.track_id, dict(t.meta)) for t in v.tracks] == [("obj2", {"obj_id": 2})]
    e0, e1 = v.expressions
    assert (e0.text, e0.track_ids, e0.kind, dict(e0.meta)) == ("the man waving", (), "referring",
                                                               {"targets_withheld": True})
    assert (e1.text, e1.track_ids, e1.kind, dict(e1.meta)) == ("the car moving forward", ("obj2",), "referring",
                                                               {"targets_withheld": True})
    with pytest.raises(DataError, match="no masks"):
        v.frame_masks(0)


def test_hand_fixture_version_v1_and_split_folder(tmp_path):
    root = hand.build(tmp_path)
    ds = mevis.load(root, version="v1")
    assert ds.version == "v1" and ds["train"].meta_file.name == "meta_expressions.json"
    assert [e.exp_id for e in ds["train"].video("vidA").expressions] == ["0", "1"]
    one = mevis.load(root / "valid_u")
    assert list(one.splits) == ["valid_u"] and one.version is None    # nothing tells v1 from v2
    assert_masks(one["valid_u"].video("vidU"), EXPECTED_U)
    assert mevis.load(root, split="valid_u").splits.keys() == {"valid_u"}
    with pytest.raises(DataError, match="no split 'test'"):
        mevis.load(root, split="test")
    with pytest.raises(DataError, match="no meta_expressions_v2.json"):
        mevis.load(root / "valid", version="v2")


def test_generic_load_and_detect(tmp_path):
    import longrvos_data
    root = hand.build(tmp_path)
    ds = longrvos_data.load(root, format="mevis", split="train")
    assert [v.video_id for v in ds["train"]] == ["vidA", "vidB"]


# -- detection ---------------------------------------------------------------------------------
def test_detect_positive(tmp_path):
    root = hand.build(tmp_path)
    for path in (root, root / "train", root / "valid_u"):
        d = mevis.detect(path)
        assert d.confidence == 1.0, d
    valid = mevis.detect(root / "valid")
    assert valid.confidence == 1.0, valid      # one expression names obj_id as a list
    (root / "valid" / "meta_expressions.json").write_text(
        '{"videos": {"v": {"frames": ["00000", "00001", "00002"], "expressions": {"0": {"exp": "a"}}}}}')
    assert 0 < mevis.detect(root / "valid").confidence < 1      # text only: weaker evidence


def test_detect_negative(tmp_path):
    assert mevis.detect(tmp_path).confidence == 0
    assert mevis.detect(tmp_path / "missing").confidence == 0
    revos = fixture("revos_hand").build(tmp_path / "r")
    assert mevis.detect(revos).confidence == 0
    cases = {
        "long_rvos": '{"videos": {"v": {"frames": ["00000"], "expressions": '
                     '{"0": {"exp": "a", "obj_id": 1, "type": "static"}}}}}',
        "ytvos_train": '{"videos": {"v": {"frames": ["00000", "00005"], "expressions": '
                       '{"0": {"exp": "a", "obj_id": "1"}}}}}',
        "ytvos_valid": '{"videos": {"v": {"frames": ["00000", "00005", "00010"], "expressions": '
                       '{"0": {"exp": "a"}}}}}',
        "revos_like": '{"videos": {"v": {"frames": ["00000"], "expressions": '
                      '{"0": {"exp": "a", "obj_id": [1], "anno_id": [2], "type_id": 0}}}}}',
        "broken": '{"videos": {"v": {"fra',
    }
    for name, text in cases.items():
        folder = tmp_path / name / "train"
        folder.mkdir(parents=True)
        (folder / "meta_expressions.json").write_text(text)
        d = mevis.detect(tmp_path / name)
        assert d.confidence == 0, (name, d)
        assert d.reasons


# -- generated round trips -----------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_round_trip_every_mask(tmp_path):
    by_split = synth_splits("mevis", tmp_path / "staging", num_videos=3, num_frames=10)
    source_frames = {(s, v.video_id): [_digest(f.path) for f in v.frames] for s, vs in by_split.items() for v in vs}
    out = tmp_path / "out"
    writer.write(by_split, out)
    ds = mevis.load(out)
    assert ds.version == "v2" and list(ds.splits) == ["train", "valid_u", "valid"]
    for split, videos in by_split.items():
        loaded = list(ds[split])
        assert [v.video_id for v in loaded] == [v.video_id for v in videos]
        for src, got in zip(videos, loaded):
            assert (got.height, got.width, got.frame_names) == (src.height, src.width, src.frame_names)
            assert [_digest(f.path) for f in got.frames] == source_frames[(split, src.video_id)]
            assert [(e.exp_id, e.text, e.kind) for e in got.expressions] == \
                [(e.exp_id, e.text, e.kind) for e in src.expressions]
            if src.has_masks:
                assert [t.track_id for t in got.tracks] == [t.track_id for t in src.tracks]
                assert [dict(t.meta) for t in got.tracks] == [dict(t.meta) for t in src.tracks]
                assert [e.track_ids for e in got.expressions] == [e.track_ids for e in src.expressions]
                for i in range(src.num_frames):
                    want, have = src.frame_masks(i), got.frame_masks(i)
                    assert sorted(want) == sorted(have)
                    for tid in want:
                        np.testing.assert_array_equal(have[tid], want[tid])
            else:
                # valid: no anno_id in MeViS; tracks come back as "obj<obj_id>" (documented)
                assert got.mask_source is None
                rename = {t.track_id: f"obj{t.meta['obj_id']}" for t in src.tracks}
                assert [t.track_id for t in got.tracks] == [rename[t.track_id] for t in src.tracks]
                assert [e.track_ids for e in got.expressions] == \
                    [tuple(rename[t] for t in e.track_ids) for e in src.expressions]


def test_generate_writes_and_loads_back(tmp_path):
    out = generate("mevis", tmp_path / "gen", num_videos=2, num_frames=6)
    ds = mevis.load(out)
    assert ds.version == "v2"
    ref = synth_splits("mevis", tmp_path / "ref", num_videos=2, num_frames=6)
    for split, videos in ref.items():
        for src, got in zip(videos, ds[split]):
            assert [_digest(f.path) for f in got.frames] == [_digest(f.path) for f in src.frames]
            assert [(e.text, e.kind) for e in got.expressions] == [(e.text, e.kind) for e in src.expressions]
            if src.has_masks:
                for i in range(src.num_frames):
                    assert {k: m.tobytes() for k, m in got.frame_masks(i).items()} == \
                        {k: m.tobytes() for k, m in src.frame_masks(i).items()}
    assert not (out / ".staging").exists()


def _video(tmp_path, vid="v1", tracks=("1",), kinds=("referring",), frames=2, masks_by_track=None):
    folder = tmp_path / "src" / vid
    folder.mkdir(parents=True, exist_ok=True)
    fr = []
    for i in range(frames):
        p = folder / f"{i:05d}.jpg"
        Image.new("RGB", (3, 2), (i, 0, 0)).save(p)
        fr.append(Frame(f"{i:05d}", p))
    m = masks.encode(np.eye(2, 3, dtype=bool))
    rles = masks_by_track or {t: [m] * frames for t in tracks}
    exps = [Expression(str(i), f"text {i}", (tracks[0],) if k != "no-target" else (), k)
            for i, k in enumerate(kinds)]
    return Video("x", "train", vid, fr, 2, 3, [Track(t) for t in tracks], exps,
                 mask_source=RLEMaskSource(rles))


def test_writer_refuses_what_mevis_cannot_hold(tmp_path):
    with pytest.raises(DataError, match="is not an integer") as info:
        writer.write({"train": [_video(tmp_path, tracks=("cat",))]}, tmp_path / "o1")
    assert info.value.video == "v1" and info.value.field == "tracks.cat"
    with pytest.raises(DataError, match="no kind 'static'") as info:
        writer.write({"train": [_video(tmp_path, kinds=("static",))]}, tmp_path / "o2")
    assert info.value.field == "expressions.0"
    writer.write({"train": [_video(tmp_path, kinds=("static",))]}, tmp_path / "o3", lossy=True)
    assert mevis.load(tmp_path / "o3")["train"].video("v1").expressions[0].kind == "referring"
    with pytest.raises(DataError, match="already used by video 'v1'") as info:
        writer.write({"train": [_video(tmp_path), _video(tmp_path, vid="v2")]}, tmp_path / "o4")
    assert info.value.video == "v2"
    # a failed write leaves no mask_dict and no expression file behind
    assert not (tmp_path / "o4" / "train" / "mask_dict.json").exists()
    assert not list((tmp_path / "o4" / "train").glob("*.json"))
    with pytest.raises(DataError, match="v1 has no no-target"):
        writer.write({"train": [_video(tmp_path, kinds=("referring", "no-target"))]}, tmp_path / "o5",
                     version="v1")
    with pytest.raises(DataError, match="named by no expression"):
        writer.write({"train": [_video(tmp_path, tracks=("1", "2"))]}, tmp_path / "o6")


def test_writer_round_trips_a_loaded_mevis_dataset(tmp_path):
    root = hand.build(tmp_path)
    ds = mevis.load(root)
    out = tmp_path / "copy"
    writer.write({name: list(split) for name, split in ds.splits.items()}, out)
    again = mevis.load(out)
    assert again.version == "v2"
    for name in ds.splits:
        pairs = list(zip(ds[name], again[name]))
        assert len(pairs) == len(ds[name])
        for a, b in pairs:
            # dataclass equality: ids, texts, kinds, kind_raw, tracks, meta (frame paths differ)
            assert a.frame_names == b.frame_names
            assert dataclasses.replace(b, frames=a.frames) == a
    assert_masks(again["train"].video("vidA"), EXPECTED_A)
    assert_masks(again["valid_u"].video("vidU"), EXPECTED_U)


# -- bad inputs --------------------------------------------------------------------------------
def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_truncated_meta_json(tmp_path):
    root = hand.build(tmp_path)
    meta = root / "train" / "meta_expressions_v2.json"
    meta.write_text(meta.read_text()[:120])
    ds = mevis.load(root)
    with pytest.raises(DataError, match="invalid JSON") as info:
        ds["train"].video_ids()
    assert info.value.file == str(meta) and str(meta) in str(info.value)
    skipped = mevis.load(root, on_error="skip")
    assert list(skipped["train"]) == [] and [v.video_id for v in skipped["valid_u"]] == ["vidU"]
    assert skipped.problems.errors[0].file == str(meta)


def test_truncated_mask_dict(tmp_path):
    root = hand.build(tmp_path)
    mdict = root / "train" / "mask_dict.json"
    mdict.write_bytes(mdict.read_bytes()[:-40])
    with pytest.raises(DataError, match="truncated") as info:
        mevis.load(root)["train"].video("vidA")
    err = info.value
    assert (err.file, err.video, err.field) == (str(mdict), "vidA", "mask_dict[12]")
    assert str(mdict) in str(err) and "video 'vidA'" in str(err)
    builds = md.build_count()
    skipped = mevis.load(root, on_error="skip")
    assert list(skipped["train"]) == []
    assert [(p.video, p.field) for p in skipped.problems.errors] == [("vidA", "mask_dict[12]"),
                                                                     ("vidB", "mask_dict[12]")]
    assert md.build_count() == builds        # the broken file is not scanned again per video


def test_rle_of_wrong_size(tmp_path):
    root = hand.build(tmp_path)
    mdict = root / "train" / "mask_dict.json"
    _edit_json(mdict, lambda d: d["11"].__setitem__(2, masks.encode(np.ones((5, 6), dtype=bool))))
    video = mevis.load(root)["train"].video("vidA")          # metadata is fine
    with pytest.raises(DataError, match=r"RLE size \[5, 6\] differs") as info:
        video.frame_masks(0)
    err = info.value
    assert (err.file, err.video, err.field) == (str(mdict), "vidA", "mask_dict[11][2]")
    assert "video 'vidA'" in str(err) and "mask_dict[11][2]" in str(err)


def test_mask_list_of_wrong_length(tmp_path):
    root = hand.build(tmp_path)
    mdict = root / "train" / "mask_dict.json"
    _edit_json(mdict, lambda d: d["12"].append(None))
    video = mevis.load(root)["train"].video("vidB")
    with pytest.raises(DataError, match="has 3 item") as info:
        video.frame_masks(0)
    assert (info.value.video, info.value.field) == ("vidB", "mask_dict[12]")


def test_expression_names_an_anno_id_missing_from_mask_dict(tmp_path):
    root = hand.build(tmp_path)
    meta = root / "train" / "meta_expressions_v2.json"
    _edit_json(meta, lambda d: d["videos"]["vidB"]["expressions"]["0"].__setitem__("anno_id", [99]))
    ds = mevis.load(root)
    with pytest.raises(DataError, match="anno_id 99 is not in") as info:
        ds["train"].video("vidB")
    assert (info.value.file, info.value.video, info.value.field) == (str(meta), "vidB", "expressions.0.anno_id")
    skipped = mevis.load(root, on_error="skip")
    assert [v.video_id for v in skipped["train"]] == ["vidA"]
    assert [(p.video, p.field) for p in skipped.problems.errors] == [("vidB", "expressions.0.anno_id")]


def test_unsafe_video_id(tmp_path):
    root = hand.build(tmp_path)
    meta = root / "train" / "meta_expressions_v2.json"
    _edit_json(meta, lambda d: d["videos"].__setitem__("../evil", d["videos"].pop("vidB")))
    ds = mevis.load(root)
    with pytest.raises(DataError, match="unsafe") as info:
        ds["train"].video("../evil")
    assert (info.value.file, info.value.video, info.value.field) == (str(meta), "../evil", "video_id")
    skipped = mevis.load(root, on_error="skip")
    assert [v.video_id for v in skipped["train"]] == ["vidA"]


def test_frames_list_does_not_match_folder(tmp_path):
    root = hand.build(tmp_path)
    meta = root / "train" / "meta_expressions_v2.json"
    _edit_json(meta, lambda d: d["videos"]["vidA"]["frames"].append("00003"))
    ds = mevis.load(root)
    with pytest.raises(DataError, match="no image") as info:
        ds["train"].video("vidA")
    assert (info.value.file, info.value.video, info.value.field) == (str(meta), "vidA", "frames")
    (root / "train" / "JPEGImages" / "vidB" / "00007.jpg").write_bytes(b"extra")
    skipped = mevis.load(root, on_error="skip")
    assert [v.video_id for v in skipped["train"]] == ["vidB"]
    assert any(p.level == "warning" and p.video == "vidB" for p in skipped.problems.problems)


@pytest.mark.parametrize("edit, field, message", [
    (lambda e: e.__setitem__("obj_id", [0, 1]), "expressions.0.obj_id", "obj_id has 2 id"),
    (lambda e: e.__setitem__("anno_id", ["x"]), "expressions.0.anno_id[0]", "expected an integer"),
    (lambda e: e.__setitem__("anno_id", 12), "expressions.0.anno_id", "expected a list"),
    (lambda e: e.pop("exp"), "expressions.0.exp", "required key 'exp'"),
])
def test_bad_expression_fields(tmp_path, edit, field, message):
    root = hand.build(tmp_path)
    meta = root / "train" / "meta_expressions_v2.json"
    _edit_json(meta, lambda d: edit(d["videos"]["vidB"]["expressions"]["0"]))
    with pytest.raises(DataError, match=message) as info:
        mevis.load(root)["train"].video("vidB")
    assert (info.value.file, info.value.video, info.value.field) == (str(meta), "vidB", field)


# -- laziness ----------------------------------------------------------------------------------
def test_opening_one_video_reads_only_its_entries(tmp_path):
    root = hand.build(tmp_path)
    mdict = root / "train" / "mask_dict.json"
    ds = mevis.load(root)
    ds["train"].video("vidA").frame_masks(0)        # builds the index
    index = md.open_index(mdict)
    assert set(index.reads) == {"10", "11"}
    # Break vidB's entry without changing size or mtime: vidA still reads fine.
    st = mdict.stat()
    data = mdict.read_bytes()
    start = data.index(b'"12": ') + len(b'"12": ')
    mdict.write_bytes(data[:start] + b"@" * 8 + data[start + 8:])
    os.utime(mdict, ns=(st.st_atime_ns, st.st_mtime_ns))
    md.clear_open_indexes()
    builds = md.build_count()
    fresh = mevis.load(root)
    assert_masks(fresh["train"].video("vidA"), EXPECTED_A)
    assert md.build_count() == builds                # the index was reused, not rebuilt
    assert set(md.open_index(mdict).reads) == {"10", "11"}
    with pytest.raises(DataError, match="invalid JSON") as info:
        fresh["train"].video("vidB").frame_masks(0)
    assert (info.value.video, info.value.field) == ("vidB", "mask_dict[12]")


def test_loading_metadata_decodes_no_mask(tmp_path):
    root = hand.build(tmp_path)
    ds = mevis.load(root)
    for video in ds["train"]:
        assert video.num_frames > 0
    assert sum(md.open_index(root / "train" / "mask_dict.json").reads.values()) == 0


def test_v2_valid_release_file_name(tmp_path):
    root = hand.build(tmp_path)
    release = root / "valid" / "meta_expressions_v2_release.json"
    (root / "valid" / "meta_expressions.json").rename(release)
    assert mevis.MeViSPaths.META_V2_NAMES == ("meta_expressions_v2.json", "meta_expressions_v2_release.json")
    ds = mevis.load(root)
    assert ds.version == "v2" and list(ds.splits) == ["train", "valid_u", "valid"]
    assert ds["valid"].meta_file == release
    v = ds["valid"].video("vidV")
    assert v.source_file == str(release) and v.mask_source is None
    assert [(e.exp_id, e.text, e.track_ids) for e in v.expressions] == [
        ("0", "the man waving", ()), ("1", "the car moving forward", ("obj2",))]
    one = mevis.load(root / "valid", version="v2")
    assert list(one.splits) == ["valid"] and one.version == "v2" and one["valid"].meta_file == release
    with pytest.raises(DataError, match="no meta_expressions.json for version v1"):
        mevis.load(root / "valid", version="v1")
    (root / "valid" / "meta_expressions_v2.json").write_text(hand.VALID_META.replace("waving", "jumping"))
    assert mevis.load(root / "valid")["valid"].meta_file.name == "meta_expressions_v2.json"   # the usual name wins
