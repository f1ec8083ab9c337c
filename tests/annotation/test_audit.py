"""The audit as a run: REPORT.json/.csv/.md, stable ids, a project's flags and dismissals, the
prediction and engine checks, workers, and the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longrvos_data import masks
from longrvos_data.annotation import Store, Write, init_project
from longrvos_data.annotation.audit import CHECKS, AuditConfig, audit, config_with
from longrvos_data.loaders import load
from longrvos_data.predictions import write_video
from longrvos_data.synth import textured_lvos

pytestmark = pytest.mark.slow
FLAG_KEYS = {"flag_id", "check", "severity", "split", "video_id", "track_ids", "exp_id", "frame_start", "frame_end",
             "value", "threshold", "score", "message"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return textured_lvos(tmp_path_factory.mktemp("audit") / "src", split="valid", num_videos=2, num_frames=30)


def damaged_project(source: Path, root: Path, *, move: bool = True) -> Path:
    """A project of ``source`` with two defects: track 1 of the first video absent on frame 10,
    and (``move``) its frame 20 mask moved 40 px."""
    init_project(root / "proj", source, user="importer")
    with Store.open(root / "proj") as store:
        vid = store.video_ids("valid")[0]
        c10, c20 = store.cell("valid", vid, "1", 10), store.cell("valid", vid, "1", 20)
        writes = [Write("1", 10, base=c10.version, state="absent")]
        if move:
            moved = np.roll(masks.decode(c20.rle), 40, axis=1)
            writes.append(Write("1", 20, base=c20.version, rle=masks.encode(moved)))
        store.write("valid", vid, writes, user="ana")
    return root / "proj"


def test_the_report_has_config_summary_and_sorted_flags_with_stable_ids(source, tmp_path):
    project = damaged_project(source, tmp_path)
    report = audit(project)
    found = {(f.check, f.track_ids, f.frame_start, f.frame_end) for f in report.flags}
    assert ("empty_in_span", ("1",), 10, 10) in found and ("centre_jump", ("1",), 20, 20) in found
    assert len(report.flags) == 2, report.flags
    paths = report.write(tmp_path / "out" / "REPORT.json")
    data = json.loads(paths["json"].read_text())
    assert set(data["config"]) == set(AuditConfig.__dataclass_fields__)
    assert data["checks"] == list(CHECKS) and data["summary"]["flags"] == 2 and data["summary"]["masks"] > 100
    assert all(set(row) == FLAG_KEYS for row in data["flags"])
    ranks = [{"high": 0, "medium": 1, "low": 2}[row["severity"]] for row in data["flags"]]
    assert ranks == sorted(ranks)
    assert paths["csv"].read_text().splitlines()[0].startswith("flag_id,check,severity")
    assert "| empty_in_span |" in paths["md"].read_text()
    again = audit(project)
    assert [f.flag_id for f in again.flags] == [f.flag_id for f in report.flags]


def test_a_project_keeps_the_flags_and_a_dismissal_outlives_a_rerun(source, tmp_path):
    project = damaged_project(source, tmp_path)
    report = audit(project)
    with Store.open(project) as store:
        stored = store.flags(source="audit")
        assert {f.flag_id for f in stored} == {f.flag_id for f in report.flags}
        gap = next(f for f in stored if f.check == "empty_in_span")
        store.dismiss(gap.flag_id, user="ana")
    again = audit(project)
    assert gap.flag_id not in {f.flag_id for f in again.flags} and again.dismissed == 1
    assert again.summary["dismissed"] == 1
    with Store.open(project) as store:
        assert gap.flag_id in {f.flag_id for f in store.flags(dismissed=True)}
    untouched = audit(project, record=False)                 # --no-record: the project is left as it is
    assert untouched.dismissed == 0 and len(untouched.flags) == 2


def test_predictions_that_disagree_are_flagged_on_their_frames(source, tmp_path):
    video = next(iter(load(source, format="lvos")["valid"]))

    def frames():
        for i in range(video.num_frames):
            m = dict(video.frame_masks(i))
            if 5 <= i <= 7:
                m.pop("1", None)                             # the model loses object 1 on 5..7
            yield i, m
    write_video(tmp_path / "pred", video, frames())
    report = audit(source, pred=tmp_path / "pred")
    model = [(f.video_id, f.track_ids, f.frame_start, f.frame_end) for f in report.flags if f.check == "model_disagrees"]
    assert model == [(video.video_id, ("1",), 5, 7)]


def test_the_engine_check_flags_a_mask_the_engine_cannot_reproduce(source, tmp_path):
    # no human mask on track 1 (frame 10 is marked absent): keyframes every 10th visible frame
    project = damaged_project(source, tmp_path, move=False)
    report = audit(project, split="valid", engine="classical", config=config_with({"keyframe_every": "10"}))
    engine = [(f.video_id, f.track_ids, f.check, f.frame_start, f.frame_end) for f in report.flags
              if f.check in ("engine_disagrees", "fb_disagreement")]
    vid = report.flags[0].video_id if report.flags else None
    assert (vid, ("1",), "engine_disagrees", 10, 10) in engine, engine    # the emptied frame, and only it
    assert [e for e in engine if e[2] == "engine_disagrees"] == [(vid, ("1",), "engine_disagrees", 10, 10)]

    # a human keyframe starts the runs: the moved mask at 20 is where they start, not a finding
    project = damaged_project(source, tmp_path / "moved")
    report = audit(project, split="valid", engine="classical")
    assert not [f for f in report.flags if f.check == "engine_disagrees" and f.frame_start <= 20 <= f.frame_end]


def test_workers_find_the_same_flags(source, tmp_path):
    project = damaged_project(source, tmp_path)
    one, two = audit(project, workers=1, record=False), audit(project, workers=2, record=False)
    assert [f.as_dict() for f in one.flags] == [f.as_dict() for f in two.flags]
    assert one.masks == two.masks


def test_thresholds_are_set_by_name_and_checked():
    assert config_with({"tiny_px": "30", "low_iou": "0.4"}) == AuditConfig(tiny_px=30, low_iou=0.4)
    with pytest.raises(Exception, match="unknown audit threshold 'tiny'"):
        config_with({"tiny": "3"})
    with pytest.raises(Exception, match="not an integer"):
        config_with({"gap_max": "1.5"})


def test_the_command_line(source, tmp_path):
    project = damaged_project(source, tmp_path)
    cmd = [sys.executable, "-m", "longrvos_data.cli", "audit", str(project), "--out", str(tmp_path / "r" / "A.json"),
           "--workers", "2", "--threshold", "gap_max=1", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 flag(s)" in r.stdout and "empty_in_span" in r.stdout
    assert json.loads((tmp_path / "r" / "A.json").read_text())["config"]["gap_max"] == 1
    assert (tmp_path / "r" / "A.csv").is_file() and (tmp_path / "r" / "A.md").is_file()
    r = subprocess.run(cmd[:-3] + ["--threshold", "gap_max"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "write NAME=VALUE, e.g. tiny_px=20" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cmd[:-3] + ["--keyframe-every", "4", "--no-record"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r" / "A.json").read_text())["config"]["keyframe_every"] == 4
    r = subprocess.run(cmd[:-3] + ["--keyframe-every", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--keyframe-every must be at least 1" in r.stderr
