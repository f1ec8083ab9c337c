"""`longrvos info` and `longrvos validate` on generated datasets of every format."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longrvos_data.cli import main
from longrvos_data.schema import FORMATS
from longrvos_data.synth import PROFILES, generate, synth_splits

SUBSETS = {"revos": {"train_sub"}}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    made = {}
    for fmt in FORMATS:
        made[fmt] = generate(fmt, root / fmt, num_videos=3, num_frames=10, seed=1)
    return made


def _expected(fmt, tmp_path):
    by_split = synth_splits(fmt, tmp_path / "expected", num_videos=3, num_frames=10, seed=1)
    out = {}
    for split, videos in by_split.items():
        kinds = Counter(e.kind for v in videos for e in v.expressions)
        masks = sum(len(v.frame_masks(i)) for v in videos if v.has_masks for i in range(v.num_frames))
        out[split] = {"videos": len(videos), "frames": sum(v.num_frames for v in videos),
                      "tracks": sum(len(v.tracks) for v in videos),
                      "expressions": sum(len(v.expressions) for v in videos),
                      "expressions_by_kind": dict(kinds), "masks": masks,
                      "resolutions": dict(Counter(f"{v.height}x{v.width}" for v in videos))}
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_json_counts_match_the_source(fmt, datasets, tmp_path, capsys):
    code, out, _ = _run(capsys, "info", datasets[fmt], "--json", "--deep")
    assert code == 0
    info = json.loads(out)
    assert info["format"] == fmt
    expected = _expected(fmt, tmp_path)
    assert set(info["splits"]) - SUBSETS.get(fmt, set()) == set(expected)
    for split, exp in expected.items():
        got = info["splits"][split]
        for key in ("videos", "frames", "tracks", "expressions", "masks", "resolutions"):
            assert got[key] == exp[key], (split, key)
        assert got["expressions_by_kind"] == exp["expressions_by_kind"]
    for key in ("videos", "frames", "tracks", "expressions", "masks"):
        assert info[key] == sum(e[key] for e in expected.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_on_one_split_folder_and_split_flag(fmt, datasets, capsys):
    split = [s for s in PROFILES[fmt].splits if s not in PROFILES[fmt].unannotated][-1]
    code, out, _ = _run(capsys, "info", datasets[fmt], "--split", split, "--json")
    assert code == 0
    info = json.loads(out)
    assert list(info["splits"]) == [split]
    assert info["videos"] == 3 and "masks" not in info


@pytest.mark.parametrize("fmt", FORMATS)
def test_validate_clean_dataset(fmt, datasets, capsys):
    code, out, _ = _run(capsys, "validate", datasets[fmt])
    assert code == 0, out
    assert out.strip().endswith("0 error(s), 0 warning(s)")


def test_deep_with_two_workers_matches_one(datasets, capsys):
    _, one, _ = _run(capsys, "info", datasets["long_rvos"], "--json", "--deep")
    _, two, _ = _run(capsys, "info", datasets["long_rvos"], "--json", "--deep", "--workers", "2")
    assert json.loads(one)["masks"] == json.loads(two)["masks"] > 0


def test_human_table(datasets, capsys):
    code, out, _ = _run(capsys, "info", datasets["mevis"])
    assert code == 0
    assert "mevis" in out and "total" in out and "no-target" in out


def test_validate_reports_a_corrupt_frame_and_exits_1(tmp_path, capsys):
    root = generate("long_rvos", tmp_path / "lr", num_videos=2, num_frames=6, splits=["valid"])
    frame = sorted((root / "valid" / "JPEGImages").glob("*/*.jpg"))[2]
    frame.write_bytes(frame.read_bytes()[:40])
    code, out, _ = _run(capsys, "validate", root)
    assert code == 1
    line = next(l for l in out.splitlines() if frame.name in l)
    assert str(frame) in line and f"video '{frame.parent.name}'" in line and "field 'frames[" in line


def test_validate_reports_wrong_frame_size(tmp_path, capsys):
    root = generate("mevis", tmp_path / "mv", num_videos=2, num_frames=6, splits=["train"])
    frame = sorted((root / "train" / "JPEGImages").glob("*/*.jpg"))[0]
    Image.new("RGB", (7, 5)).save(frame)
    code, out, _ = _run(capsys, "validate", root)
    assert code == 1
    assert "frame is 5x7" in out and frame.parent.name in out


def test_unknown_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "info", tmp_path / "empty")
    assert code == 2
    assert "matches no known format" in err and "Traceback" not in err
    for fmt in FORMATS:
        assert fmt in err
    code, _, err = _run(capsys, "info", tmp_path / "missing")
    assert code == 2 and "no such file" in err


def test_truncated_metadata_through_the_cli(tmp_path, capsys):
    root = generate("long_rvos", tmp_path / "lr", num_videos=1, num_frames=4, splits=["valid"])
    meta = root / "valid" / "meta_expressions.json"
    meta.write_bytes(meta.read_bytes()[:-20])
    code, _, err = _run(capsys, "info", root, "--format", "long_rvos")
    assert code == 2 and str(meta) in err and "invalid JSON" in err and "Traceback" not in err
    code, out, _ = _run(capsys, "validate", root, "--format", "long_rvos")
    assert code == 1 and str(meta) in out


def test_console_script_runs(datasets):
    exe = Path(sys.executable).with_name("longrvos")
    res = subprocess.run([str(exe), "info", str(datasets["lvos"]), "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["format"] == "lvos"


def test_validate_warns_of_lenient_long_rvos_masks_across_workers(tmp_path, capsys):
    from fixtures import fixture
    root = fixture("long_rvos_hand").build(tmp_path)
    obj = root / "train/Annotations/vidA/1"
    Image.fromarray(np.array([[0, 0, 0, 0, 0, 0], [0, 200, 200, 0, 0, 0]] * 2, np.uint8)).save(obj / "00001.png")
    code, out, _ = _run(capsys, "validate", root, "--split", "train", "--workers", "2", "--json")
    assert code == 0
    assert json.loads(out) == [{
        "level": "warning", "file": str(obj), "video": "vidA", "field": "Annotations/1",
        "message": "1 mask PNG(s) hold values other than 0 and 255 (e.g. 00001.png): values [0, 200]; any non-zero "
                   "pixel is read as the object, as the official evaluation reads them (the official training "
                   "takes only 255)"}]


def test_validate_refuses_an_lvos_start_frame_without_its_reference_mask(tmp_path, capsys):
    from fixtures import fixture
    root = fixture("lvos_hand").build(tmp_path)
    png = root / "train/Annotations/lv000001/00000001.png"
    png.unlink()
    code, out, _ = _run(capsys, "validate", root, "--split", "train")
    assert code == 1
    meta = root / "train/train_meta.json"
    for obj, start in (("1", "'00000001'"), ("3", "1")):
        assert (f"error: {meta}: video 'lv000001': field 'objects.{obj}.frame_range.start': the reference mask of "
                f"frame_range start {start} is missing: there is no {png}") in out.splitlines()
    assert out.splitlines()[-1] == "2 error(s), 0 warning(s)"
