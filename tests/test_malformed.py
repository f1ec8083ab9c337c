"""Malformed masks and JSON are errors, found fast (issue 10 item 2): corrupt RLE counts in every
verb that reads masks, repeated JSON keys, PNG chunks whose CRC fails, metadata that is no
regular file. Crafted inputs on the hand-written fixtures; exact messages."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import fixture

import longrvos_data
from longrvos_data import masks
from longrvos_data.cli import main
from longrvos_data.errors import DataError
from longrvos_data.schema import Frame, Video
from longrvos_data.validate import check_video, validate

CLI = [sys.executable, "-m", "longrvos_data.cli"]


def _cli(*argv, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *(str(a) for a in argv)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LONGRVOS_CACHE": str(Path(argv[-1]).parent / "cache")})


@pytest.fixture
def bad_rle(tmp_path) -> tuple[Path, str]:
    """MeViS train whose anno_id 11, frame 2 (vidA, 4x6) has counts summing to 2 pixels."""
    base = fixture("mevis_hand").build(tmp_path)
    md = base / "train" / "mask_dict.json"
    doc = json.loads(md.read_text())
    doc["11"][2] = {"size": [4, 6], "counts": "02"}
    md.write_text(json.dumps(doc))
    return base / "train", (f"{md}: video 'vidA': field 'mask_dict[11][2]': "
                            "RLE counts sum to 2 pixel(s), not 4x6 = 24")


def test_bad_rle_is_one_error_in_validate(bad_rle, capsys):
    """Before: "0 error(s)" (pycocotools decoded uninitialised memory)."""
    split, message = bad_rle
    assert main(["validate", str(split)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"error: {message}", "1 error(s), 0 warning(s)"]


def test_bad_rle_stops_info_deep(bad_rle, capsys):
    """Before: exit 0 and 6 masks counted (the broken frame read as 1 pixel)."""
    split, message = bad_rle
    assert main(["info", "--deep", str(split)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"longrvos info: error: {message}"]


def test_bad_rle_stops_convert_to_hf_at_once(bad_rle, tmp_path):
    """Before: `convert --to hf` never returned (pycocotools' merge spins on such counts)."""
    split, message = bad_rle
    res = _cli("convert", split, "--to", "hf", "--no-progress", tmp_path / "out", timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines()[-1] == f"longrvos convert: error: {message}"
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_bad_ground_truth_rle_stops_eval(bad_rle, tmp_path, capsys):
    """Before: scored against garbage ground truth, exit 0."""
    split, message = bad_rle
    pred = tmp_path / "pred"
    for vid, exps, n, size in (("vidA", "012", 3, (4, 6)), ("vidB", "0", 2, (3, 5))):
        for e in exps:
            for i in range(n):
                masks.write_binary_png(pred / vid / e / f"{i:05d}.png", np.zeros(size, bool))
    code = main(["eval", "--gt", str(split), "--pred", str(pred), "--protocol", "mevis", "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"longrvos eval: error: {message}"]


# -- repeated keys ---------------------------------------------------------------------------------
def _repeat_expression(base: Path) -> Path:
    """vidB's expressions list id "0" twice in train/meta_expressions.json (the last is the dog)."""
    meta = base / "train" / "meta_expressions.json"
    text = meta.read_text()
    old = '"0": {"exp": "the bird flying away", "obj_id": [0], "anno_id": [12]}'
    assert old in text
    meta.write_text(text.replace(old, old + ', "0": {"exp": "the dog", "obj_id": [0], "anno_id": [12]}'))
    return meta


def test_repeated_key_is_an_error_in_validate(tmp_path):
    """Before: validate reported nothing (json.load keeps the last silently)."""
    base = fixture("mevis_hand").build(tmp_path)
    (base / "train" / "meta_expressions_v2.json").unlink()
    meta = _repeat_expression(base)
    found = [str(p) for p in validate(base / "train") if p.level == "error"]
    assert found == [f"error: {meta}: field 'videos.vidB.expressions.0': key '0' appears 2 times in one object; "
                     "the last is kept"]


def test_loading_a_repeated_key_warns_once_and_keeps_the_last(tmp_path, caplog):
    base = fixture("mevis_hand").build(tmp_path)
    (base / "train" / "meta_expressions_v2.json").unlink()
    meta = _repeat_expression(base)
    with caplog.at_level(logging.WARNING, logger="longrvos_data"):
        for _ in range(2):
            reader = longrvos_data.load(base / "train")["train"]
            assert [e.text for e in reader.video("vidB").expressions] == ["the dog"]
    warnings = [r.getMessage() for r in caplog.records if "repeated" in r.getMessage()]
    assert warnings == [f"warning: {meta}: repeated key(s) at videos.vidB.expressions.0; the last value of each "
                        "is kept"]


# -- PNG CRC ---------------------------------------------------------------------------------------
# A 4x6 mask whose PNG, with bit 0x40 of the 7th image-data byte flipped, still decodes (to other pixels).
SILENT = np.array([[0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1], [0, 1, 0, 1, 0, 0], [1, 0, 1, 1, 0, 0]], bool)


def _write_flipped(path: Path) -> int:
    """Write `SILENT` as a 0/255 PNG with one flipped bit inside IDAT; the IDAT chunk's offset."""
    data = bytearray(masks.png_bytes(np.where(SILENT, 255, 0).astype(np.uint8)))
    at = data.index(b"IDAT")
    data[at + 4 + 6] ^= 0x40
    path.write_bytes(bytes(data))
    return at - 4


def test_mask_png_whose_crc_fails_is_an_error_in_validate(tmp_path):
    """Before: the flipped bit decoded to other pixels and validate reported 0 errors."""
    base = fixture("long_rvos_hand").build(tmp_path)
    png = base / "train" / "Annotations" / "vidA" / "1" / "00000.png"
    at = _write_flipped(png)
    found = [str(p) for p in validate(base / "train") if p.level == "error"]
    assert found == [f"error: {png}: video 'vidA': field 'Annotations/1/00000.png': mask PNG is corrupt: "
                     f"chunk 'IDAT' at byte {at} fails its CRC check"]


def test_png_frame_whose_crc_fails_is_an_error(tmp_path):
    frame = tmp_path / "00000.png"
    frame.write_bytes(masks.png_bytes(np.where(SILENT, 255, 0).astype(np.uint8)))
    video = Video(dataset="x", split="train", video_id="v", frames=[Frame("00000", frame)], height=4, width=6,
                  tracks=[], expressions=[])
    assert check_video(video) == []
    at = _write_flipped(frame)
    assert [str(p) for p in check_video(video)] == [
        f"error: {frame}: video 'v': field 'frames[0]': frame image is corrupt: chunk 'IDAT' at byte {at} "
        "fails its CRC check"]


# -- metadata that is no regular file --------------------------------------------------------------
@pytest.mark.parametrize("kind, what", [("device", "a character device"), ("fifo", "a FIFO (named pipe)")])
def test_metadata_that_is_no_regular_file_is_an_error(tmp_path, kind, what):
    """Before: the ReVOS valid split silently disappeared (a link to /dev/zero), or the run
    blocked for ever opening the FIFO."""
    base = fixture("revos_hand").build(tmp_path)
    meta = base / "meta_expressions_valid_.json"
    meta.unlink()
    if kind == "device":
        meta.symlink_to("/dev/zero")
    else:
        os.mkfifo(meta)
    res = _cli("validate", base, timeout=120)
    assert res.returncode == 1, res.stderr
    assert f"error: {meta}: not a regular file: it is {what}" in res.stdout.splitlines()
    with pytest.raises(DataError) as info:
        longrvos_data.load(base)["valid"].video_ids()
    assert str(info.value) == f"{meta}: not a regular file: it is {what}"
