"""Generated data: every per-expression value equals the direct implementation (the oracle)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from evalcase import perturbed_predictions
from longrvos_data import masks as M
from longrvos_data.eval import evaluate
from longrvos_data.synth import synth_videos

TOL = 1e-6
SIZES = ((37, 53), (48, 64), (61, 45), (72, 128))


def _videos(tmp_path, dataset, n=4, frames=9, seed=0):
    return synth_videos(dataset=dataset, split="valid", staging=tmp_path / "frames", num_videos=n,
                        num_frames=frames, sizes=SIZES, seed=seed)


def _assert_rows_match(report, want, metrics):
    got = {(r["video_id"], r[report.unit_key]): r for r in report.rows}
    assert len(got) == len(want)
    for w in want:
        g = got[w["video_id"], w[report.unit_key]]
        for m in metrics:
            assert g[m] == pytest.approx(w[m], abs=TOL), (w["video_id"], w[report.unit_key], m)


@pytest.mark.parametrize("protocol, dataset, metrics", [
    ("long_rvos", "long_rvos", ("J", "F", "J&F", "tIoU", "vIoU")),
    ("mevis", "mevis", ("J", "F", "J&F")),
    ("revos", "revos", ("J", "F", "J&F", "A", "R")),
])
def test_referring_parity_with_the_oracle(tmp_path, ref, protocol, dataset, metrics):
    videos = _videos(tmp_path, dataset)
    perturbed_predictions(videos, tmp_path / "pred", seed=1)
    report = evaluate(videos, tmp_path / "pred", protocol=protocol, missing="official", progress=False)
    want = ref.score_referring(videos, tmp_path / "pred", protocol=protocol)
    _assert_rows_match(report, want, metrics)
    overall, by_kind = ref.aggregate(want, protocol=protocol)
    assert report.overall == pytest.approx(overall, abs=TOL)
    assert set(report.by_kind) == set(by_kind)
    for kind, values in by_kind.items():
        assert report.by_kind[kind] == pytest.approx(values, abs=TOL)
    assert report.warnings == [] or protocol == "revos"
    # complete predictions: the default strict policy gives the official figures, and says so
    strict = evaluate(videos, tmp_path / "pred", protocol=protocol, progress=False)
    assert strict.rows == report.rows and strict.overall == strict.overall_official == report.overall
    assert report.overall_official == report.overall


def test_revos_raw_parity(tmp_path, ref):
    videos = _videos(tmp_path, "revos", n=3)
    perturbed_predictions(videos, tmp_path / "pred", seed=2)
    report = evaluate(videos, tmp_path / "pred", protocol="revos", revos_raw=True, missing="official",
                      progress=False)
    want = ref.score_referring(videos, tmp_path / "pred", protocol="revos", raw=True)
    _assert_rows_match(report, want, ("J", "F", "A", "R"))


def test_lvos_parity_with_frame_ranges(tmp_path, ref):
    from dataclasses import replace

    from longrvos_data.schema import Track
    base = synth_videos(dataset="lvos", split="valid", staging=tmp_path / "frames", num_videos=3, num_frames=12,
                        sizes=SIZES)
    videos = []
    rng = np.random.default_rng(3)
    for v in base:
        tracks = []
        for t in v.tracks:
            lo, hi = int(rng.integers(0, 4)), int(rng.integers(6, 12))
            start, end = int(v.frames[lo].name), int(v.frames[hi].name)
            tracks.append(Track(t.track_id, meta={"frame_range": {"start": f"{start:08d}", "end": end,
                                                                  "frame_nums": hi - lo + 1}}))
        videos.append(replace(v, tracks=tuple(tracks)))
    root = tmp_path / "pred"
    for v in videos:
        for i, f in enumerate(v.frames):
            ids = np.zeros((v.height, v.width), np.uint8)
            for tid, m in v.frame_masks(i).items():
                ids[np.roll(m, int(rng.integers(-2, 3)), axis=1)] = int(tid)
            if rng.random() < 0.2:
                ids[:] = 0
            M.write_palette_png(root / v.video_id / f"{f.name}.png", ids)
    report = evaluate(videos, root, protocol="lvos", lvos_version=2, missing="official", progress=False)
    want = ref.score_lvos(videos, root)
    _assert_rows_match(report, want, ("J", "F", "V"))
    assert report.rows_key == "objects"


def test_two_workers_give_the_same_report(tmp_path):
    videos = _videos(tmp_path, "mevis", n=5)
    perturbed_predictions(videos, tmp_path / "pred", seed=4)
    one = evaluate(videos, tmp_path / "pred", protocol="mevis", progress=False)
    two = evaluate(videos, tmp_path / "pred", protocol="mevis", workers=2, progress=False)
    assert two.rows == one.rows and two.overall == one.overall and two.warnings == one.warnings


def test_workers_start_after_opencv_ran_its_thread_pool_in_this_process(tmp_path):
    # A fork child calling cv2.setNumThreads hangs once the parent's OpenCV pool has run (e.g.
    # after the classical engine propagated in-process): the pool must still start and finish.
    import subprocess
    import sys
    code = ("import numpy as np, cv2, sys; from tests_eval_helper import run; "
            "cv2.GaussianBlur(np.random.rand(2000, 2000).astype(np.float32), (31, 31), 0); run(sys.argv[1])")
    helper = tmp_path / "tests_eval_helper.py"
    helper.write_text(
        "from pathlib import Path\n"
        "from longrvos_data.synth import textured_lvos\n"
        "from longrvos_data.predictions import write_video\n"
        "from longrvos_data import load\n"
        "from longrvos_data.eval import evaluate\n"
        "def run(out):\n"
        "    src = textured_lvos(Path(out) / 'src', width=96, height=64, num_frames=8)\n"
        "    videos = list(load(src, format='lvos')['valid'])\n"
        "    for v in videos:\n"
        "        write_video(Path(out) / 'pred', v, v.iter_frame_masks())\n"
        "    r = evaluate(src, Path(out) / 'pred', protocol='lvos', split='valid', workers=2, progress=False)\n"
        "    print(r.overall['J&F'])\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip()) == 1.0


def test_rle_json_predictions_equal_png_predictions(tmp_path):
    videos = _videos(tmp_path, "long_rvos", n=3)
    perturbed_predictions(videos, tmp_path / "pred", seed=5)
    data = {}
    for v in reversed(videos):   # file order differs from the ground truth's
        data[v.video_id] = {e.exp_id: [M.encode(M.read_png(tmp_path / "pred" / v.video_id / e.exp_id /
                                                           f"{f.name}.png") != 0) for f in v.frames]
                            for e in v.expressions}
    (tmp_path / "pred.json").write_text(json.dumps(data))
    png = evaluate(videos, tmp_path / "pred", protocol="long_rvos", progress=False)
    rle = evaluate(videos, tmp_path / "pred.json", protocol="long_rvos", workers=2, progress=False)
    assert rle.rows == png.rows and rle.overall == png.overall


def test_per_frame_values_and_report_files(tmp_path):
    videos = _videos(tmp_path, "long_rvos", n=2, frames=5)
    perturbed_predictions(videos, tmp_path / "pred", seed=6)
    report = evaluate(videos, tmp_path / "pred", protocol="long_rvos", per_frame=True, progress=False)
    paths = report.write(tmp_path / "out" / "REPORT.json")
    assert set(paths) == {"json", "csv", "md", "frames"}
    table = pq.read_table(paths["frames"]).to_pydict()
    assert set(table) == {"video_id", "exp_id", "frame", "J", "F"}
    n_exps = sum(len(v.expressions) for v in videos)
    assert len(table["J"]) == n_exps * 5
    # the per-frame means are the rows' J
    first = report.rows[0]
    js = [j for v, e, j in zip(table["video_id"], table["exp_id"], table["J"])
          if (v, e) == (first["video_id"], first["exp_id"])]
    assert np.mean(js) == pytest.approx(first["J"])
    doc = json.loads(paths["json"].read_text())
    assert set(doc) >= {"overall", "by_kind", "expressions", "warnings"}
    assert set(doc["overall"]) == {"J", "F", "J&F", "tIoU", "vIoU"}
    assert set(doc["expressions"][0]) >= {"video_id", "exp_id", "kind", "J", "F", "J&F", "tIoU", "vIoU"}
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("video_id,exp_id,kind,J,F,J&F,tIoU,vIoU") and len(csv_lines) == n_exps + 1
    md = paths["md"].read_text()
    assert "| **overall** |" in md and "tIoU" in md


@pytest.mark.parametrize("protocol", ["long_rvos", "mevis"])
def test_deleting_one_expression_lowers_strict_and_official_matches_the_oracle(tmp_path, ref, protocol):
    import shutil
    videos = _videos(tmp_path, protocol, n=3)
    perturbed_predictions(videos, tmp_path / "pred", seed=7)
    full = evaluate(videos, tmp_path / "pred", protocol=protocol, progress=False)
    v, e = videos[1], videos[1].expressions[0]
    shutil.rmtree(tmp_path / "pred" / v.video_id / e.exp_id)
    report = evaluate(videos, tmp_path / "pred", protocol=protocol, workers=2, progress=False)
    n = len(report.rows)
    rows = {(r["video_id"], r["exp_id"]): r for r in report.rows}
    assert (rows[v.video_id, e.exp_id]["status"], rows[v.video_id, e.exp_id]["J"]) == ("zero", 0.0)
    # strict: the deleted expression counts as 0, every other row is unchanged
    others = sum(r["J"] for r in full.rows if (r["video_id"], r["exp_id"]) != (v.video_id, e.exp_id))
    assert report.overall["J"] == pytest.approx(others / n, abs=1e-12)
    # official: the expression disappears from the mean (the official worker crashes on it)
    assert report.overall_official["J"] == pytest.approx(others / (n - 1), abs=1e-12)
    assert report.overall["J"] < report.overall_official["J"]
    for missing in ("strict", "official"):
        want = ref.score_referring(videos, tmp_path / "pred", protocol=protocol, missing=missing)
        overall, _ = ref.aggregate(want, protocol=protocol)
        got = report.overall if missing == "strict" else report.overall_official
        assert got == pytest.approx(overall, abs=TOL)
    official = evaluate(videos, tmp_path / "pred", protocol=protocol, missing="official", progress=False)
    assert official.overall == report.overall_official
    missing_rows = [w for w in report.warnings if w["problem"] == "missing_expression"]
    assert [(w["video_id"], w["exp_id"], w["count"], w["policy"]) for w in missing_rows] == [
        (v.video_id, e.exp_id, v.num_frames, "zero")]
