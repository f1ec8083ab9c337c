"""FiftyOne converter: samples, masks, expressions, predictions and scores against their sources.

Every test talks to a real MongoDB: FiftyOne's own mongod, run on a temporary folder by
`private_database` so that the user's database is never touched.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fiftyone")

from longrvos_data import load  # noqa: E402
from longrvos_data import masks as M  # noqa: E402
from longrvos_data.cli import main as cli_main  # noqa: E402
from longrvos_data.converters import fiftyone as lfo  # noqa: E402
from longrvos_data.errors import LongRVOSError  # noqa: E402
from longrvos_data.schema import Expression, Frame, MaskSource, Track, Video  # noqa: E402
from longrvos_data.synth import generate  # noqa: E402


def art(text: str) -> np.ndarray:
    """ASCII art -> (H, W) bool: ``#`` is foreground."""
    return np.array([[c == "#" for c in row] for row in text.strip().splitlines()], dtype=bool)


# -- a video typed by hand --------------------------------------------------------------
# 4x6 frames f0, f1, f2. Track "7" (category dog) at f0 and f2, absent at f1; track "9"
# at f0 and present-but-empty at f1. Expressions a -> 7, b -> 7 + 9, c -> nothing.
T7_F0 = art("""
......
..###.
..###.
......
""")
T9_F0 = art("""
#.....
#.....
......
......
""")
T7_F2 = art("""
......
......
....##
.....#
""")


class ArrayMasks(MaskSource):
    def __init__(self, frames):
        self.frames = frames

    def masks(self, index):
        return {k: v.copy() for k, v in self.frames[index].items()}


def hand_video(tmp: Path) -> Video:
    frames = []
    for name in ("f0", "f1", "f2"):
        path = tmp / "frames" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 4), (128, 128, 128)).save(path)
        frames.append(Frame(name, path))
    source = ArrayMasks([{"7": T7_F0, "9": T9_F0}, {"9": np.zeros((4, 6), bool)}, {"7": T7_F2}])
    return Video(dataset="handset", split="valid", video_id="vidH", frames=frames, height=4, width=6,
                 tracks=[Track("7", category="dog"), Track("9")],
                 expressions=[Expression("a", "the dog", ("7",), "static", kind_raw="static"),
                              Expression("b", "dog and friend", ("7", "9"), "dynamic", kind_raw=2),
                              Expression("c", "a unicorn", (), "no-target")],
                 fps=6.0, mask_source=source)


def by_frame(dataset) -> dict[str, object]:
    return {s["frame_name"]: s for s in dataset.sort_by("frame_number")}


def test_hand_video_samples_and_masks(fo, name, tmp_path):
    video = hand_video(tmp_path)
    report = lfo.write({"valid": [video]}, tmp_path / "masks", name=name, progress=False)
    assert (report.samples, report.videos, report.gt_masks, report.total_samples) == (3, 1, 3, 3)
    ds = fo.load_dataset(name)
    assert ds.persistent
    s = by_frame(ds)
    assert sorted(s) == ["f0", "f1", "f2"]
    f0 = s["f0"]
    assert (f0["key"], f0["dataset"], f0["split"], f0["video_id"], f0["video_key"], f0["frame_number"]) == \
        ("handset/valid/vidH/f0", "handset", "valid", "vidH", "handset/valid/vidH", 1)
    assert f0.filepath == str((tmp_path / "frames" / "f0.jpg").resolve())
    assert (f0.metadata.width, f0.metadata.height) == (6, 4)
    assert [(e["exp_id"], e["text"], e["kind"], e["kind_raw"], e["track_ids"]) for e in f0["expressions"]] == [
        ("a", "the dog", "static", "static", ["7"]), ("b", "dog and friend", "dynamic", "2", ["7", "9"]),
        ("c", "a unicorn", "no-target", None, [])]
    dets = {d["track_id"]: d for d in f0["ground_truth"].detections}
    dog, friend = dets["7"], dets["9"]
    assert (dog.label, dog.index, dog["category"], dog["exp_ids"], dog["kinds"]) == \
        ("dog", 0, "dog", ["a", "b"], ["static", "dynamic"])
    assert (friend.label, friend.index, friend["exp_ids"], friend["kinds"]) == ("9", 1, ["b"], ["dynamic"])
    assert dog.bounding_box == pytest.approx([2 / 6, 1 / 4, 3 / 6, 2 / 4], abs=1e-5)
    assert friend.bounding_box == pytest.approx([0, 0, 1 / 6, 2 / 4], abs=1e-5)
    assert Path(dog.mask_path) == tmp_path / "masks" / "handset" / "valid" / "vidH" / "gt" / "000000_0.png"
    assert dog.mask is None
    assert M.read_png(dog.mask_path).tolist() == [[255, 255, 255], [255, 255, 255]]
    # f1: track 7 absent, track 9 present but empty -> no detection at all
    assert s["f1"]["ground_truth"].detections == []
    t7 = s["f2"]["ground_truth"].detections[0]
    assert t7.bounding_box == pytest.approx([4 / 6, 2 / 4, 2 / 6, 2 / 4], abs=1e-5)
    assert M.read_png(t7.mask_path).tolist() == [[255, 255], [0, 255]]
    # FiftyOne's own rendering of box + crop gives back the source's full-frame mask
    assert np.array_equal(t7.to_segmentation(frame_size=(6, 4), target=1).mask.astype(bool), T7_F2)
    assert ds.app_config.dynamic_groups_target_frame_rate == 6
    assert ds.app_config.color_scheme.color_by == "instance"


def test_inline_masks(fo, name, tmp_path):
    lfo.write({"valid": [hand_video(tmp_path)]}, None, name=name, progress=False)
    f2 = by_frame(fo.load_dataset(name))["f2"]
    det = f2["ground_truth"].detections[0]
    assert det.mask_path is None
    assert det.mask.tolist() == [[True, True], [False, True]]


def test_saved_views_and_expression_view(fo, name, tmp_path):
    report = lfo.write({"valid": [hand_video(tmp_path)]}, tmp_path / "m", name=name, progress=False)
    ds = fo.load_dataset(name)
    assert report.views == ds.list_saved_views() == ["by_video", "kind_dynamic", "kind_no_target", "kind_static"]
    grouped = ds.load_saved_view("by_video")
    groups = list(grouped.iter_dynamic_groups())
    assert len(groups) == 1 and groups[0].values("frame_name") == ["f0", "f1", "f2"]
    static = ds.load_saved_view("kind_static")
    assert static.values("frame_name") == ["f0", "f1", "f2"]
    assert static.values("ground_truth.detections.track_id") == [["7"], [], ["7"]]
    dynamic = ds.load_saved_view("kind_dynamic")
    assert dynamic.values("ground_truth.detections.track_id") == [["7", "9"], [], ["7"]]
    assert ds.load_saved_view("kind_no_target").values("ground_truth.detections.track_id") == [[], [], []]
    one = lfo.expression_view(ds, "vidH", "a", save_as="exp_a")
    assert one.values("ground_truth.detections.track_id") == [["7"], [], ["7"]]
    assert "exp_a" in ds.list_saved_views()
    with pytest.raises(LongRVOSError, match="has no expression 'zz'"):
        lfo.expression_view(ds, "vidH", "zz")
    with pytest.raises(LongRVOSError, match="has no video 'nope'"):
        lfo.expression_view(ds, "nope", "a")


def test_rerun_updates_keeps_tags_and_removes_stale_frames(fo, name, tmp_path):
    video = hand_video(tmp_path)
    lfo.write({"valid": [video]}, tmp_path / "m", name=name, progress=False)
    ds = fo.load_dataset(name)
    ids = dict(zip(ds.values("key"), ds.values("id")))
    ds.match({"frame_name": "f0"}).tag_samples("checked")
    again = lfo.write({"valid": [video]}, tmp_path / "m", name=name, progress=False)
    assert (again.samples, again.removed, again.total_samples) == (3, 0, 3)
    assert dict(zip(ds.values("key"), ds.values("id"))) == ids
    assert ds.count("ground_truth.detections") == 3
    assert ds.match_tags("checked").values("frame_name") == ["f0"]
    shorter = Video(**{**{f: getattr(video, f) for f in video.__dataclass_fields__}, "frames": video.frames[:2]})
    third = lfo.write({"valid": [shorter]}, tmp_path / "m", name=name, progress=False)
    assert (third.samples, third.removed, third.total_samples) == (2, 1, 2)
    assert sorted(ds.values("frame_name")) == ["f0", "f1"]


def test_overwrite_starts_over(fo, name, tmp_path):
    lfo.write({"valid": [hand_video(tmp_path)]}, tmp_path / "m", name=name, progress=False)
    fo.load_dataset(name).tag_samples("old")
    lfo.write({"valid": [hand_video(tmp_path)]}, tmp_path / "m", name=name, overwrite=True, progress=False)
    assert fo.load_dataset(name).count_sample_tags() == {}


def test_hand_predictions_and_scores(fo, name, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from longrvos_data.predictions import PngFolder
    video = hand_video(tmp_path)
    pred = tmp_path / "pred"
    M.write_binary_png(pred / "vidH" / "a" / "f0.png", T7_F0)          # exact
    M.write_binary_png(pred / "vidH" / "a" / "f2.png", np.zeros((4, 6), bool))  # empty; f1 missing
    M.write_binary_png(pred / "vidH" / "b" / "f0.png", T7_F0 | T9_F0)
    parquet = tmp_path / "R.frames.parquet"
    pq.write_table(pa.table({"video_id": ["vidH", "vidH", "vidH"], "exp_id": ["a", "a", "b"],
                             "frame": ["f0", "f2", "f0"], "J": [1.0, 0.0, 0.75], "F": [1.0, 0.0, 0.5]}), parquet)
    report = lfo.write({"valid": [video]}, tmp_path / "m", name=name, predictions=PngFolder(pred),
                       scores=parquet, progress=False)
    assert (report.pred_labels, report.scored) == (9, 3)
    s = by_frame(fo.load_dataset(name))
    f0 = {d["exp_id"]: d for d in s["f0"]["predictions"].detections}
    assert sorted(f0) == ["a", "b", "c"]
    assert (f0["a"].label, f0["a"].index, f0["a"]["text"], f0["a"]["kind"], f0["a"]["J"], f0["a"]["F"]) == \
        ("a", 0, "the dog", "static", 1.0, 1.0)
    assert (f0["b"]["J"], f0["b"]["F"]) == (0.75, 0.5)
    assert f0["a"].bounding_box == pytest.approx([2 / 6, 1 / 4, 3 / 6, 2 / 4], abs=1e-5)
    assert np.array_equal(f0["b"].to_segmentation(frame_size=(6, 4), target=1).mask.astype(bool), T7_F0 | T9_F0)
    assert f0["c"]["defect"] == "missing_expression" and not f0["c"].has_field("J")
    f1 = {d["exp_id"]: d for d in s["f1"]["predictions"].detections}
    assert f1["a"]["defect"] == "missing_frame" and not f1["a"].has_field("J")
    f2a = {d["exp_id"]: d for d in s["f2"]["predictions"].detections}["a"]
    assert (f2a.bounding_box, f2a.mask_path, f2a["J"], f2a.has_field("defect")) == ([0.0] * 4, None, 0.0, False)
    worst = fo.load_dataset(name).load_saved_view("worst_frames")
    assert worst.values("frame_name") == ["f2", "f0"]
    static = fo.load_dataset(name).load_saved_view("kind_static")
    assert static.values("predictions.detections.exp_id") == [["a"], ["a"], ["a"]]


def test_rle_json_predictions_and_a_rerun_without_them(fo, name, tmp_path):
    from longrvos_data.predictions import RleJson
    video = hand_video(tmp_path)
    preds = {"vidH": {"a": [M.encode(T7_F0), None, M.encode(T7_F2)], "b": [None, None, None]}}
    (tmp_path / "p.json").write_text(json.dumps(preds))
    report = lfo.write({"valid": [video]}, tmp_path / "m", name=name, predictions=RleJson(tmp_path / "p.json"),
                       progress=False)
    assert "worst_frames" not in report.views  # no scores, nothing to sort by
    s = by_frame(fo.load_dataset(name))
    a2 = {d["exp_id"]: d for d in s["f2"]["predictions"].detections}["a"]
    assert np.array_equal(a2.to_segmentation(frame_size=(6, 4), target=1).mask.astype(bool), T7_F2)
    assert Path(a2.mask_path).is_file()
    b0 = {d["exp_id"]: d for d in s["f0"]["predictions"].detections}["b"]
    assert (b0.bounding_box, b0.has_field("defect")) == ([0.0] * 4, False)  # null = an empty mask
    assert [d.label for d in s["f1"]["predictions"].detections] == ["a", "b", "c"]
    # a re-run without predictions updates the ground truth and keeps the predictions and their masks
    lfo.write({"valid": [video]}, tmp_path / "m", name=name, progress=False)
    again = {d["exp_id"]: d for d in by_frame(fo.load_dataset(name))["f2"]["predictions"].detections}["a"]
    assert again.mask_path == a2.mask_path and Path(again.mask_path).is_file()


def test_scores_without_predictions_is_an_error(fo, name, tmp_path):
    with pytest.raises(LongRVOSError, match="scores need predictions"):
        lfo.write({"valid": [hand_video(tmp_path)]}, None, name=name, scores=tmp_path / "x.parquet",
                  progress=False)


def test_bad_scores_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"video_id": ["v"], "frame": ["0"]}), tmp_path / "r.parquet")
    with pytest.raises(LongRVOSError, match=r"lacks column\(s\) \['J', 'F', 'exp_id'\]"):
        lfo.FrameScores(tmp_path / "r.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(LongRVOSError, match="cannot read the per-frame report"):
        lfo.FrameScores(tmp_path / "bad.parquet")


# -- generated datasets, read back through their loaders ----------------------------------
@pytest.mark.parametrize("fmt", ["long_rvos", "mevis", "lvos"])
def test_generated_dataset_matches_source(fo, name, tmp_path, fmt):
    src = generate(fmt, tmp_path / "src", num_videos=2, num_frames=5)
    report = lfo.to_fiftyone(src, name=name, masks_dir=tmp_path / "masks", progress=False)
    source = load(src)
    videos = [v for reader in source.splits.values() for v in reader]
    assert report.samples == report.total_samples == sum(v.num_frames for v in videos)
    ds = fo.load_dataset(name)
    assert ds.info["longrvos"]["format"] == fmt
    for video in videos:
        frames = ds.match({"video_key": f"{video.dataset}/{video.split}/{video.video_id}"}).sort_by("frame_number")
        assert frames.values("frame_name") == video.frame_names
        exps = frames.first()["expressions"]
        assert [(e["exp_id"], e["text"], e["kind"], tuple(e["track_ids"])) for e in exps] == \
            [(e.exp_id, e.text, e.kind, e.track_ids) for e in video.expressions]
        for i, sample in enumerate(frames):
            gt = sample["ground_truth"]
            if not video.has_masks:
                assert gt is None
                continue
            want = {t: m for t, m in video.frame_masks(i).items() if m.any()}
            got = {d["track_id"]: d.to_segmentation(frame_size=(video.width, video.height), target=1).mask
                   for d in gt.detections}
            assert sorted(got) == sorted(want), (video.video_id, i)
            for t in want:
                assert np.array_equal(got[t].astype(bool), want[t]), (video.video_id, i, t)


def test_workers_write_the_same_dataset(fo, name, tmp_path):
    src = generate("mevis", tmp_path / "src", num_videos=3, num_frames=4, splits=("train",))
    pred = tmp_path / "pred"
    for video in load(src)["train"]:
        for e in video.expressions:
            for i, masks in video.iter_frame_masks():
                target = video.target_mask(e, masks)
                if target is not None:
                    M.write_binary_png(pred / video.video_id / e.exp_id / f"{video.frames[i].name}.png", target)
    one = lfo.to_fiftyone(src, name=name, masks_dir=tmp_path / "m1", pred=pred, progress=False)
    two = lfo.to_fiftyone(src, name=name + "-w2", masks_dir=tmp_path / "m2", pred=pred, workers=2, progress=False)
    try:
        assert (two.samples, two.gt_masks, two.pred_labels) == (one.samples, one.gt_masks, one.pred_labels)

        def content(ds, masks_dir):
            out = {}
            for s in ds.sort_by("key"):
                for field in ("ground_truth", "predictions"):
                    for d in s[field].detections:
                        png = None if d.mask_path is None else M.read_png(d.mask_path).tolist()
                        rel = None if d.mask_path is None else str(Path(d.mask_path).relative_to(masks_dir))
                        out[(s["key"], field, d.index)] = (d.label, d.bounding_box, rel, png)
            return out
        parallel = content(fo.load_dataset(name + "-w2"), tmp_path / "m2")
        assert parallel == content(fo.load_dataset(name), tmp_path / "m1")
    finally:
        fo.delete_dataset(name + "-w2")


def test_predictions_and_scores_match_the_eval_report(fo, name, tmp_path):
    import pyarrow.parquet as pq
    from longrvos_data.eval import evaluate
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=6, splits=("valid",))
    reader = load(src)["valid"]
    pred = tmp_path / "pred"
    expected_masks = {}
    for video in reader:
        for e in video.expressions:
            for i, masks in video.iter_frame_masks():
                if i == 3:
                    continue  # missing frame: scored as empty by the Long-RVOS protocol
                target = video.target_mask(e, masks)
                m = np.zeros((video.height, video.width), bool) if target is None else target.copy()
                if i % 2:
                    m = np.roll(m, 2, axis=1)  # imperfect on odd frames
                M.write_binary_png(pred / video.video_id / e.exp_id / f"{video.frames[i].name}.png", m)
                expected_masks[(video.video_id, e.exp_id, video.frames[i].name)] = m
    ev = evaluate(src, pred, protocol="long_rvos", split="valid", per_frame=True, progress=False)
    paths = ev.write(tmp_path / "REPORT.json")
    report = lfo.to_fiftyone(src, name=name, split="valid", pred=pred, scores=paths["frames"],
                             masks_dir=tmp_path / "masks", progress=False)
    rows = pq.read_table(paths["frames"]).to_pylist()
    assert rows and report.scored == len(rows)
    ds = fo.load_dataset(name)
    got = {}
    for s in ds.select_fields(["video_id", "frame_name", "metadata", "predictions"]):
        for d in s["predictions"].detections:
            got[(s["video_id"], d["exp_id"], s["frame_name"])] = d
            key = (s["video_id"], d["exp_id"], s["frame_name"])
            if key in expected_masks and expected_masks[key].any():
                seg = d.to_segmentation(frame_size=(s.metadata.width, s.metadata.height), target=1).mask
                assert np.array_equal(seg.astype(bool), expected_masks[key]), key
            elif key not in expected_masks:
                assert d["defect"] == "missing_frame"
    n_exp = sum(len(v.expressions) * v.num_frames for v in reader)
    assert len(got) == n_exp == report.pred_labels
    for row in rows:
        det = got[(row["video_id"], row["exp_id"], row["frame"])]
        assert (det["J"], det["F"]) == (row["J"], row["F"])
    worst = ds.load_saved_view("worst_frames").first()
    assert min(d["J"] for d in worst["predictions"].detections if d.has_field("J")) == min(r["J"] for r in rows)


# -- the database recipe and the CLI ----------------------------------------------------
def test_configure_merges_and_is_idempotent(tmp_path):
    cfg = tmp_path / "fo" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"show_progress_bars": False, "database_validation": True}))
    first = lfo.configure(path=cfg, database_dir=tmp_path / "db")
    assert first.changed == ("database_dir",) and first.written
    assert json.loads(cfg.read_text()) == {"show_progress_bars": False, "database_validation": True,
                                           "database_dir": str(tmp_path / "db")}
    again = lfo.configure(path=cfg, database_dir=tmp_path / "db")
    assert again.changed == () and not again.written
    fresh = tmp_path / "fresh.json"
    report = lfo.configure(path=fresh)
    assert json.loads(fresh.read_text()) == {"database_validation": False,
                                             "database_dir": str(lfo.default_database_dir())}
    assert report.ok and report.mongod is not None and report.mongod_version
    check = lfo.configure(path=tmp_path / "none.json", write=False)
    assert check.changed == ("database_validation", "database_dir") and not (tmp_path / "none.json").exists()


def test_configure_leaves_a_database_uri_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("FIFTYONE_DATABASE_URI", raising=False)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"database_uri": "mongodb://db.example:27017"}))
    report = lfo.configure(path=cfg)
    assert report.changed == () and report.ok
    assert json.loads(cfg.read_text()) == {"database_uri": "mongodb://db.example:27017"}


@pytest.mark.parametrize("content, message", [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_configure_refuses_a_broken_config(tmp_path, content, message):
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    with pytest.raises(LongRVOSError, match=message):
        lfo.configure(path=cfg)
    assert cfg.read_text() == content


def test_cli_fiftyone(fo, name, tmp_path, capsys):
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=4, splits=("valid",))
    assert cli_main(["fiftyone", str(src), "--name", name, "--masks-dir", str(tmp_path / "m"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["name"], out["samples"], out["total_samples"]) == (name, 8, 8)
    assert out["views"][0] == "by_video"
    assert cli_main(["fiftyone", str(src), "--name", name, "--masks-dir", str(tmp_path / "m"),
                     "--expression", "va00v001/2"]) == 0
    assert "saved views: by_video" in capsys.readouterr().out
    video = load(src)["valid"].video("va00v001")
    target = video.expression("2").track_ids
    assert len(video.tracks) > len(target)
    view = fo.load_dataset(name).load_saved_view("expression")
    assert view.values("frame_name") == video.frame_names
    shown = [d["track_id"] for s in view for d in s["ground_truth"].detections]
    assert shown and set(shown) == set(target)
    assert fo.load_dataset(name).match({"video_id": "va00v001"}).count("ground_truth.detections") > len(shown)
    assert cli_main(["fiftyone", str(src), "--name", name, "--scores", str(tmp_path / "x.parquet")]) == 2
    assert "scores need predictions" in capsys.readouterr().err


@pytest.mark.slow
def test_fresh_config_reaches_the_same_database_from_any_directory(tmp_path):
    """The install recipe end to end: FiftyOne's own service, settings only in its config file."""
    psutil = pytest.importorskip("psutil")
    cfg = tmp_path / "home" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"show_progress_bars": False}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    dbname = f"longrvos_test_{uuid.uuid4().hex[:8]}"
    env.update(FIFTYONE_CONFIG_PATH=str(cfg), FIFTYONE_DATABASE_NAME=dbname, FIFTYONE_DO_NOT_TRACK="true")
    bin_dir = Path(sys.executable).parent
    setup = subprocess.run([str(bin_dir / "longrvos"), "fiftyone-setup", "--database-dir", str(tmp_path / "db")],
                           env=env, capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr
    assert json.loads(cfg.read_text()) == {"show_progress_bars": False, "database_validation": False,
                                           "database_dir": str(tmp_path / "db")}
    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=3, splits=("valid",))
    service_before = any("--51-service" in " ".join(p.info["cmdline"] or []) and "db" in (p.info["cmdline"] or [])
                         for p in psutil.process_iter(["cmdline"]))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    made = subprocess.run([str(bin_dir / "longrvos"), "fiftyone", str(src), "--name", "recipe",
                           "--masks-dir", str(tmp_path / "m"), "--json"],
                          cwd=tmp_path / "a", env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    code = ("import fiftyone as fo; ds = fo.load_dataset('recipe'); print(len(ds), fo.config.database_dir);"
            "import fiftyone.core.odm.database as d; fo.delete_dataset('recipe'); d.drop_database()")
    read = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "b", env=env, capture_output=True,
                          text=True, timeout=300)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["3", str(tmp_path / "db")]
    if not service_before:  # FiftyOne started its own mongod on the configured folder, and stops it
        assert (tmp_path / "db" / "WiredTiger").is_file()
        deadline = time.monotonic() + 60
        while any(str(tmp_path / "db") in " ".join(p.info["cmdline"] or [])
                  for p in psutil.process_iter(["cmdline"])):
            assert time.monotonic() < deadline, "FiftyOne's mongod outlived its clients"
            time.sleep(0.5)


# -- mask files follow their dataset; views; --on-error skip; --launch and Ctrl-C -----------
def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) if folder.exists() else []


def test_overwrite_and_delete_remove_the_mask_files_written_for_the_dataset(fo, name, tmp_path):
    first, second = tmp_path / "m1", tmp_path / "m2"
    lfo.write({"valid": [hand_video(tmp_path)]}, first, name=name, progress=False)
    assert [p.relative_to(first).as_posix() for p in _pngs(first)] == [
        "handset/valid/vidH/gt/000000_0.png", "handset/valid/vidH/gt/000000_1.png",
        "handset/valid/vidH/gt/000002_0.png"]
    (first / "notes.txt").write_text("mine")  # not written by longrvos: kept
    lfo.write({"valid": [hand_video(tmp_path)]}, second, name=name, overwrite=True, progress=False)
    assert _pngs(first) == [] and sorted(p.name for p in first.iterdir()) == ["notes.txt"]
    assert len(_pngs(second)) == 3
    assert fo.load_dataset(name).info["longrvos"]["masks_dirs"] == [str(second.resolve())]
    assert lfo.delete(name) is True
    assert not fo.dataset_exists(name) and not second.exists()
    assert lfo.delete(name) is False


def test_cli_overwrite_removes_the_old_masks_and_views_list_the_expression_view(fo, name, tmp_path, capsys):
    src = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=3, splits=("valid",))
    old, new = tmp_path / "old", tmp_path / "new"
    assert cli_main(["fiftyone", str(src), "--name", name, "--masks-dir", str(old), "--no-progress"]) == 0
    written = len(_pngs(old))
    assert written == sum(1 for v in load(src)["valid"] for i in range(v.num_frames)
                          for a in v.frame_areas(i).values() if a > 0)
    capsys.readouterr()
    assert cli_main(["fiftyone", str(src), "--name", name, "--masks-dir", str(new), "--overwrite",
                     "--expression", "va00v001/2"]) == 0
    out = capsys.readouterr().out
    assert not old.exists() and len(_pngs(new)) == written
    views = fo.load_dataset(name).list_saved_views()
    assert "expression" in views
    assert out.splitlines()[-1] == "saved views: " + ", ".join(
        [v for v in views if v != "expression"] + ["expression"])
    assert cli_main(["fiftyone", str(src), "--name", name, "--masks-dir", str(new), "--json",
                     "--expression", "va00v001/2"]) == 0
    assert json.loads(capsys.readouterr().out)["views"][-1] == "expression"


def test_cli_skip_lists_the_video_left_out_and_exits_3(fo, name, tmp_path, capsys):
    src = generate("long_rvos", tmp_path / "src", num_videos=3, num_frames=3, splits=("valid",))
    bad = "va00v001"
    next((src / "valid" / "JPEGImages" / bad).glob("*.jpg")).unlink()
    code = cli_main(["fiftyone", str(src), "--name", name, "--masks-dir", str(tmp_path / "m"), "--json",
                     "--on-error", "skip"])
    captured = capsys.readouterr()
    assert code == 3
    report = json.loads(captured.out)
    assert (report["videos"], [p["video"] for p in report["skipped"]]) == (2, [bad])
    assert sorted(fo.load_dataset(name).distinct("video_id")) == ["va00v000", "va00v002"]
    lines = captured.err.splitlines()
    assert lines[0] == "longrvos fiftyone: 1 skipped (--on-error skip), not imported:"
    assert len(lines) == 2 and repr(bad) in lines[1]


@pytest.mark.slow
def test_launch_stops_the_app_when_interrupted(fo, name, tmp_path):
    """Ctrl-C (SIGINT to the command's process group) ends the command and the App server."""
    import signal
    import socket
    psutil = pytest.importorskip("psutil")
    src = generate("long_rvos", tmp_path / "src", num_videos=1, num_frames=3, splits=("valid",))
    port = lfo._free_port()
    proc = subprocess.Popen([sys.executable, "-m", "longrvos_data.cli", "fiftyone", str(src), "--name", name,
                             "--masks-dir", str(tmp_path / "m"), "--launch", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 240
        while not listening():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.5)
        servers = psutil.Process(proc.pid).children(recursive=True)
        assert servers
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and err.splitlines()[-1] == "interrupted", err
        psutil.wait_procs(servers, timeout=60)
        assert [s.pid for s in servers if s.is_running() and s.status() != psutil.STATUS_ZOMBIE] == []
        assert not listening()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
