"""YouTube-VIS, DAVIS and SOLA: hand-written inputs, exact outputs, sidecars, lossy lists, resume, workers."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import longrvos_data
from longrvos_data import DataError, masks
from longrvos_data.converters import base, davis, sola, ytvis
from longrvos_data.converters.base import Dropped, Keeper, SplitJob, convert
from longrvos_data.sidecar import SIDECAR, Sidecar
from longrvos_data.errors import LongRVOSError
from longrvos_data.loaders import detect_all, detect_format
from longrvos_data.loaders import davis as davis_loader
from longrvos_data.loaders import sola as sola_loader
from longrvos_data.loaders import ytvis as ytvis_loader
from longrvos_data.schema import Expression, Frame, MaskSource, Track, Video
from longrvos_data.synth import generate, synth_videos

from fixtures import fixture


hand = fixture("interchange_hand")
art = hand.art


@pytest.fixture
def videos(tmp_path: Path) -> dict[str, list[Video]]:
    return hand.hand_videos(tmp_path / "staging")


def _dropped(report) -> set[tuple]:
    return {(d.split, d.video, d.what, d.exp_id, d.track_id, d.frames, d.key) for d in report.dropped}


# -- reading hand-written inputs ------------------------------------------------------------------------
def test_ytvis_reads_a_json_written_by_other_tools(tmp_path: Path) -> None:
    root = hand.build_ytvis(tmp_path)
    assert detect_format(root) == "ytvis"
    ds = longrvos_data.load(root)
    video = ds["valid"].video("v5")
    assert video.frame_names == ["00000", "00005"] and (video.height, video.width) == (3, 4)
    assert [(t.track_id, t.category) for t in video.tracks] == [("11", "duck"), ("12", "duck")]
    assert video.expressions == ()
    for tid, frames in hand.YTVIS_EXPECTED.items():
        for i, rows in frames.items():
            got = video.frame_masks(i)
            if rows is None:
                assert tid not in got
            else:
                assert np.array_equal(got[tid], art(rows))
    assert video.frame_areas(0) == {"11": 2}


def test_ytvis_large_file_is_indexed_on_disk(tmp_path: Path, monkeypatch) -> None:
    root = hand.build_ytvis(tmp_path)
    monkeypatch.setenv("LONGRVOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ytvis_loader, "LARGE_FILE_BYTES", 0)
    video = longrvos_data.load(root)["valid"].video("v5")
    index = list((tmp_path / "cache" / "ytvis").glob("*.sqlite"))
    assert len(index) == 1
    assert np.array_equal(video.frame_masks(1)["12"], art(hand.YTVIS_EXPECTED["12"][1]))
    stamp = index[0].stat().st_mtime_ns
    again = longrvos_data.load(root)["valid"].video("v5")     # reuses the index
    assert index[0].stat().st_mtime_ns == stamp
    assert [t.track_id for t in again.tracks] == ["11", "12"]


def test_ytvis_refuses_polygons_and_wrong_sizes(tmp_path: Path) -> None:
    root = hand.build_ytvis(tmp_path)
    data = json.loads(hand.YTVIS_JSON)
    data["annotations"][0]["segmentations"][0] = [[0, 0, 1, 0, 1, 1]]
    (root / "valid" / "instances.json").write_text(json.dumps(data))
    video = longrvos_data.load(root)["valid"].video("v5")
    with pytest.raises(DataError, match="polygon") as info:
        video.frame_masks(0)
    assert info.value.video == "v5" and info.value.field == "annotations[id=11].segmentations[0]"
    data["annotations"][0]["segmentations"][0] = {"size": [4, 4], "counts": [16]}
    (root / "valid" / "instances.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"RLE size \[4, 4\] is not the video's \[3, 4\]"):
        longrvos_data.load(root)["valid"].video("v5").frame_masks(0)


def test_ytvis_bad_rle_counts_name_file_video_and_field(tmp_path: Path) -> None:
    """Before: the codec's bare "RLE counts sum to 2 pixel(s), not 3x4 = 12", no file or video,
    and only when frame 1 was decoded."""
    root = hand.build_ytvis(tmp_path)
    path = root / "valid" / "instances.json"
    data = json.loads(hand.YTVIS_JSON)
    data["annotations"][1]["segmentations"][1] = {"size": [3, 4], "counts": "02"}
    path.write_text(json.dumps(data))
    video = longrvos_data.load(root)["valid"].video("v5")
    with pytest.raises(DataError) as info:
        video.frame_areas(0)              # the whole video is checked at once
    assert str(info.value) == (f"{path}: video 'v5': field 'annotations[id=12].segmentations[1]': "
                               "RLE counts sum to 2 pixel(s), not 3x4 = 12")


def test_ytvis_truncated_json_names_the_file(tmp_path: Path) -> None:
    root = hand.build_ytvis(tmp_path)
    path = root / "valid" / "instances.json"
    path.write_text(hand.YTVIS_JSON[:200])
    with pytest.raises(DataError, match="invalid JSON") as info:
        ytvis_loader.load(root)
    assert info.value.file == str(path)


def test_sola_reads_a_gt_masklet(tmp_path: Path) -> None:
    root = hand.build_sola(tmp_path)
    assert detect_format(root) == "sola"
    video = longrvos_data.load(root)["train"].video("s1")
    assert [t.track_id for t in video.tracks] == ["0"]
    assert video.tracks[0].meta == {"anno_id": 0, "prompt_type": "GT MASK"}
    assert np.array_equal(video.frame_masks(0)["0"], art(["#..", "..."]))
    assert video.frame_masks(1) == {}          # an all-zero RLE is an absent mask


def test_sola_refuses_grounding_dino_folders_and_short_rle_lists(tmp_path: Path) -> None:
    root = hand.build_sola(tmp_path)
    masklet = root / "train" / "sam2_masklets" / "s1" / "00000.json"
    data = json.loads(hand.SOLA_MASKLET)
    data["rle"] = data["rle"][:1]
    masklet.write_text(json.dumps(data))
    with pytest.raises(DataError, match="1 RLEs for 2 frames") as info:
        longrvos_data.load(root)["train"].video("s1")
    assert info.value.file == str(masklet)
    (root / "train" / "sam2_masklets" / "s1" / "exp0").mkdir()
    with pytest.raises(DataError, match="GroundingDINO"):
        longrvos_data.load(root)["train"].video("s1")


def test_sola_bad_rle_counts_name_file_video_and_field(tmp_path: Path) -> None:
    """Before: the codec's bare "RLE counts do not decode: ..." with no file or video."""
    root = hand.build_sola(tmp_path)
    masklet = root / "train" / "sam2_masklets" / "s1" / "00000.json"
    data = json.loads(hand.SOLA_MASKLET)
    data["rle"][1] = {"size": [2, 3], "counts": "1b"}
    masklet.write_text(json.dumps(data))
    video = longrvos_data.load(root)["train"].video("s1")
    with pytest.raises(DataError) as info:
        video.frame_masks(0)
    assert str(info.value) == (f"{masklet}: video 's1': field 'rle[1]': "
                               "RLE counts do not decode: the string ends inside a value (truncated?)")


def test_davis_reads_a_hand_written_layout(tmp_path: Path) -> None:
    root = hand.build_davis(tmp_path)
    assert detect_format(root) == "davis"
    video = longrvos_data.load(root)["valid"].video("d1")
    assert [(t.track_id, t.category) for t in video.tracks] == [("a", "bird"), ("b", None)]
    assert [(e.exp_id, e.track_ids, e.kind) for e in video.expressions] == [("x", ("a",), "referring")]
    m0, m1 = video.frame_masks(0), video.frame_masks(1)
    assert np.array_equal(m0["a"], art(["##.", "...", "..."]))
    assert np.array_equal(m0["b"], art(["...", "...", ".##"]))
    assert set(m1) == {"b"} and np.array_equal(m1["b"], art(["...", "...", ".#."]))
    assert video.frame_areas(0) == {"a": 2, "b": 2}
    assert video.mask_source.check(0) == []               # 255 is void, not an unknown object


def test_davis_check_reports_unknown_values_and_refuses_wrong_sizes(tmp_path: Path) -> None:
    root = hand.build_davis(tmp_path)
    png = root / "valid" / "Annotations" / "d1" / "00001.png"
    masks.write_palette_png(png, hand.davis_values(["005", "000", "030"]))
    video = longrvos_data.load(root)["valid"].video("d1")
    assert video.mask_source.check(1) == ["Annotations/d1/00001.png: pixel value(s) [5] are no known object"]
    masks.write_palette_png(png, np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="mask is 2x3, the video is 3x3") as info:
        longrvos_data.load(root)["valid"].video("d1").frame_masks(1)
    assert (info.value.file, info.value.video) == (str(png), "d1")
    png.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="cannot be decoded"):
        longrvos_data.load(root)["valid"].video("d1").frame_masks(1)


# -- writing: exact outputs ---------------------------------------------------------------------------
def test_davis_writer_output_and_sidecar(tmp_path: Path, videos) -> None:
    report = davis.write(videos, tmp_path / "out")
    out = tmp_path / "out"
    meta = json.loads((out / "train" / "meta_davis.json").read_text())
    assert meta["format"] == "longrvos-davis"
    entry = meta["videos"]["ovl"]
    assert entry["objects"] == {"1": {"track_id": "cat", "category": "cat", "meta": {}},
                                "2": {"track_id": "dog", "category": None, "meta": {}},
                                "3": {"track_id": "7", "category": "seven", "meta": {"obj_id": 7}}}
    assert entry["expressions"] == {
        "a": {"exp": "the cat", "obj_id": "1", "kind": "static", "kind_raw": "static", "meta": {}},
        "d": {"exp": "the seven", "obj_id": "3", "kind": "hybrid", "kind_raw": "static+dynamic", "meta": {}}}
    png = np.asarray(Image.open(out / "train" / "Annotations" / "ovl" / "00000.png"))
    assert Image.open(out / "train" / "Annotations" / "ovl" / "00000.png").mode == "P"
    assert png.tolist() == [[1, 2, 2, 0, 0], [1, 2, 1, 0, 0], [0, 0, 0, 3, 3], [0, 0, 0, 3, 3]]
    assert (out / "ImageSets" / "train.txt").read_text() == "ovl\n"
    assert not (out / "test" / "Annotations").exists()
    assert report.sidecars == [out / "train" / SIDECAR, out / "test" / SIDECAR]
    side = json.loads((out / "train" / SIDECAR).read_text())["videos"]["ovl"]
    assert [(e["position"], e["exp_id"], e["track_ids"]) for e in side["expressions"]] == [
        (1, "b", ["cat", "dog"]), (2, "c", [])]
    assert set(side["masks"]) == {"cat", "dog"}
    assert np.array_equal(masks.decode(side["masks"]["cat"]["0"]), art(hand.OVL_MASKS[0]["cat"]))
    assert masks.area([side["masks"]["dog"]["1"]])[0] == 0
    assert list(side["masks"]["cat"]) == ["0"] and list(side["masks"]["dog"]) == ["1"]
    assert report.dropped == [] and not (out / base.PARTS_DIR).exists()
    back = davis_loader.load(out)
    hand.assert_same_split(videos["train"], list(back["train"]))
    hand.assert_same_split(videos["test"], list(back["test"]))


def test_davis_lossy_lists_exactly_what_it_dropped(tmp_path: Path, videos) -> None:
    report = davis.write(videos, tmp_path / "out", lossy=True)
    assert _dropped(report) == {
        ("train", "ovl", "expression", "b", None, (), None),
        ("train", "ovl", "expression", "c", None, (), None),
        ("train", "ovl", "mask", None, "cat", (0,), None),
        ("train", "ovl", "mask", None, "dog", (1,), None),
        ("test", "bare", "expression", "1", None, (), None),
    }
    assert str(next(d for d in report.dropped if d.track_id == "cat")) == (
        "train/ovl: track 'cat' frames 0: overlap: a palette PNG holds one object per pixel (2 pixel(s) covered)")
    assert report.sidecars == [] and not list((tmp_path / "out").glob(f"*/{SIDECAR}"))
    video = davis_loader.load(tmp_path / "out")["train"].video("ovl")
    assert np.array_equal(video.frame_masks(0)["cat"], art(["#....", "#.#..", ".....", "....."]))
    assert "dog" not in video.frame_masks(1)
    assert [e.exp_id for e in video.expressions] == ["a", "d"]


def test_davis_refuses_without_sidecar(tmp_path: Path, videos) -> None:
    with pytest.raises(DataError, match="one object per expression") as info:
        davis.write(videos, tmp_path / "out", sidecar=False)
    assert (info.value.video, info.value.field) == ("ovl", "expressions.b")


def test_davis_keeps_tracks_beyond_the_palette(tmp_path: Path) -> None:
    """256 one-pixel tracks: 254 get palette values, the last two live in the sidecar."""
    frame = tmp_path / "f" / "00000.jpg"
    frame.parent.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(frame)

    class OnePixel(MaskSource):
        def masks(self, index: int) -> dict[str, np.ndarray]:
            out = {}
            for k in range(256):
                m = np.zeros((16, 16), dtype=bool)
                m[k // 16, k % 16] = True
                out[f"t{k}"] = m
            return out

    many = Video(dataset="x", split="train", video_id="many", frames=[Frame("00000", frame)], height=16, width=16,
                 tracks=[Track(f"t{k}") for k in range(256)],
                 expressions=[Expression("last", "the last dot", ("t255",), "referring")], mask_source=OnePixel())
    davis.write({"train": [many]}, tmp_path / "out")
    entry = json.loads((tmp_path / "out" / "train" / "meta_davis.json").read_text())["videos"]["many"]
    assert len(entry["objects"]) == 254 and entry["objects"]["254"]["track_id"] == "t253"
    assert entry["expressions"] == {}
    hand.assert_same_video(many, davis_loader.load(tmp_path / "out")["train"].video("many"))
    lossy = davis.write({"train": [many]}, tmp_path / "lossy", lossy=True)
    assert _dropped(lossy) == {("train", "many", "track", None, "t254", (), None),
                               ("train", "many", "track", None, "t255", (), None),
                               ("train", "many", "mask", None, "t254", (0,), None),
                               ("train", "many", "mask", None, "t255", (0,), None),
                               ("train", "many", "expression", "last", None, (), None)}


def test_davis_keeps_natural_ids_as_pixel_values(tmp_path: Path) -> None:
    vids = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "s", num_videos=3, num_frames=4)
    davis.write({"train": vids}, tmp_path / "out")
    v = vids[2]
    png = np.asarray(Image.open(tmp_path / "out" / "train" / "Annotations" / v.video_id / "00000.png"))
    present = v.frame_masks(0)
    assert set(np.unique(png).tolist()) - {0} == {int(t) for t in present}
    for tid, m in present.items():
        assert np.array_equal(png == int(tid), m)


def test_ytvis_writer_output_and_sidecar(tmp_path: Path, videos) -> None:
    report = ytvis.write(videos, tmp_path / "out")
    out = tmp_path / "out"
    data = json.loads((out / "train" / "instances.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "cat", "supercategory": "object"},
                                  {"id": 2, "name": "object", "supercategory": "object"},
                                  {"id": 3, "name": "seven", "supercategory": "object"}]
    assert data["videos"] == [{"id": 1, "width": 5, "height": 4, "length": 3,
                               "file_names": ["ovl/00000.jpg", "ovl/00001.jpg", "ovl/00002.jpg"],
                               "longrvos": {"fps": 6.0, "meta": {"source": "hand"}}}]
    anns = data["annotations"]
    assert [(a["id"], a["video_id"], a["category_id"], a["longrvos"]["track_id"]) for a in anns] == [
        (1, 1, 1, "cat"), (2, 1, 2, "dog"), (3, 1, 3, "7")]
    cat, dog, seven = anns
    assert cat["segmentations"][1] is None and dog["segmentations"][1] is None   # absent / present-but-empty
    assert cat["areas"] == [5, None, 1] and dog["areas"] == [3, None, 2] and seven["areas"] == [4, 4, 5]
    assert cat["bboxes"][0] == [0.0, 0.0, 3.0, 2.0] and seven["bboxes"][2] == [0.0, 3.0, 5.0, 1.0]
    assert all(isinstance(s["counts"], str) for s in cat["segmentations"] if s)
    assert np.array_equal(masks.decode(cat["segmentations"][0]), art(hand.OVL_MASKS[0]["cat"]))
    assert dog["longrvos"] == {"track_id": "dog", "category": None, "meta": {}}
    assert (out / "train" / "JPEGImages" / "ovl" / "00002.jpg").read_bytes() == \
        videos["train"][0].frames[2].path.read_bytes()
    test = json.loads((out / "test" / "instances.json").read_text())
    assert "annotations" not in test and test["categories"] == []
    side = json.loads((out / "test" / SIDECAR).read_text())["videos"]["bare"]
    assert [t["track_id"] for t in side["tracks"]] == ["1", "2"] and side["values"] == {"has_masks": False}
    train_side = json.loads((out / "train" / SIDECAR).read_text())["videos"]["ovl"]
    assert [e["exp_id"] for e in train_side["expressions"]] == ["a", "b", "c", "d"]
    assert list(train_side["masks"]) == ["dog"] and list(train_side["masks"]["dog"]) == ["1"]
    assert report.videos == {"train": 1, "test": 1}
    back = ytvis_loader.load(out)
    hand.assert_same_split(videos["train"], list(back["train"]))
    hand.assert_same_split(videos["test"], list(back["test"]))
    assert back["train"].video("ovl").fps == 6.0 and back["train"].video("ovl").meta == {"source": "hand"}


def test_ytvis_lossy_lists_exactly_what_it_dropped(tmp_path: Path, videos) -> None:
    report = ytvis.write(videos, tmp_path / "out", lossy=True)
    expected = {("train", "ovl", "expression", e, None, (), None) for e in "abcd"}
    expected |= {("train", "ovl", "mask", None, "dog", (1,), None),
                 ("test", "bare", "expression", "0", None, (), None),
                 ("test", "bare", "expression", "1", None, (), None),
                 ("test", "bare", "track", None, "1", (), None),
                 ("test", "bare", "track", None, "2", (), None)}
    assert _dropped(report) == expected
    back = ytvis_loader.load(tmp_path / "out")
    assert back["train"].video("ovl").frame_masks(1).keys() == {"7"}
    assert back["test"].video("bare").tracks == () and not back["test"].video("bare").has_masks


def test_ytvis_video_without_masks_in_an_annotated_split(tmp_path: Path, videos) -> None:
    ovl = videos["train"][0]
    bare = dataclasses.replace(videos["test"][0], split="train")
    ytvis.write({"train": [ovl, bare]}, tmp_path / "out")
    back = ytvis_loader.load(tmp_path / "out")["train"]
    assert back.video("ovl").has_masks and not back.video("bare").has_masks
    report = ytvis.write({"train": [ovl, bare]}, tmp_path / "lossy", lossy=True)
    assert ("train", "bare", "value", None, None, (), "has_masks") in _dropped(report)
    assert ytvis_loader.load(tmp_path / "lossy")["train"].video("bare").frame_masks(0) == {}
    plain = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "s", num_videos=2, num_frames=3)
    plain = [dataclasses.replace(v, expressions=()) for v in plain]
    plain[1] = dataclasses.replace(plain[1], tracks=(), mask_source=None)
    with pytest.raises(DataError, match="has no masks but its split has") as info:
        ytvis.write({"train": plain}, tmp_path / "strict", sidecar=False)
    assert info.value.video == plain[1].video_id


def test_sola_writer_output_and_sidecar(tmp_path: Path, videos) -> None:
    sola.write(videos, tmp_path / "out")
    out = tmp_path / "out"
    mdir = out / "train" / "sam2_masklets" / "ovl"
    assert sorted(p.name for p in mdir.iterdir()) == ["00000.json", "00001.json", "00002.json"]
    cat = json.loads((mdir / "00000.json").read_text())
    assert (cat["anno_id"], cat["prompt_type"], cat["iou"], cat["longrvos"]["track_id"]) == (
        0, "GT MASK", {"cat": 1.0}, "cat")
    assert len(cat["rle"]) == 3 and masks.area([cat["rle"][1]])[0] == 0     # absent: an all-zero RLE
    assert np.array_equal(masks.decode(cat["rle"][0]), art(hand.OVL_MASKS[0]["cat"]))
    assert (out / "test" / "sam2_masklets").is_dir() and not (out / "test" / "sam2_masklets" / "bare").exists()
    side = json.loads((out / "train" / SIDECAR).read_text())["videos"]["ovl"]
    assert side["values"] == {"fps": 6.0, "meta": {"source": "hand"}}
    assert list(side["masks"]) == ["dog"]
    back = sola_loader.load(out)
    hand.assert_same_split(videos["train"], list(back["train"]))
    hand.assert_same_split(videos["test"], list(back["test"]))
    report = sola.write(videos, tmp_path / "lossy", lossy=True)
    expected = {("train", "ovl", "expression", e, None, (), None) for e in "abcd"}
    expected |= {("train", "ovl", "mask", None, "dog", (1,), None),
                 ("train", "ovl", "value", None, None, (), "fps"),
                 ("train", "ovl", "value", None, None, (), "meta"),
                 ("test", "bare", "expression", "0", None, (), None),
                 ("test", "bare", "expression", "1", None, (), None),
                 ("test", "bare", "track", None, "1", (), None),
                 ("test", "bare", "track", None, "2", (), None)}
    assert _dropped(report) == expected


def test_sola_refuses_frame_names_out_of_order(tmp_path: Path, videos) -> None:
    ovl = videos["train"][0]
    shuffled = dataclasses.replace(ovl, frames=[ovl.frames[1], ovl.frames[0], ovl.frames[2]])
    with pytest.raises(DataError, match="do not sort in frame order") as info:
        sola.write({"train": [shuffled]}, tmp_path / "out", lossy=True)
    assert (info.value.video, info.value.field) == ("ovl", "frames")


def test_writers_refuse_a_frame_that_is_no_jpeg_or_png_before_writing_it(tmp_path: Path, videos) -> None:
    from longrvos_data.converters import ref_youtube_vos

    def with_bmp_frame(video: Video) -> Video:
        bmp = tmp_path / f"{video.video_id}.bmp"
        bmp.write_bytes(video.frames[1].path.read_bytes())
        return dataclasses.replace(video, frames=[video.frames[0], Frame(video.frames[1].name, bmp),
                                                  *video.frames[2:]])

    ryv = next(iter(longrvos_data.load(generate("ref_youtube_vos", tmp_path / "ryv", num_videos=1,
                                                splits=["train"]))["train"]))
    cases = [(w, videos["train"][0], {"lossy": True}) for w in (ytvis, davis, sola)]
    for writer, video, options in [*cases, (ref_youtube_vos, ryv, {})]:
        out = tmp_path / writer.__name__.rsplit(".", 1)[-1]
        with pytest.raises(DataError, match="is not a JPEG or PNG") as info:
            writer.write({"train": [with_bmp_frame(video)]}, out, **options)
        assert (info.value.video, info.value.field) == (video.video_id, "frames[1]"), writer.__name__
        written = [p for p in out.rglob("*") if p.is_file() and video.video_id in p.parts]
        assert not written, writer.__name__


def test_writers_refuse_masks_of_the_wrong_size(tmp_path: Path, videos) -> None:
    class WrongSize(MaskSource):
        def masks(self, index: int) -> dict[str, np.ndarray]:
            return {"cat": np.ones((3, 5), dtype=bool)}

    bad = dataclasses.replace(videos["train"][0], mask_source=WrongSize())
    for writer, message in ((davis, "mask is 3x5, the video is 4x5"), (ytvis, r"RLE size \[3, 5\]"),
                            (sola, r"RLE size \[3, 5\]")):
        with pytest.raises(DataError, match=message) as info:
            writer.write({"train": [bad]}, tmp_path / writer.NAME)
        assert info.value.video == "ovl" and info.value.field == "masks[0].cat"


# -- the sidecar ---------------------------------------------------------------------------------------
def test_sidecar_apply_inserts_replaces_and_renames(tmp_path: Path, videos) -> None:
    ovl = videos["train"][0]
    official = dataclasses.replace(ovl, tracks=[Track("c1"), Track("dog"), Track("7")],
                                   expressions=[Expression("a", "the cat", ("c1",), "referring"),
                                                Expression("d", "the seven", ("7",), "hybrid")],
                                   mask_source=None)
    keep = Keeper(ovl, split="train", target="x", lossy=False)
    keep.rename("c1", "cat", "the format renames")
    keep.track(0, ovl.tracks[0], "no categories", lost="category")
    keep.track(2, ovl.tracks[2], "no categories", lost="category")
    keep.expression(0, ovl.expressions[0], "no static kind", lost="kind")
    for pos in (1, 2):
        keep.expression(pos, ovl.expressions[pos], "cannot hold")
    keep.value("fps", 6.0, "no fps")
    base.write_sidecar(tmp_path, target="x", split="train", entries=lambda: [("ovl", keep.entry())])
    got = Sidecar.read(tmp_path, target="x").apply(official)
    assert [(t.track_id, t.category) for t in got.tracks] == [("cat", "cat"), ("dog", None), ("7", "seven")]
    assert [(e.exp_id, e.kind, e.track_ids) for e in got.expressions] == [
        ("a", "static", ("cat",)), ("b", "dynamic", ("cat", "dog")), ("c", "no-target", ()),
        ("d", "hybrid", ("7",))]
    assert got.fps == 6.0 and got.mask_source is None
    with pytest.raises(DataError, match="written for 'x', not 'davis'"):
        Sidecar.read(tmp_path, target="davis")


@pytest.mark.parametrize("change, message, field", [
    (lambda v: v["masks"]["cat"].update({"9": v["masks"]["cat"].pop("0")}), r"frame index '9' is not in 0..2",
     "videos.ovl.masks.cat.9"),
    (lambda v: v["masks"]["cat"].update({"0": masks.empty(2, 2)}), r"RLE size \[2, 2\] is not the video's",
     "videos.ovl.masks.cat.0"),
    (lambda v: v["expressions"][0].pop("kind"), "malformed entry", "videos.ovl"),
], ids=["frame-index", "rle-size", "expression"])
def test_a_bad_sidecar_names_file_video_and_field(tmp_path: Path, videos, change, message, field) -> None:
    davis.write(videos, tmp_path / "out")
    path = tmp_path / "out" / "train" / SIDECAR
    data = json.loads(path.read_text())
    change(data["videos"]["ovl"])
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as info:
        davis_loader.load(tmp_path / "out")["train"].video("ovl")
    assert (info.value.file, info.value.video, info.value.field) == (str(path), "ovl", field)


def test_a_stale_sidecar_is_removed_on_rewrite(tmp_path: Path, videos) -> None:
    davis.write(videos, tmp_path / "out")
    assert (tmp_path / "out" / "train" / SIDECAR).is_file()
    simple = synth_videos(dataset="long_rvos", split="train", staging=tmp_path / "s", num_videos=1, num_frames=3)
    davis.write({"train": simple}, tmp_path / "out")
    assert not (tmp_path / "out" / "train" / SIDECAR).exists()


# -- detection -----------------------------------------------------------------------------------------
def test_each_output_is_detected_as_its_own_format_only(tmp_path: Path, videos) -> None:
    for writer in (ytvis, davis, sola):
        out = tmp_path / writer.NAME
        writer.write(videos, out)
        found = detect_all(out)
        assert found[0].format == writer.NAME and found[0].confidence > 0
        assert all(d.confidence == 0 for d in found[1:] if d.format in ("ytvis", "davis", "sola")), found
        assert detect_format(out) == writer.NAME
        assert detect_format(out / "train") == writer.NAME        # one split folder


@pytest.mark.parametrize("fmt", ["long_rvos", "lvos", "ref_youtube_vos"])
def test_interchange_detectors_reject_the_source_formats(tmp_path: Path, fmt: str) -> None:
    root = generate(fmt, tmp_path / fmt, num_videos=1, num_frames=3)
    for module in (ytvis_loader, davis_loader, sola_loader):
        found = module.detect(root)
        assert found.confidence == 0 and found.reasons, (module.NAME, found)


# -- streaming, resume, workers -------------------------------------------------------------------------
_KILLED_RUN = textwrap.dedent("""
    import dataclasses, sys, time
    from pathlib import Path
    import longrvos_data
    from longrvos_data.converters import davis
    from longrvos_data.schema import MaskSource

    src, out, ready = (Path(a) for a in sys.argv[1:4])

    class Blocking(MaskSource):
        def __init__(self, base):
            self.base = base
        def masks(self, index):
            if index == 2:
                ready.write_text("blocked")
                time.sleep(120)
            return self.base.masks(index)

    videos = list(longrvos_data.load(src)["train"])
    videos[2] = dataclasses.replace(videos[2], mask_source=Blocking(videos[2].mask_source))
    davis.write({"train": videos}, out)
""")


def test_a_killed_run_leaves_whole_files_and_resumes(tmp_path: Path) -> None:
    src = generate("long_rvos", tmp_path / "src", num_videos=4, num_frames=5, splits=["train"])
    out, ready = tmp_path / "out", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(src), str(out), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the writer ended before blocking"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "train" / "meta_davis.json").exists()          # split-level files come last
    markers = sorted(p.name for p in (out / base.PARTS_DIR / "davis" / "train").glob("v_*.json"))
    ids = longrvos_data.load(src)["train"].video_ids()
    assert markers == [f"v_{v}.json" for v in ids[:2]]
    for png in out.rglob("*.png"):                                     # every visible PNG is whole
        assert masks.read_png(png).shape
    assert not [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".") and p.stat().st_size == 0]

    report = convert(src, "davis", out)
    assert report.resumed == {"train": 2} and report.videos == {"train": 4}
    assert not (out / base.PARTS_DIR).exists()
    hand.assert_same_split(list(longrvos_data.load(src)["train"]), list(davis_loader.load(out)["train"]))


def test_markers_of_a_run_with_other_settings_are_discarded(tmp_path: Path) -> None:
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=3, splits=["train"])
    reader = longrvos_data.load(src)["train"]
    job = SplitJob(tmp_path / "out", "ytvis", "train", {"lossy": True, "sidecar": True, "options": {}})
    job.start()
    job.save(reader.video_ids()[0], {"video_id": "bogus", "sidecar": None, "dropped": [], "data": {}})
    report = convert(src, "ytvis", tmp_path / "out")
    assert report.resumed == {}
    hand.assert_same_split(list(reader), list(ytvis_loader.load(tmp_path / "out")["train"]))


@pytest.mark.slow
def test_workers_give_the_same_output(tmp_path: Path) -> None:
    src = generate("mevis", tmp_path / "src", num_videos=3, num_frames=4, splits=["train"])
    one = convert(src, "ytvis", tmp_path / "one", workers=1)
    two = convert(src, "ytvis", tmp_path / "two", workers=2)
    assert one.videos == two.videos == {"train": 3}
    for name in ("instances.json", SIDECAR):
        assert (tmp_path / "one" / "train" / name).read_bytes() == (tmp_path / "two" / "train" / name).read_bytes()


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_on_error_skip_leaves_the_bad_video_out(tmp_path: Path, workers: int) -> None:
    src = generate("long_rvos", tmp_path / "src", num_videos=3, num_frames=3, splits=["train"])
    ids = longrvos_data.load(src)["train"].video_ids()
    obj = next((src / "train" / "Annotations" / ids[1]).iterdir())
    png = sorted(obj.glob("*.png"))[0]
    png.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match="cannot be decoded") as info:
        convert(src, "sola", tmp_path / "strict", workers=workers)
    assert info.value.video == ids[1]
    report = convert(src, "sola", tmp_path / "out", workers=workers, on_error="skip")
    assert report.videos == {"train": 2}
    assert [(p.level, p.video, p.file) for p in report.problems if p.level == "error"] == [
        ("error", ids[1], str(png))]
    assert sola_loader.load(tmp_path / "out")["train"].video_ids() == [ids[0], ids[2]]


def test_convert_checks_its_target_and_options(tmp_path: Path) -> None:
    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=2, splits=["train"])
    with pytest.raises(LongRVOSError, match="unknown target 'coco'"):
        convert(src, "coco", tmp_path / "out")
    with pytest.raises(LongRVOSError, match="takes no option"):
        convert(src, "davis", tmp_path / "out", link_frames=True)


def test_dropped_renders_frame_ranges() -> None:
    d = Dropped("train", "v", "mask", "overlap", track_id="3", frames=(0, 1, 2, 5, 7, 8))
    assert str(d) == "train/v: track '3' frames 0-2, 5, 7-8: overlap"
    assert Dropped.from_dict(d.as_dict()) == d
