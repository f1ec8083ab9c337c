"""``longrvos eval`` on Long-RVOS ground truth as the official evaluation reads it, not as the
release writes it: grey-level and 1-bit mask PNGs (any non-zero pixel is the object) and an
expression whose object has no ``Annotations/<vid>/<obj>/`` folder (all-empty masks). Those
videos are scored, not dropped; every J, tIoU and vIoU below is worked out by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longrvos_data import masks as M
from longrvos_data.cli import main

from fixtures import grid

META = {"videos": {
    "v1": {"frames": ["00000", "00001", "00002"], "expressions": {
        "0": {"exp": "the grey object", "obj_id": 1, "type": "static"},
        "1": {"exp": "the object that has no folder", "obj_id": 2, "type": "dynamic"}}},
    "v2": {"frames": ["00000"], "expressions": {
        "0": {"exp": "a release-style object", "obj_id": 1, "type": "static"}}},
}}


def _build(root: Path) -> Path:
    """A Long-RVOS ``valid`` split (2x4 frames) with non-standard masks, and its predictions."""
    split = root / "gt" / "valid"
    for vid, entry in META["videos"].items():
        for name in entry["frames"]:
            (split / "JPEGImages" / vid).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 2), (90, 90, 90)).save(split / "JPEGImages" / vid / f"{name}.jpg")
    (split / "meta_expressions.json").write_text(json.dumps(META))
    obj = split / "Annotations" / "v1" / "1"
    obj.mkdir(parents=True)
    Image.fromarray(np.array([[128, 128, 0, 0], [128, 128, 0, 0]], np.uint8)).save(obj / "00000.png")  # grey 128
    Image.fromarray(grid("....", "..##")).save(obj / "00001.png")                                      # 1-bit
    # 00002: no PNG (absent); object 2: no folder at all
    (split / "Annotations" / "v2" / "1").mkdir(parents=True)
    M.write_binary_png(split / "Annotations" / "v2" / "1" / "00000.png", grid("#...", "#..."))

    pred = root / "pred"
    for (vid, exp, name), rows in {
        ("v1", "0", "00000"): ("###.", "...."),      # GT "##../##..": 2 in common, 5 in the union: J 0.4
        ("v1", "0", "00001"): ("....", "..##"),      # equal to GT: J 1
        ("v1", "0", "00002"): ("....", "...."),      # both empty: J 1
        ("v1", "1", "00000"): ("....", "...."),      # GT empty throughout: J 1
        ("v1", "1", "00001"): ("#...", "...."),      # a pixel where there is nothing: J 0
        ("v1", "1", "00002"): ("....", "...."),      # J 1
        ("v2", "0", "00000"): ("#...", "#..."),      # J 1
    }.items():
        M.write_binary_png(pred / vid / exp / f"{name}.png", grid(*rows))
    return root


# (video, exp) -> J, tIoU, vIoU by hand.
#   v1/0: J (0.4 + 1 + 1) / 3 = 0.8; frames with masks: GT {0, 1}, pred {0, 1}: tIoU 1, vIoU (0.4 + 1) / 2 = 0.7
#   v1/1: J (1 + 0 + 1) / 3 = 2/3;   GT {}, pred {1}: tIoU 0, vIoU 0
#   v2/0: J 1, tIoU 1, vIoU 1
EXPECTED = {("v1", "0"): (0.8, 1.0, 0.7), ("v1", "1"): (2 / 3, 0.0, 0.0), ("v2", "0"): (1.0, 1.0, 1.0)}


@pytest.mark.parametrize("missing", ["strict", "official"])
def test_eval_scores_grey_masks_and_objects_without_folder(tmp_path: Path, capsys, missing: str) -> None:
    root = _build(tmp_path)
    out = tmp_path / "res" / "REPORT.json"
    code = main(["eval", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--protocol", "long_rvos",
                 "--split", "valid", "--out", str(out), "--no-progress", "--missing", missing])
    assert code == 0
    capsys.readouterr()
    doc = json.loads(out.read_text())
    got = {(r["video_id"], r["exp_id"]): (r["J"], r["tIoU"], r["vIoU"], r["status"]) for r in doc["expressions"]}
    assert got.keys() == EXPECTED.keys()
    for key, (j, tiou, viou) in EXPECTED.items():
        assert got[key][:3] == pytest.approx((j, tiou, viou), abs=1e-9), key
        assert got[key][3] == "ok", key
    assert doc["counts"]["scored"] == 3 and doc["counts"]["dropped"] == 0
    assert not [w for w in doc["warnings"] if w["problem"] == "ground_truth_error"]
    assert doc["overall"]["J"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3, abs=1e-9)
    assert doc["overall_official"]["J"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3, abs=1e-9)
    assert doc["by_kind"]["static"]["J"] == pytest.approx((0.8 + 1.0) / 2, abs=1e-9)
    assert doc["by_kind"]["dynamic"]["J"] == pytest.approx(2 / 3, abs=1e-9)
