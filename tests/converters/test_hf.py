"""The hf converter and loader: hand-checked rows, load_dataset in a fresh interpreter,
round trips from every format, shards, resume after a kill, linked frames, bad input."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from longrvos_data import DataError, LongRVOSError, masks
from longrvos_data.cli import main as cli_main
from longrvos_data.converters import hf
from longrvos_data.loaders import hf as hf_loader
from longrvos_data.loaders import load
from longrvos_data.schema import Expression, Frame, RLEMaskSource, Track, Video
from longrvos_data.synth import PROFILES, generate

from fixtures import fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


hand = fixture("hf_hand")


def _decode_or_none(rle):
    return None if rle is None else masks.decode(rle)


def assert_same_video(a: Video, b: Video) -> None:
    """Same ids, texts, kinds, sizes, frame bytes and every mask (absent vs empty kept)."""
    for name in ("dataset", "split", "video_id", "height", "width", "tracks", "expressions", "fps", "meta"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.frame_names == b.frame_names
    assert [f.path.read_bytes() for f in a.frames] == [f.path.read_bytes() for f in b.frames]
    assert a.has_masks == b.has_masks
    if a.has_masks:
        for i in range(a.num_frames):
            ma, mb = a.frame_masks(i), b.frame_masks(i)
            assert list(ma) == list(mb), (a.video_id, i)
            for tid in ma:
                assert np.array_equal(ma[tid], mb[tid]), (a.video_id, i, tid)


# -- rows checked against hand-written expectations -----------------------------------
def test_expression_rows_hold_the_hand_computed_unions(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    table = pq.read_table(tmp_path / "out/data/expressions/train-00000-of-00001.parquet").to_pylist()
    assert [(r["video_id"], r["exp_id"], r["text"], r["track_ids"], r["kind"]) for r in table] == [
        ("v1", "0", "the dog", ["a"], "referring"),
        ("v1", "1", "both animals", ["a", "b"], "referring"),
        ("v1", "2", "a unicorn", [], "no-target"),
        ("v2", "e", "the dot that leaves", ["x"], "dynamic"),
    ]
    assert [json.loads(r["kind_raw"]) for r in table] == [0, {"type_id": 0}, 2, "dynamic"]
    assert json.loads(table[2]["meta"]) == {"note": "made up"}
    for r in table:
        expected = hand.EXPECTED_UNION[(r["video_id"], r["exp_id"])]
        assert len(r["masks"]) == len(expected)
        for got, want in zip(r["masks"], expected):
            if want is None:
                assert got is None
            else:
                assert np.array_equal(_decode_or_none(got), hand.art(want))


def test_frame_and_video_rows_keep_absent_apart_from_empty(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    frames = pq.read_table(tmp_path / "out/data/frames/train-00000-of-00001.parquet").to_pylist()
    assert [(f["video_id"], f["frame_index"], f["frame_name"]) for f in frames] == [
        ("v1", 0, "f0"), ("v1", 1, "f1"), ("v1", 2, "f2"), ("v2", 0, "00000"), ("v2", 1, "00001")]
    assert [[m["track_id"] for m in f["masks"]] for f in frames] == [["a", "b"], ["b"], ["a", "b"], ["x"], []]
    empty_b = frames[2]["masks"][1]["rle"]
    assert empty_b["size"] == [3, 4] and not masks.decode(empty_b).any()      # present but empty
    assert frames[0]["image"]["bytes"] == (tmp_path / "src/v1/f0.jpg").read_bytes()  # never re-encoded
    videos = pq.read_table(tmp_path / "out/data/videos/train-00000-of-00001.parquet").to_pylist()
    v1 = videos[0]
    assert (v1["height"], v1["width"], v1["fps"], v1["frame_names"]) == (3, 4, None, ["f0", "f1", "f2"])
    assert [(t["track_id"], t["category"], json.loads(t["meta"])) for t in v1["tracks"]] == [
        ("a", "dog", {"obj_id": 7}), ("b", None, {})]
    assert v1["tracks"][0]["rles"][1] is None
    assert np.array_equal(masks.decode(v1["tracks"][1]["rles"][1]), hand.art(hand.MASKS["v1"]["b"][1]))
    assert videos[1]["fps"] == 6.0


def test_split_without_annotations_has_null_mask_lists(tmp_path):
    hf.write({"test": hand.videos(tmp_path / "src", split="test", annotated=False)}, tmp_path / "out")
    exps = pq.read_table(tmp_path / "out/data/expressions/test-00000-of-00001.parquet").to_pylist()
    assert [r["masks"] for r in exps] == [None] * 4
    back = list(load(tmp_path / "out", format="hf")["test"])
    assert [v.has_masks for v in back] == [False, False]


# -- load_dataset, for real, in a fresh interpreter elsewhere -------------------------
LOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import datasets
    out, result = {}, {}
    for config in ("expressions", "frames", "videos"):
        for streaming in (False, True):
            ds = datasets.load_dataset(sys.argv[1], config, split="train", streaming=streaming)
            rows = list(ds)
            key = f"{config}/{'stream' if streaming else 'map'}"
            result[key] = {"features": ds.features.to_dict(), "rows": len(rows)}
            if config == "expressions":
                result[key]["masks"] = [r["masks"] for r in rows]
                result[key]["ids"] = [[r["video_id"], r["exp_id"], r["text"]] for r in rows]
            if config == "frames":
                first = rows[0].get("image")
                result[key]["image"] = [type(first).__name__, list(first.size)] if first is not None else None
                result[key]["image_path"] = [r.get("image_path") for r in rows]
    default = datasets.load_dataset(sys.argv[1], split="train")
    result["default"] = default.column_names
    print(json.dumps(result))
""")


def _load_dataset_elsewhere(out: Path, tmp_path: Path) -> dict:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               HF_DATASETS_CACHE=str(tmp_path / "hf_cache"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(out)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_load_dataset_in_a_fresh_interpreter_returns_declared_features_and_source_masks(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    got = _load_dataset_elsewhere(tmp_path / "out", tmp_path)
    for config in hf.CONFIGS:
        declared = hf.config_features(config).to_dict()
        for mode in ("map", "stream"):
            assert got[f"{config}/{mode}"]["features"] == declared, (config, mode)
    assert got["expressions/map"]["rows"] == 4 and got["frames/map"]["rows"] == 5 and got["videos/map"]["rows"] == 2
    assert got["frames/map"]["image"] == ["JpegImageFile", [4, 3]]
    assert got["default"] == list(hf.EXPRESSIONS_FEATURES)
    for mode in ("map", "stream"):
        rows = got[f"expressions/{mode}"]
        for (vid, exp_id, _), row_masks in zip(rows["ids"], rows["masks"]):
            video = next(v for v in vids if v.video_id == vid)
            e = video.expression(exp_id)
            for i, rle in enumerate(row_masks):   # equal to the source's own masks
                want = video.target_mask(e, video.frame_masks(i))
                assert (rle is None) == (want is None)
                if want is not None:
                    assert np.array_equal(masks.decode(rle), want)


@pytest.mark.slow
def test_load_dataset_with_linked_frames_gives_relative_paths(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out", link_frames=True, source_root=tmp_path / "src")
    got = _load_dataset_elsewhere(tmp_path / "out", tmp_path)
    assert got["frames/map"]["features"] == hf.FRAMES_LINKED_FEATURES.to_dict()
    assert got["frames/stream"]["image_path"] == ["v1/f0.jpg", "v1/f1.jpg", "v1/f2.jpg", "v2/00000.jpg",
                                                  "v2/00001.jpg"]


# -- round trips: every format's fixtures -> hf -> hf loader ----------------------------
@pytest.mark.parametrize("fmt", sorted(PROFILES))
def test_round_trip_generated(fmt, tmp_path):
    src = generate(fmt, tmp_path / "src", num_videos=2, num_frames=5)
    source = load(src, format=fmt)
    report = hf.write(source.splits, tmp_path / "out")
    assert report.videos == {s: len(r) for s, r in source.splits.items()}
    back = load(tmp_path / "out", format="hf")
    assert list(back.splits) == list(source.splits)
    for split, reader in source.splits.items():
        for a, b in zip(reader, back[split], strict=True):
            assert_same_video(a, b)


def _hand_builders() -> list[tuple[str, str, str]]:
    """(fixture module, builder, format): ``build`` in ``<format>_hand.py`` and ``build_<format>``."""
    from longrvos_data.loaders import LOADERS

    found = []
    for path in sorted(FIXTURES.glob("*_hand.py")):
        text = path.read_text()
        prefix = path.stem[:-len("_hand")]
        if prefix in LOADERS and "\ndef build(" in text:
            found.append((path.stem, "build", prefix))
        found += [(path.stem, f"build_{fmt}", fmt) for fmt in LOADERS if f"\ndef build_{fmt}(" in text]
    return found


@pytest.mark.parametrize("module, builder, fmt", _hand_builders())
def test_round_trip_hand_fixtures(module, builder, fmt, tmp_path):
    root = getattr(fixture(module), builder)(tmp_path / "src")
    source = load(root, format=fmt)
    hf.write(source.splits, tmp_path / "out")
    back = load(tmp_path / "out", format="hf")
    assert list(back.splits) == list(source.splits)
    for split, reader in source.splits.items():
        for a, b in zip(reader, back[split], strict=True):
            assert_same_video(a, b)


def test_round_trip_interchange_hand_videos(tmp_path):
    by_split = fixture("interchange_hand").hand_videos(tmp_path / "src")
    hf.write(by_split, tmp_path / "out")
    back = load(tmp_path / "out", format="hf")
    for split, videos in by_split.items():
        for a, b in zip(videos, back[split], strict=True):
            assert_same_video(a, b)


def test_round_trip_hand_videos_and_info(tmp_path):
    from longrvos_data.summary import summarise

    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    back = load(tmp_path / "out", format="hf")
    for a, b in zip(vids, back["train"], strict=True):
        assert_same_video(a, b)
    summary = summarise(tmp_path / "out", format="hf", deep=True)
    assert (summary["videos"], summary["frames"], summary["tracks"], summary["expressions"]) == (2, 5, 3, 4)
    assert summary["masks"] == 5  # non-empty (track, frame) pairs: a f0 f2, b f0 f1, x 00000 (b f2 is empty)


# -- workers, shards, resume -------------------------------------------------------------
def _parquet_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "data").rglob("*.parquet"))}


@pytest.mark.slow
def test_two_workers_write_the_same_bytes_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr(hf, "PART_FRAMES", 4)  # the workers share every video in runs of 4 frames
    src = generate("long_rvos", tmp_path / "src", num_videos=3, num_frames=10, splits=["train"])
    one = hf.write(load(src, format="long_rvos").splits, tmp_path / "one", workers=1, shard_bytes=20_000)
    two = hf.write(load(src, format="long_rvos").splits, tmp_path / "two", workers=2, shard_bytes=20_000)
    assert one.splits["train"].configs == two.splits["train"].configs
    assert _parquet_bytes(tmp_path / "one") == _parquet_bytes(tmp_path / "two")
    assert (tmp_path / "one/README.md").read_text() == (tmp_path / "two/README.md").read_text()


def test_shards_roll_over_and_row_groups_stay_bounded(tmp_path, monkeypatch):
    monkeypatch.setitem(hf.ROW_GROUP_ROWS, "frames", 2)
    vids = hand.videos(tmp_path / "src")
    report = hf.write({"train": vids}, tmp_path / "out", shard_bytes=1)
    frames = sorted((tmp_path / "out/data/frames").glob("*.parquet"))
    assert [f.name for f in frames] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert [pq.ParquetFile(f).metadata.num_rows for f in frames] == [3, 2]       # one video per shard
    assert [pq.ParquetFile(frames[0]).metadata.row_group(g).num_rows for g in range(2)] == [2, 1]
    assert report.splits["train"].configs["frames"]["shards"] == 2
    card = hf_loader.read_card(tmp_path / "out")
    assert [p.name for p in card.files["frames"]["train"]] == [f.name for f in frames]
    for a, b in zip(vids, load(tmp_path / "out", format="hf")["train"], strict=True):
        assert_same_video(a, b)


def test_split_names_do_not_capture_each_other(tmp_path):
    hf.write({"train": hand.videos(tmp_path / "a"), "train_sub": hand.videos(tmp_path / "b")[:1]}, tmp_path / "out")
    ds = load(tmp_path / "out", format="hf")
    assert {s: len(r) for s, r in ds.splits.items()} == {"train": 2, "train_sub": 1}


LOAD_EVERY_SPLIT = textwrap.dedent("""
    import json, sys
    import datasets
    out = sys.argv[1]
    got = {}
    for config in ("expressions", "frames", "videos"):
        for split, ds in datasets.load_dataset(out, config, cache_dir=sys.argv[2]).items():
            got[f"{config}/{split}"] = len(ds)
    print(json.dumps(got))
""")


def test_empty_split_is_left_out_and_every_declared_split_loads(tmp_path):
    # before: the card declared "valid" with an empty shard, and load_dataset failed for every
    # config with 'Instruction "valid" corresponds to no data!'
    hf.write({"train": hand.videos(tmp_path / "src"), "valid": []}, tmp_path / "out")
    assert not list((tmp_path / "out/data").rglob("valid-*"))
    assert hf_loader.read_card(tmp_path / "out").splits == ["train"]
    assert "Left out, as they have no videos: valid." in (tmp_path / "out/README.md").read_text()
    done = subprocess.run([sys.executable, "-c", LOAD_EVERY_SPLIT, str(tmp_path / "out"), str(tmp_path / "hfc")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "expressions/train": 4, "frames/train": 5, "videos/train": 2}
    assert set(load(tmp_path / "out", format="hf").splits) == {"train"}


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from longrvos_data.converters import hf
    from longrvos_data.loaders import load
    real = hf._frames_table
    count = {"n": 0}
    def dying(rows, start, stop, **kw):  # killed while video N's shards are open
        count["n"] += 1
        if count["n"] == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(rows, start, stop, **kw)
    hf._frames_table = dying
    hf.ROW_GROUP_ROWS["frames"] = 2      # two chunks per 4-frame video
    hf.write(load(sys.argv[1], format="long_rvos").splits, sys.argv[2], shard_bytes=1)
""")


@pytest.mark.slow
def test_resume_after_a_kill_keeps_complete_shards_and_shows_no_partial_one(tmp_path, monkeypatch):
    src = generate("long_rvos", tmp_path / "src", num_videos=4, num_frames=4, splits=["train"])
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(src), str(out), "6"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert not list(out.glob("data/*/*.parquet"))  # nothing under a final name yet
    assert not (out / "README.md").exists()
    progress = json.loads((out / ".longrvos_hf/progress.json").read_text())
    assert [s["end"] for s in progress["splits"]["train"]["configs"]["frames"]] == [1, 2]
    partial = list((out / ".longrvos_hf/staging").rglob("*.tmp"))
    assert partial  # the killed shard is only ever under a temporary name

    monkeypatch.setitem(hf.ROW_GROUP_ROWS, "frames", 2)
    report = hf.write(load(src, format="long_rvos").splits, out, shard_bytes=1)
    assert report.resumed == {"train": 2}
    assert not list(out.rglob("*.tmp"))
    fresh = tmp_path / "fresh"
    hf.write(load(src, format="long_rvos").splits, fresh, shard_bytes=1)
    assert _parquet_bytes(out) == _parquet_bytes(fresh)
    assert (out / "README.md").read_text() == (fresh / "README.md").read_text()


def test_rerun_of_a_finished_output_writes_nothing_new(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out/data").rglob("*.parquet")}
    report = hf.write({"train": vids}, tmp_path / "out")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out/data").rglob("*.parquet")} == before
    assert report.splits["train"].configs["expressions"]["rows"] == 4


def test_changed_options_convert_again(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out")
    hf.write({"train": vids}, tmp_path / "out", link_frames=True, source_root=tmp_path / "src")
    assert hf_loader.read_card(tmp_path / "out").link_frames
    assert pq.read_schema(next((tmp_path / "out/data/frames").glob("*.parquet"))).names == list(
        hf.FRAMES_LINKED_FEATURES)


# -- the card ----------------------------------------------------------------------------
def test_card_records_licence_citation_source_and_features(tmp_path):
    src = generate("mevis", tmp_path / "src", num_videos=1, num_frames=3, splits=["train"])
    hf.write(load(src, format="mevis").splits, tmp_path / "out")
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(tmp_path / "out/README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-nc-sa-4.0"
    assert data["longrvos"]["source_format"] == "mevis" and data["longrvos"]["link_frames"] is False
    assert "Ding, Henghui" in card.text and "CC BY-NC-SA 4.0" in card.text
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    from datasets import Features
    assert Features._from_yaml_list(infos["frames"]["features"]) == hf.FRAMES_FEATURES
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["expressions"]


# -- linked frames -------------------------------------------------------------------------
def test_linked_frames_point_into_the_source_root(tmp_path):
    vids = hand.videos(tmp_path / "src")
    hf.write({"train": vids}, tmp_path / "out", link_frames=True, source_root=tmp_path / "src")
    back = list(load(tmp_path / "out", format="hf")["train"])
    assert back[0].frames[0].path == tmp_path / "src/v1/f0.jpg"
    assert hf_loader.read_card(tmp_path / "out").source_root == tmp_path / "src"


def test_linked_frame_outside_the_source_root_is_refused(tmp_path):
    vids = hand.videos(tmp_path / "src")
    with pytest.raises(DataError, match="outside the source root") as err:
        hf.write({"train": vids}, tmp_path / "out", link_frames=True, source_root=tmp_path / "src" / "v2")
    assert err.value.video == "v1"


def test_linked_frames_default_to_the_readers_root(tmp_path):
    src = generate("ref_youtube_vos", tmp_path / "src", num_videos=1, num_frames=3, splits=["train"])
    hf.write(load(src, format="ref_youtube_vos").splits, tmp_path / "out", link_frames=True)
    assert hf_loader.read_card(tmp_path / "out").source_root == src.absolute()


# -- embedded frames come back lazily ---------------------------------------------------
def test_embedded_frames_are_written_to_the_cache_only_when_used(tmp_path):
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")
    video = load(tmp_path / "out", format="hf")["train"].video("v2")
    assert not (tmp_path / "cache").exists()
    clone = pickle.loads(pickle.dumps(video.frames[1].path))
    assert clone.read_bytes() == (tmp_path / "src/v2/00001.jpg").read_bytes()
    assert video.frames[0].path.exists()   # the whole video was written at once


# -- bad input --------------------------------------------------------------------------
def test_out_folder_with_foreign_files_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")
    with pytest.raises(LongRVOSError, match="not empty"):
        hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")


def test_split_name_the_hub_cannot_take_is_refused(tmp_path):
    with pytest.raises(LongRVOSError, match="cannot be a Hugging Face split"):
        hf.write({"valid-u": []}, tmp_path / "out")


def test_mask_of_the_wrong_size_names_video_and_field_and_publishes_nothing(tmp_path):
    good = hand.videos(tmp_path / "src")
    f = good[1].frames
    bad = Video(dataset="hand", split="train", video_id="vbad", frames=f, height=2, width=2, tracks=[Track("x")],
                expressions=[Expression("0", "x", ("x",), "referring")],
                mask_source=RLEMaskSource({"x": [masks.encode(np.ones((3, 3), bool)), None]}))
    with pytest.raises(DataError, match="mask is 3x3, the video is 2x2") as err:
        hf.write({"train": [good[0], bad]}, tmp_path / "out")
    assert err.value.video == "vbad" and err.value.field == "masks[00000][x]"
    assert not list((tmp_path / "out").rglob("*.parquet"))
    assert not (tmp_path / "out/README.md").exists()


def test_on_error_skip_leaves_the_bad_video_out(tmp_path):
    good = hand.videos(tmp_path / "src")
    missing = Video(dataset="hand", split="train", video_id="gone", frames=[Frame("0", tmp_path / "nope.jpg")],
                    height=2, width=2, tracks=[], expressions=[])
    report = hf.write({"train": [good[0], missing, good[1]]}, tmp_path / "out", on_error="skip")
    assert [p.video for p in report.problems] == ["gone"]
    assert load(tmp_path / "out", format="hf")["train"].video_ids() == ["v1", "v2"]


def _first_png(root: Path) -> Path:
    return sorted((root / "train/Annotations").rglob("*.png"))[0]


def test_bad_source_gives_the_loaders_error_through_convert(tmp_path, capsys):
    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=3, splits=["train"])
    png = _first_png(src)
    png.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    video = load(src, format="long_rvos")["train"]
    expected = None
    try:
        for v in video:
            for i in range(v.num_frames):
                v.frame_rles(i)
    except DataError as err:
        expected = str(err)
    assert expected and png.name in expected
    code = cli_main(["convert", str(src), "--to", "hf", str(tmp_path / "out"), "--format", "long_rvos"])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_missing_frame_gives_the_loaders_error_through_convert(tmp_path, capsys):
    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=3, splits=["train"])
    frame = sorted((src / "train/JPEGImages").rglob("*.jpg"))[1]
    frame.unlink()
    with pytest.raises(DataError) as err:
        list(load(src, format="long_rvos")["train"])
    code = cli_main(["convert", str(src), "--to", "hf", str(tmp_path / "out")])
    assert code == 2
    assert str(err.value) in capsys.readouterr().err


def test_convert_cli_writes_a_dataset_info_reads(tmp_path, capsys):
    src = generate("lvos", tmp_path / "src", num_videos=2, num_frames=3)
    assert cli_main(["convert", str(src), "--to", "hf", str(tmp_path / "out"), "--format", "lvos"]) == 0
    capsys.readouterr()
    assert cli_main(["info", str(tmp_path / "out"), "--json", "--format", "hf"]) == 0
    info = json.loads(capsys.readouterr().out)
    raw = load(src, format="lvos")
    assert info["format"] == "hf"
    assert info["videos"] == sum(len(r) for r in raw.splits.values())


# -- the loader's own checks --------------------------------------------------------------
def test_detect_accepts_the_output_and_explains_a_rejection(tmp_path):
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")
    assert hf_loader.detect(tmp_path / "out").confidence == 1.0
    assert hf_loader.detect(tmp_path / "out" / "data").confidence == 1.0
    other = tmp_path / "plain"
    other.mkdir()
    (other / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: x.csv\n---\n")
    rejected = hf_loader.detect(other)
    assert rejected.confidence == 0 and rejected.reasons == ("no README.md with a 'longrvos' section beside data/",)
    assert hf_loader.detect(tmp_path / "src").confidence == 0


def test_loader_refuses_a_track_whose_mask_list_has_the_wrong_length(tmp_path):
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")
    shard = tmp_path / "out/data/videos/train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[1]["tracks"][0]["rles"] = rows[1]["tracks"][0]["rles"][:1]
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    with pytest.raises(DataError, match="1 masks for 2 frames") as err:
        load(tmp_path / "out", format="hf")["train"].video("v2")
    assert err.value.field == "tracks[x].rles" and err.value.file == str(shard)


def test_loader_names_file_video_and_field_of_bad_rle_counts(tmp_path):
    """Before: the codec's bare "RLE counts sum to 2 pixel(s), not 2x2 = 4", no file or video."""
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")
    shard = tmp_path / "out/data/videos/train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    rows = table.to_pylist()
    (t, rle), = [(t, r) for t, r in enumerate(rows[1]["tracks"][0]["rles"]) if r is not None][-1:]
    h, w = rle["size"]
    rows[1]["tracks"][0]["rles"][t] = {**rle, "counts": "02"}
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    video = load(tmp_path / "out", format="hf")["train"].video(rows[1]["video_id"])
    with pytest.raises(DataError) as err:
        video.frame_areas(0)              # the whole video is checked at once
    assert str(err.value) == (f"{shard}: video '{rows[1]['video_id']}': field 'tracks[{rows[1]['tracks'][0]['track_id']}]"
                              f".rles[{t}]': RLE counts sum to 2 pixel(s), not {h}x{w} = {h * w}")


def test_loader_refuses_a_card_listing_a_missing_shard(tmp_path):
    hf.write({"train": hand.videos(tmp_path / "src")}, tmp_path / "out")
    (tmp_path / "out/data/frames/train-00000-of-00001.parquet").unlink()
    with pytest.raises(DataError, match="listed in the card is missing"):
        load(tmp_path / "out", format="hf")


# -- the codec speed-up this converter relies on (masks.encode via cv2.transpose) ------------
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 4), (37, 53), (720, 1280)])
def test_encode_matches_the_pycocotools_reference(shape):
    from pycocotools import mask as coco

    rng = np.random.default_rng(sum(shape))
    m = rng.random(shape) > 0.6
    want = coco.encode(np.asfortranarray(m, dtype=np.uint8))["counts"].decode()
    assert masks.encode(m)["counts"] == want
    assert masks.encode(m.astype(np.uint8) * 255)["counts"] == want
    if shape[1] > 2:
        sub = m[:, ::2]       # not C-contiguous: the plain path
        assert masks.encode(sub)["counts"] == coco.encode(np.asfortranarray(sub, dtype=np.uint8))["counts"].decode()


# -- conversion safety: frame structure, skips in the card, no resume file, splits added ---------
def _lr_source(tmp_path):
    return generate("long_rvos", tmp_path / "src", num_videos=3, num_frames=3, splits=["train", "valid"])


def _frame(src, split="train", video="tr00v001", index=1):
    return load(src)[split].video(video).frames[index].path


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-2], "frame is not a complete JPEG: it does not end with the end-of-image marker FF D9 (truncated?)"),
    (lambda b: b[: len(b) // 2], "frame is not a complete JPEG: it does not end with the end-of-image marker FF D9 "
                                 "(truncated?)"),
    (lambda b: b"GIF89a" + b[6:], "frame is neither a JPEG nor a PNG (it starts with '47 49 46 38 39 61 4a 46')"),
    (lambda b: b[:2] + b"\xff\xda" + b[4:], "frame is not a readable JPEG: no frame header (SOF marker) before the "
                                           "image data"),
])
def test_a_frame_failing_the_structural_check_is_refused(tmp_path, capsys, damage, message):
    # before: the damaged bytes were embedded and the conversion exited 0
    src = _lr_source(tmp_path)
    frame = _frame(src)
    frame.write_bytes(damage(frame.read_bytes()))
    code = cli_main(["convert", str(src), "--to", "hf", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1] == f"longrvos convert: error: {frame}: video 'tr00v001': field 'frames[1]': {message}"


def _jpeg(width, height):
    from io import BytesIO

    from PIL import Image as PILImage
    buf = BytesIO()
    PILImage.new("RGB", (width, height), (9, 9, 9)).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_frame_of_another_size_is_refused_jpeg_and_png(tmp_path, capsys):
    src = _lr_source(tmp_path)
    video = load(src)["train"].video("tr00v001")
    w, h = video.width, video.height
    frame = video.frames[2].path
    frame.write_bytes(_jpeg(w + 1, h))
    with pytest.raises(DataError) as info:
        hf.write(load(src).splits, tmp_path / "out")
    assert str(info.value) == (f"{frame}: video 'tr00v001': field 'frames[2]': frame is {w + 1}x{h} (JPEG header), "
                               f"the video is {w}x{h}")
    png = np.zeros((h - 1, w, 3), np.uint8)
    from PIL import Image as PILImage
    PILImage.fromarray(png).save(frame, format="PNG")   # a PNG under a .jpg name is checked as a PNG
    with pytest.raises(DataError, match=rf"frame is {w}x{h - 1} \(PNG header\), the video is {w}x{h}$"):
        hf.write(load(src).splits, tmp_path / "out2")
    frame.write_bytes(frame.read_bytes()[:-12])
    with pytest.raises(DataError, match="frame is not a complete PNG: it does not end with an IEND chunk"):
        hf.write(load(src).splits, tmp_path / "out3")


def test_on_error_skip_lists_the_refused_frame_in_the_card(tmp_path, capsys):
    src = _lr_source(tmp_path)
    frame = _frame(src)
    frame.write_bytes(frame.read_bytes()[:-2])
    code = cli_main(["convert", str(src), "--to", "hf", str(tmp_path / "out"), "--no-progress", "--on-error", "skip"])
    assert code == 3   # the every-verb skip rule: finished, but skipped input
    card = (tmp_path / "out/README.md").read_text()
    assert ("## Skipped videos\n\nLeft out of this conversion (`--on-error skip`):\n\n"
            f"- `train`: {frame}: video 'tr00v001': field 'frames[1]': frame is not a complete JPEG: it does not end "
            "with the end-of-image marker FF D9 (truncated?)\n") in card
    section = hf_loader.read_card(tmp_path / "out").section
    assert [p["video"] for p in section["skipped"]["train"]] == ["tr00v001"]
    assert load(tmp_path / "out", format="hf")["train"].video_ids() == ["tr00v000", "tr00v002"]


def test_a_finished_output_keeps_no_resume_file_and_takes_more_splits(tmp_path):
    # before: .longrvos_hf/progress.json stayed, and a --split valid run removed train
    src = _lr_source(tmp_path)
    out = tmp_path / "out"
    hf.write({"train": load(src)["train"]}, out)
    assert not (out / hf.STATE_DIR).exists()
    before = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.parquet")}
    report = hf.write({"valid": load(src)["valid"]}, out)
    assert not (out / hf.STATE_DIR).exists()
    assert report.videos == {"valid": 3}
    assert hf_loader.read_card(out).splits == ["train", "valid"]
    assert {p: p.stat().st_mtime_ns for p in before} == before     # train's shards untouched
    both = tmp_path / "both"
    hf.write(load(src).splits, both)
    assert _parquet_bytes(out) == _parquet_bytes(both)
    assert {s: len(r) for s, r in load(out, format="hf").splits.items()} == {"train": 3, "valid": 3}


def test_expression_rows_carry_their_frame_names_and_the_card_snippet_runs(tmp_path):
    src = _lr_source(tmp_path)
    out = tmp_path / "out"
    hf.write({"train": load(src)["train"]}, out)
    rows = pq.read_table(out / "data/expressions/train-00000-of-00001.parquet").to_pylist()
    videos = {v.video_id: v for v in load(src)["train"]}
    assert [r["frame_names"] for r in rows] == [videos[r["video_id"]].frame_names for r in rows]
    assert all(len(r["masks"]) == len(r["frame_names"]) for r in rows)
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace("PATH_OR_REPO", repr(str(out)))
    assert "masks.decode(rle)" in snippet and "mask_utils.decode(" in snippet
    env = dict(os.environ, HF_DATASETS_CACHE=str(tmp_path / "hfc"))
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    first = rows[0]
    expected = [f"{name} ({videos[first['video_id']].height}, {videos[first['video_id']].width}) "
                f"{int(masks.decode(rle).sum())}" for name, rle in zip(first["frame_names"], first["masks"])
                if rle is not None]
    assert done.stdout.splitlines() == expected
