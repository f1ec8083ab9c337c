"""The audit's flags in FiftyOne: labels on the frames they span, tags, saved views, refusals.

The report comes from a real `audit` run on a generated dataset with two defects made by
hand (a speck where an object was, a repeated expression); what the views must hold is
worked out from the report's JSON, not from the converter. Every test talks to a real
MongoDB: FiftyOne's own mongod, run on a temporary folder by `private_database`.
"""
from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fiftyone")

from longrvos_data import load  # noqa: E402
from longrvos_data import masks as M  # noqa: E402
from longrvos_data.annotation.audit import SEVERITY_RANK, audit  # noqa: E402
from longrvos_data.cli import main as cli_main  # noqa: E402
from longrvos_data.converters import fiftyone as lfo  # noqa: E402
from longrvos_data.errors import DataError  # noqa: E402
from longrvos_data.synth import generate  # noqa: E402

SPECK_VIDEO, SPECK_TRACK, SPECK_FRAME = "va01v001", "2", 2
DUP_VIDEO = "va01v000"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A generated Long-RVOS set (train + valid) with two defects in valid, and the audit
    reports of valid alone and of both splits."""
    tmp = tmp_path_factory.mktemp("audited")
    src = generate("long_rvos", tmp / "src", num_videos=2, num_frames=6, splits=("train", "valid"))
    video = load(src)["valid"].video(SPECK_VIDEO)
    mask = video.frame_masks(SPECK_FRAME)[SPECK_TRACK]
    cy, cx = (int(np.mean(a)) for a in np.nonzero(mask))
    speck = np.zeros_like(mask)
    speck[cy:cy + 2, cx:cx + 2] = True          # 4 px where the neighbouring frames hold ~180
    M.write_binary_png(src / "valid" / "Annotations" / SPECK_VIDEO / SPECK_TRACK /
                       f"{video.frames[SPECK_FRAME].name}.png", speck)
    meta = src / "valid" / "meta_expressions.json"
    doc = json.loads(meta.read_text())
    exps = doc["videos"][DUP_VIDEO]["expressions"]
    exps["9"] = dict(exps["0"])                  # the same text again
    meta.write_text(json.dumps(doc))
    valid = audit(src, split="valid").write(tmp / "valid" / "REPORT.json")["json"]
    both = audit(src).write(tmp / "both" / "REPORT.json")["json"]
    return src, valid, both


def flags_of(report: Path) -> list[dict]:
    return json.loads(report.read_text())["flags"]


def expected(report: Path) -> dict[tuple[str, int], list[tuple]]:
    """``{(video_id, frame_number): [label tuple]}`` from the report's rows, each frame's flags
    most severe first, then by score."""
    out: dict[tuple[str, int], list[dict]] = {}
    for f in flags_of(report):
        for t in range(f["frame_start"], f["frame_end"] + 1):
            out.setdefault((f["video_id"], t + 1), []).append(f)
    return {k: [(f["check"], f["severity"], f["flag_id"], " ".join(f["track_ids"]), f["exp_id"], f["value"],
                 f["threshold"], f["score"], f["frame_start"], f["frame_end"], f["message"])
                for f in sorted(v, key=lambda f: (SEVERITY_RANK[f["severity"]], -f["score"], f["flag_id"]))]
            for k, v in out.items()}


def labels(sample) -> list[tuple]:
    return [(c.label, c["severity"], c["flag_id"], c["track_ids"], c["exp_id"], c["value"], c["threshold"],
             c["score"], c["frame_start"], c["frame_end"], c["message"]) for c in sample["audit"].classifications]


def test_the_audit_run_found_the_defects(source):
    _, valid, _ = source
    rows = flags_of(valid)
    assert {(f["check"], f["severity"], f["video_id"], f["frame_start"], f["frame_end"]) for f in rows
            if f["check"] in ("tiny_area", "duplicate_expression")} == {
        ("tiny_area", "high", SPECK_VIDEO, SPECK_FRAME, SPECK_FRAME), ("duplicate_expression", "medium", DUP_VIDEO, 0, 5)}
    covered = expected(valid)
    assert any(len(v) > 1 for v in covered.values()), "some frame carries several flags"
    assert {f["severity"] for f in rows} >= {"high", "medium"}


def test_flags_label_the_frames_they_span_and_the_views_hold_exactly_them(fo, name, source, tmp_path):
    src, valid, _ = source
    report = lfo.to_fiftyone(src, name=name, split="valid", masks_dir=tmp_path / "m", progress=False, audit=valid)
    want = expected(valid)
    assert (report.audit_flags, report.audit_frames) == (len(flags_of(valid)), len(want))
    assert report.views[-2:] == ["audit_flags", "audit_high"]
    ds = fo.load_dataset(name)
    assert set(ds.list_saved_views()) >= {"by_video", "audit_flags", "audit_high"}
    assert ds.info["longrvos"]["audit"] == str(valid.resolve())
    # every frame: its flags, in order, with every attribute; unflagged frames have none
    for s in ds:
        key = (s["video_id"], s["frame_number"])
        if key in want:
            assert labels(s) == want[key], key
        else:
            assert s["audit"] is None, key
    # audit_flags: exactly the flagged frames, most severe first, then by video and frame
    view = ds.load_saved_view("audit_flags")
    order = sorted(want, key=lambda k: (min(SEVERITY_RANK[lab[1]] for lab in want[k]), k[0], k[1]))
    assert list(zip(view.values("video_id"), view.values("frame_number"))) == order
    assert [labels(s) for s in view] == [want[k] for k in order]
    # audit_high: the frames with a high flag, showing only those flags
    high = {k: [lab for lab in v if lab[1] == "high"] for k, v in want.items()}
    high = {k: v for k, v in high.items() if v}
    view = ds.load_saved_view("audit_high")
    assert list(zip(view.values("video_id"), view.values("frame_number"))) == sorted(high)
    assert [labels(s) for s in view] == [high[k] for k in sorted(high)]
    assert (SPECK_VIDEO, SPECK_FRAME + 1) in high
    # tags: every frame of a video with a flag of that severity
    for severity in SEVERITY_RANK:
        videos = {f["video_id"] for f in flags_of(valid) if f["severity"] == severity}
        tagged = ds.match_tags(f"audit:{severity}")
        assert sorted(set(tagged.values("video_id"))) == sorted(videos)
        assert len(tagged) == sum(len(ds.match({"video_id": v})) for v in videos)


def test_a_new_report_replaces_the_old_and_a_rerun_keeps_the_flags(fo, name, source, tmp_path):
    src, valid, _ = source
    lfo.to_fiftyone(src, name=name, split="valid", masks_dir=tmp_path / "m", progress=False, audit=valid)
    only_high = tmp_path / "high.json"
    doc = json.loads(valid.read_text())
    doc["flags"] = [f for f in doc["flags"] if f["severity"] == "high"]
    only_high.write_text(json.dumps(doc))
    ds = fo.load_dataset(name)
    assert lfo.add_audit(name, only_high) == (len(doc["flags"]), len(expected(only_high)))
    got = {(s["video_id"], s["frame_number"]): labels(s) for s in ds.exists("audit")}
    assert got == expected(only_high)
    assert set(ds.count_sample_tags()) == {"audit:high"}
    assert len(ds.load_saved_view("audit_flags")) == len(got)
    # a re-import without --audit keeps the labels, the tags and the views
    lfo.to_fiftyone(src, name=name, split="valid", masks_dir=tmp_path / "m", progress=False)
    assert {(s["video_id"], s["frame_number"]): labels(s) for s in ds.exists("audit")} == got
    assert set(ds.count_sample_tags()) == {"audit:high"}
    assert len(ds.load_saved_view("audit_high")) == len(got)


def test_cli_audit(fo, name, source, tmp_path, capsys):
    src, valid, both = source
    assert cli_main(["fiftyone", str(src), "--name", name, "--split", "valid", "--masks-dir", str(tmp_path / "m"),
                     "--audit", str(valid), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["audit_flags"], out["audit_frames"]) == (len(flags_of(valid)), len(expected(valid)))
    assert out["views"][-2:] == ["audit_flags", "audit_high"]
    assert len(fo.load_dataset(name).load_saved_view("audit_flags")) == len(expected(valid))
    # flags of a split the dataset does not hold: one line, exit 2, nothing written
    other = f"{name}-x"
    assert cli_main(["fiftyone", str(src), "--name", other, "--split", "valid", "--masks-dir", str(tmp_path / "x"),
                     "--audit", str(both)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(both) in err[0] and "video 'tr00v" in err[0] and "field 'flags[" in err[0] \
        and "holds no split 'train'" in err[0], err
    assert not fo.dataset_exists(other)


def test_flags_the_dataset_does_not_hold_are_refused_and_nothing_is_written(fo, name, source, tmp_path):
    src, valid, both = source
    lfo.to_fiftyone(src, name=name, split="valid", masks_dir=tmp_path / "m", progress=False)
    ds = fo.load_dataset(name)
    views = ds.list_saved_views()
    rows = json.loads(valid.read_text())

    def broken(change, index=0) -> Path:
        doc = copy.deepcopy(rows)
        change(doc["flags"][index])
        path = tmp_path / f"r{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(doc))
        return path

    last = len(rows["flags"]) - 1
    cases = [
        (both, r"holds no split 'train'", None),
        (broken(lambda f: f.update(video_id="nope"), last), r"split 'valid' of FiftyOne dataset .* has no video 'nope'",
         (f"flags[{last}].video_id", "nope")),
        (broken(lambda f: f.update(frame_end=6)), r"frame 6 is past the video's 6 frame\(s\)", ("flags[0].frame_end",)),
        (broken(lambda f: f.update(frame_start="2")), r"must be int, not \"2\"", ("flags[0].frame_start",)),
        (broken(lambda f: f.update(severity="urgent")), r"'urgent' is not one of high, medium, low",
         ("flags[0].severity",)),
        (broken(lambda f: f.pop("message")), r"is missing", ("flags[0].message",)),
    ]
    for path, message, where in cases:
        with pytest.raises(DataError, match=message) as info:
            lfo.add_audit(ds, path)
        err = info.value
        assert err.file == str(path) and err.video and err.field.startswith("flags["), str(err)
        if where:
            assert err.field == where[0] and (len(where) == 1 or err.video == where[1])
        assert not ds.has_sample_field("audit") and ds.count_sample_tags() == {}
        assert ds.list_saved_views() == views
    # a new dataset: refused before the import, so nothing is created
    with pytest.raises(DataError, match="holds no split 'train'"):
        lfo.to_fiftyone(src, name=name + "-new", split="valid", masks_dir=tmp_path / "n", progress=False, audit=both)
    assert not fo.dataset_exists(name + "-new")


@pytest.mark.parametrize("content, message, field", [
    ({"overall": {"J&F": 0.5}, "per_video": []}, "not an audit report .*no 'flags' or 'checks'", "flags"),
    ({"flags": []}, "not an audit report .*no 'checks'", "checks"),
    ([1, 2], "not an audit report", "flags"),
    ({"flags": {"a": 1}, "checks": []}, "must be a list of flags", "flags"),
    ("{broken", "not an audit report: not JSON", None),
])
def test_a_file_that_is_not_an_audit_report_is_refused(fo, name, source, tmp_path, content, message, field):
    src, _, _ = source
    lfo.to_fiftyone(src, name=name, split="valid", masks_dir=tmp_path / "m", progress=False)
    path = tmp_path / "REPORT.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataError, match=message) as info:
        lfo.add_audit(name, path)
    assert (info.value.file, info.value.field) == (str(path), field)
    assert not fo.load_dataset(name).has_sample_field("audit")
    with pytest.raises(DataError, match=message):   # before any import
        lfo.to_fiftyone(src, name=name + "-new", split="valid", masks_dir=tmp_path / "n", progress=False, audit=path)
    assert not fo.dataset_exists(name + "-new")
