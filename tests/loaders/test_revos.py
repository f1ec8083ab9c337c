"""ReVOS loader and writer: hand-written fixture, foreground masks, checksums, round trips, bad inputs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longrvos_data.fsutil import file_sha256
from longrvos_data import DataError, masks
from longrvos_data.converters import revos as writer
from longrvos_data.loaders import mask_dict as md
from longrvos_data.loaders import mevis, revos
from longrvos_data.schema import Expression, Frame, RLEMaskSource, Track, Video
from longrvos_data.synth import generate, synth_splits

from fixtures import assert_masks, fixture, grid


hand = fixture("revos_hand")


EXPECTED_R1 = [
    {"1": grid("#.....", "#.....", "#.....", "......")},                              # 2 is null
    {"1": grid(".#....", ".#....", ".#....", "......"), "2": grid("....##", "....##", "......", "......")},
    {"2": grid("......", "....##", "....##", "......")},                              # 1 has left
]
EXPECTED_R2 = [{"3": grid("..#..", ".###.", "..#..")}, {"3": grid("...#.", "..###", "...#.")}]
EXPECTED_R3 = [{"4": grid("......", "......", ".####.", ".####.")}, {}]
FOREGROUND_R1 = [grid("#.....", "#.....", "#.....", "......"),
                 grid(".#..##", ".#..##", ".#....", "......"),
                 grid("......", "....##", "....##", "#.....")]        # the union of a list of two RLEs


# -- the hand-written fixture ------------------------------------------------------------------
def test_handfixture(tmp_path):
    root = hand.build(tmp_path)
    ds = revos.load(root)
    assert (ds.format, ds.version) == ("revos", None)
    assert [(name, s.in_totals) for name, s in ds.splits.items()] == \
        [("train", True), ("valid", True), ("train_sub", False)]
    train = ds["train"]
    assert train.video_ids() == ["r1", "r2"]

    r1 = train.video("r1")
    assert (r1.dataset, r1.split, r1.height, r1.width) == ("revos", "train", 4, 6)
    assert r1.frame_names == ["00000", "00001", "00002"]
    assert r1.frames[0].path == root / "JPEGImages" / "r1" / "00000.jpg"
    assert dict(r1.meta) == {"source": "MOSE"}
    assert [(t.track_id, dict(t.meta)) for t in r1.tracks] == [("1", {"obj_id": 0}), ("2", {"obj_id": 1})]
    got = [(e.exp_id, e.text, e.track_ids, e.kind, e.kind_raw, dict(e.meta)) for e in r1.expressions]
    assert got == [
        ("0", "the horse on the left", ("1",), "referring", 0, {}),
        ("1", "which animals could carry a rider?", ("1", "2"), "reasoning", 1, {}),
        ("2", "the unicorn", (), "no-target", 2, {}),
    ]
    assert_masks(r1, EXPECTED_R1)

    r2 = train.video("r2")
    assert (r2.height, r2.width, r2.frame_names) == (3, 5, ["img_010", "img_020"])
    assert [(t.track_id, dict(t.meta)) for t in r2.tracks] == [("3", {"obj_id": 0})]
    assert_masks(r2, EXPECTED_R2)

    r3 = ds["valid"].video("r3")
    assert [(e.text, e.kind, e.kind_raw) for e in r3.expressions] == \
        [("the person who is about to fall", "reasoning", 1)]
    assert_masks(r3, EXPECTED_R3)

    sub = ds["train_sub"]
    assert sub.video_ids() == ["r1"]
    assert [e.exp_id for e in sub.video("r1").expressions] == ["0"]
    # only objects that the split's expressions name are tracks: anno 1 here
    assert_masks(sub.video("r1"), [{k: m for k, m in f.items() if k == "1"} for f in EXPECTED_R1])


def test_train_sub_alone_and_meta_file_path(tmp_path):
    root = hand.build(tmp_path)
    only = revos.load(root, split="train_sub")
    assert [(n, s.in_totals) for n, s in only.splits.items()] == [("train_sub", True)]
    by_file = revos.load(root / "meta_expressions_valid_.json")
    assert list(by_file.splits) == ["valid"] and by_file.root == root
    with pytest.raises(DataError, match="no split 'test'"):
        revos.load(root, split="test")


def test_foreground(tmp_path):
    root = hand.build(tmp_path)
    ds = revos.load(root)
    r1 = ds["train"].video("r1")
    fg = revos.foreground(r1)
    assert (fg.video_id, fg.height, fg.width, len(fg)) == ("r1", 4, 6, 3)
    assert fg.ratios == (0.125, 0.25, 0.1667)
    for i, want in enumerate(FOREGROUND_R1):
        np.testing.assert_array_equal(fg.mask(i), want)
    assert ds["valid"].foreground("r3").mask(1).sum() == 0
    # only r1's entry was read from the foreground file
    assert set(md.open_index(root / "mask_dict_foreground.json").reads) == {"r1", "r3"}
    (root / "mask_dict_foreground.json").unlink()
    md.clear_open_indexes()
    assert revos.foreground(r1) is None


def test_foreground_errors(tmp_path):
    root = hand.build(tmp_path)
    path = root / "mask_dict_foreground.json"
    data = json.loads(path.read_text())
    del data["r2"]
    data["r3"]["masks_rle"][1] = masks.encode(np.zeros((3, 3), dtype=bool))
    path.write_text(json.dumps(data))
    ds = revos.load(root)
    with pytest.raises(DataError, match="no entry") as info:
        revos.foreground(ds["train"].video("r2"))
    assert (info.value.file, info.value.video, info.value.field) == (str(path), "r2", "mask_dict_foreground[r2]")
    with pytest.raises(DataError, match="differs") as info:
        revos.foreground(ds["valid"].video("r3"))
    assert info.value.field == "mask_dict_foreground[r3].masks_rle[1]"


# -- detection and checksums -------------------------------------------------------------------
def test_detect(tmp_path):
    root = hand.build(tmp_path)
    d = revos.detect(root)
    assert d.confidence == 1.0 and any("type_id" in r for r in d.reasons)
    assert revos.detect(tmp_path / "none").confidence == 0
    mevis_root = fixture("mevis_hand").build(tmp_path / "m")
    assert revos.detect(mevis_root).confidence == 0
    assert revos.detect(mevis_root / "train").confidence == 0
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "meta_expressions_valid_.json").write_text(
        '{"videos": {"v": {"frames": ["0"], "expressions": {"0": {"exp": "a", "obj_id": [1]}}}}}')
    assert 0 < revos.detect(plain).confidence < 1


def test_validate_extra_checksums(tmp_path, monkeypatch):
    root = hand.build(tmp_path)
    assert revos.validate_extra(root, split=None, checksums=False) == []
    problems = revos.validate_extra(root, split=None, checksums=True)
    by_file = {Path(p.file).name: p for p in problems}
    # every file present differs from the published sums; the zip is absent, which is fine
    assert "JPEGImages.zip" not in by_file
    for name in ("mask_dict.json", "mask_dict_foreground.json", "meta_expressions_train_.json",
                 "meta_expressions_train_sub_.json", "meta_expressions_valid_.json"):
        p = by_file[name]
        actual = hashlib.sha256((root / name).read_bytes()).hexdigest()
        assert p.level == "error" and revos.ReVOSPaths.SHA256[name] in p.message and actual in p.message
    # matching sums pass; another README revision's sum is a warning; a missing file a warning
    sums = dict(revos.ReVOSPaths.SHA256, **{"mask_dict.json": file_sha256(root / "mask_dict.json")})
    monkeypatch.setattr(revos.ReVOSPaths, "SHA256", sums)
    other = {"meta_expressions_valid_.json": file_sha256(root / "meta_expressions_valid_.json")}
    monkeypatch.setattr(revos.ReVOSPaths, "SHA256_OTHER_REVISION", other)
    (root / "mask_dict_foreground.json").unlink()
    problems = revos.validate_extra(root, split="valid", checksums=True)
    got = {Path(p.file).name: p.level for p in problems}
    assert got == {"mask_dict_foreground.json": "warning", "meta_expressions_valid_.json": "warning"}


def test_validate_extra_unextracted_zip(tmp_path):
    root = hand.build(tmp_path)
    (root / "JPEGImages").rename(root / "elsewhere")
    (root / "JPEGImages.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    problems = revos.validate_extra(root, split=None, checksums=False)
    assert [(p.level, Path(p.file).name) for p in problems] == [("error", "JPEGImages")]


# -- generated round trips -----------------------------------------------------------------------
def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_round_trip_every_mask_and_foreground(tmp_path):
    by_split = synth_splits("revos", tmp_path / "staging", num_videos=3, num_frames=9)
    digests = {v.video_id: [_digest(f.path) for f in v.frames] for vs in by_split.values() for v in vs}
    out = tmp_path / "out"
    writer.write(by_split, out)
    ds = revos.load(out)
    assert list(ds.splits) == ["train", "valid"]
    for split, videos in by_split.items():
        loaded = list(ds[split])
        assert [v.video_id for v in loaded] == [v.video_id for v in videos]
        for src, got in zip(videos, loaded):
            assert (got.height, got.width, got.frame_names) == (src.height, src.width, src.frame_names)
            assert [_digest(f.path) for f in got.frames] == digests[src.video_id]
            assert [(t.track_id, dict(t.meta)) for t in got.tracks] == [(t.track_id, dict(t.meta)) for t in src.tracks]
            assert [(e.exp_id, e.text, e.track_ids, e.kind) for e in got.expressions] == \
                [(e.exp_id, e.text, e.track_ids, e.kind) for e in src.expressions]
            assert {e.kind for e in got.expressions} >= {"referring", "no-target"}
            fg = revos.foreground(got)
            for i in range(src.num_frames):
                want, have = src.frame_masks(i), got.frame_masks(i)
                assert sorted(want) == sorted(have)
                union = np.zeros((src.height, src.width), dtype=bool)
                for tid in want:
                    np.testing.assert_array_equal(have[tid], want[tid])
                    union |= want[tid]
                np.testing.assert_array_equal(fg.mask(i), union)
                assert fg.ratios[i] == pytest.approx(union.mean())


def test_generate_writes_and_loads_back(tmp_path):
    out = generate("revos", tmp_path / "gen", num_videos=2, num_frames=5)
    ds = revos.load(out)
    assert revos.detect(out).confidence == 1.0
    ref = synth_splits("revos", tmp_path / "ref", num_videos=2, num_frames=5)
    for split, videos in ref.items():
        for src, got in zip(videos, ds[split]):
            assert [_digest(f.path) for f in got.frames] == [_digest(f.path) for f in src.frames]
            assert [(e.text, e.kind, e.track_ids) for e in got.expressions] == \
                [(e.text, e.kind, e.track_ids) for e in src.expressions]
            for i in range(src.num_frames):
                assert {k: m.tobytes() for k, m in got.frame_masks(i).items()} == \
                    {k: m.tobytes() for k, m in src.frame_masks(i).items()}


def test_writer_round_trips_the_hand_fixture_with_train_sub(tmp_path):
    root = hand.build(tmp_path)
    ds = revos.load(root)
    out = tmp_path / "copy"
    writer.write({name: list(split) for name, split in ds.splits.items()}, out)
    again = revos.load(out)
    assert [(n, s.in_totals) for n, s in again.splits.items()] == [("train", True), ("valid", True),
                                                                   ("train_sub", False)]
    for name in ds.splits:
        for a, b in zip(ds[name], again[name]):
            assert dataclasses.replace(b, frames=a.frames) == a
    assert_masks(again["train"].video("r1"), EXPECTED_R1)
    assert_masks(again["train_sub"].video("r1"), [{k: m for k, m in f.items() if k == "1"} for f in EXPECTED_R1])
    # the foreground entries of ReVOS videos are copied verbatim (r1 keeps its list form)
    src_fg = json.loads((root / "mask_dict_foreground.json").read_text())
    assert json.loads((out / "mask_dict_foreground.json").read_text()) == src_fg
    assert len(json.loads((out / "mask_dict.json").read_text())) == 4     # r1's masks written once


def test_writer_takes_train_sub_before_train(tmp_path):
    root = hand.build(tmp_path)
    ds = revos.load(root)
    out = tmp_path / "copy"
    writer.write({"train_sub": list(ds["train_sub"]), "train": list(ds["train"])}, out)
    again = revos.load(out)
    assert_masks(again["train"].video("r1"), EXPECTED_R1)
    assert sorted(json.loads((out / "mask_dict.json").read_text())) == ["1", "2", "3"]


def _video(tmp_path, kinds=("referring",), tracks=("5",)):
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    p = folder / "00000.jpg"
    Image.new("RGB", (3, 2)).save(p)
    m = masks.encode(np.eye(2, 3, dtype=bool))
    exps = [Expression(str(i), "t", (tracks[0],), k) for i, k in enumerate(kinds)]
    return Video("x", "train", "v", [Frame("00000", p)], 2, 3, [Track(t) for t in tracks], exps,
                 mask_source=RLEMaskSource({t: [m] for t in tracks}))


def test_writer_refuses_kinds_revos_lacks(tmp_path):
    with pytest.raises(DataError, match="no kind 'static'") as info:
        writer.write({"train": [_video(tmp_path, kinds=("static",))]}, tmp_path / "o1")
    assert (info.value.video, info.value.field) == ("v", "expressions.0")
    assert not (tmp_path / "o1" / "mask_dict.json").exists()
    writer.write({"train": [_video(tmp_path, kinds=("static",))]}, tmp_path / "o2", lossy=True)
    assert revos.load(tmp_path / "o2")["train"].video("v").expressions[0].kind_raw == 0
    with pytest.raises(DataError, match="not an integer"):
        writer.write({"train": [_video(tmp_path, tracks=("a",))]}, tmp_path / "o3")


# -- bad inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [(5, "type_id must be 0"), (None, "type_id must be 0"),
                                            ("missing", "required key 'type_id'")])
def test_bad_type_id(tmp_path, value, message):
    root = hand.build(tmp_path)
    meta = root / "meta_expressions_train_.json"
    data = json.loads(meta.read_text())
    exp = data["videos"]["r2"]["expressions"]["0"]
    if value == "missing":
        del exp["type_id"]
    else:
        exp["type_id"] = value
    meta.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as info:
        revos.load(root)["train"].video("r2")
    assert (info.value.file, info.value.video, info.value.field) == (str(meta), "r2", "expressions.0.type_id")
    skipped = revos.load(root, split="train", on_error="skip")
    assert [v.video_id for v in skipped["train"]] == ["r1"]


def test_rle_of_wrong_size_in_shared_mask_dict(tmp_path):
    root = hand.build(tmp_path)
    path = root / "mask_dict.json"
    data = json.loads(path.read_text())
    data["3"][1] = masks.encode(np.ones((4, 6), dtype=bool))   # r2 is 3x5
    path.write_text(json.dumps(data))
    video = revos.load(root)["train"].video("r2")
    with pytest.raises(DataError, match=r"RLE size \[4, 6\] differs from the video's \[3, 5\]") as info:
        video.frame_masks(0)
    assert (info.value.file, info.value.video, info.value.field) == (str(path), "r2", "mask_dict[3][1]")


def test_missing_mask_dict_reads_without_masks(tmp_path):
    root = hand.build(tmp_path)
    (root / "mask_dict.json").unlink()
    ds = revos.load(root)
    video = ds["train"].video("r1")
    assert video.mask_source is None and [t.track_id for t in video.tracks] == ["1", "2"]
    assert any("mask_dict.json is missing" in p.message for p in ds.problems.problems)


def test_shares_the_mevis_machinery():
    assert issubclass(revos.ReVOSSplit, mevis.MaskDictSplit)
