"""``longrvos eval`` and ``longrvos pack`` end to end, through datasets written in their official layouts."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import longrvos_data
from evalcase import perturbed_predictions
from longrvos_data import masks as M
from longrvos_data.cli import main
from longrvos_data.eval.pack import IncompleteSubmission, pack
from longrvos_data.synth import generate

TOL = 1e-6


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gt")
    return {fmt: generate(fmt, root / fmt, num_videos=3, num_frames=8, seed=1)
            for fmt in ("long_rvos", "mevis", "revos", "lvos", "ref_youtube_vos")}


@pytest.mark.parametrize("protocol, split", [("long_rvos", "valid"), ("mevis", "valid_u"), ("revos", "valid")])
def test_eval_cli_matches_the_oracle(datasets, tmp_path, ref, capsys, protocol, split):
    videos = list(longrvos_data.load(datasets[protocol], split=split)[split])
    perturbed_predictions(videos, tmp_path / "pred", seed=3)
    out = tmp_path / "res" / "REPORT.json"
    code = main(["eval", "--gt", str(datasets[protocol]), "--pred", str(tmp_path / "pred"), "--protocol", protocol,
                 "--split", split, "--out", str(out), "--workers", "2", "--per-frame", "--no-progress",
                 "--missing", "official"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    want = {(r["video_id"], r["exp_id"]): r for r in ref.score_referring(videos, tmp_path / "pred",
                                                                         protocol=protocol)}
    assert len(doc["expressions"]) == len(want)
    for row in doc["expressions"]:
        w = want[row["video_id"], row["exp_id"]]
        for m in ("J", "F"):
            assert row[m] == pytest.approx(w[m], abs=TOL)
    overall, _ = ref.aggregate(list(want.values()), protocol=protocol)
    assert doc["overall"]["J&F"] == pytest.approx(overall["J&F"], abs=TOL)
    for name in ("REPORT.csv", "REPORT.md", "REPORT.frames.parquet"):
        assert (out.parent / name).is_file()


def test_eval_cli_lvos_palette_predictions(datasets, tmp_path, ref, capsys):
    videos = list(longrvos_data.load(datasets["lvos"], split="valid")["valid"])
    rng = np.random.default_rng(0)
    for v in videos:
        for i, f in enumerate(v.frames):
            ids = np.zeros((v.height, v.width), np.uint8)
            for tid, m in v.frame_masks(i).items():
                ids[np.roll(m, int(rng.integers(-2, 3)), axis=0)] = int(tid)
            M.write_palette_png(tmp_path / "pred" / v.video_id / f"{f.name}.png", ids)
    code = main(["eval", "--gt", str(datasets["lvos"]), "--pred", str(tmp_path / "pred"), "--protocol", "lvos",
                 "--split", "valid", "--no-progress", "--missing", "official"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| **overall** |" in table and "J_seen" in table
    report = longrvos_data.eval.evaluate(datasets["lvos"], tmp_path / "pred", protocol="lvos", split="valid",
                                         missing="official", progress=False)
    want = {(r["video_id"], r["track_id"]): r for r in ref.score_lvos(videos, tmp_path / "pred")}
    for row in report.rows:
        w = want[row["video_id"], row["track_id"]]
        for m in ("J", "F", "V"):
            if w[m] is None or np.isnan(w[m]):
                assert row[m] is None
            else:
                assert row[m] == pytest.approx(w[m], abs=TOL)


def test_eval_cli_prints_the_table_without_out_and_fails_cleanly(datasets, tmp_path, capsys):
    code = main(["eval", "--gt", str(datasets["long_rvos"]), "--pred", str(tmp_path / "none"),
                 "--protocol", "long_rvos", "--split", "valid", "--no-progress"])
    assert code == 2
    assert "predictions not found" in capsys.readouterr().err
    # not one prediction matches (an empty folder, a wrong path level): an error, not J = 0
    (tmp_path / "empty").mkdir()
    code = main(["eval", "--gt", str(datasets["long_rvos"]), "--pred", str(tmp_path / "empty"),
                 "--protocol", "long_rvos", "--split", "valid", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "no prediction matches the ground truth" in captured.err
    assert "it has none of the split's videos" in captured.err


def _write_referring_pngs(videos, root):
    for v in videos:
        for e in v.expressions:
            for f in v.frames:
                M.write_binary_png(root / v.video_id / e.exp_id / f"{f.name}.png",
                                   np.zeros((v.height, v.width), bool))


@pytest.mark.parametrize("fmt, split, prefix", [("mevis", "valid", ""), ("ref_youtube_vos", "valid", "Annotations/")])
def test_pack_referring(datasets, tmp_path, fmt, split, prefix):
    videos = list(longrvos_data.load(datasets[fmt], split=split)[split])
    _write_referring_pngs(videos, tmp_path / "pred")
    result = pack(tmp_path / "pred", gt=datasets[fmt], split=split, out=tmp_path / "sub.zip", progress=False)
    names = zipfile.ZipFile(tmp_path / "sub.zip").namelist()
    want = {f"{prefix}{v.video_id}/{e.exp_id}/{f.name}.png" for v in videos for e in v.expressions for f in v.frames}
    assert set(names) == want and result.files == len(want) and result.gaps == []
    # the PNGs are stored byte for byte
    v, e, f = videos[0], videos[0].expressions[0], videos[0].frames[0]
    data = zipfile.ZipFile(tmp_path / "sub.zip").read(f"{prefix}{v.video_id}/{e.exp_id}/{f.name}.png")
    assert data == (tmp_path / "pred" / v.video_id / e.exp_id / f"{f.name}.png").read_bytes()


def test_pack_lists_every_gap_and_writes_nothing(datasets, tmp_path, capsys):
    videos = list(longrvos_data.load(datasets["mevis"], split="valid")["valid"])
    _write_referring_pngs(videos, tmp_path / "pred")
    v = videos[0]
    (tmp_path / "pred" / v.video_id / v.expressions[0].exp_id / f"{v.frames[2].name}.png").unlink()
    M.write_binary_png(tmp_path / "pred" / v.video_id / v.expressions[1].exp_id / f"{v.frames[0].name}.png",
                       np.zeros((5, 5), bool))
    import shutil
    shutil.rmtree(tmp_path / "pred" / videos[1].video_id)
    with pytest.raises(IncompleteSubmission) as info:
        pack(tmp_path / "pred", gt=datasets["mevis"], split="valid", out=tmp_path / "sub.zip", progress=False)
    gaps = info.value.gaps
    assert len(gaps) == 3
    assert any(v.frames[2].name in g and "1 frame(s) missing" in g for g in gaps)
    assert any("is 5x5" in g for g in gaps)
    assert any(videos[1].video_id in g and "no prediction folder" in g for g in gaps)
    assert not (tmp_path / "sub.zip").exists()
    assert not list(tmp_path.glob(".sub.zip*"))
    code = main(["pack", str(tmp_path / "pred"), str(tmp_path / "sub.zip"), "--gt", str(datasets["mevis"]),
                 "--split", "valid"])
    assert code == 1 and "3 gap(s)" in capsys.readouterr().err
    code = main(["pack", str(tmp_path / "pred"), str(tmp_path / "sub.zip"), "--gt", str(datasets["mevis"]),
                 "--split", "valid", "--allow-gaps"])
    assert code == 0 and (tmp_path / "sub.zip").is_file()


def test_pack_lvos_and_rle_json(datasets, tmp_path):
    videos = list(longrvos_data.load(datasets["lvos"], split="valid")["valid"])
    for v in videos:
        for f in v.frames:
            M.write_palette_png(tmp_path / "pred" / v.video_id / f"{f.name}.png",
                                np.zeros((v.height, v.width), np.uint8))
    result = pack(tmp_path / "pred", gt=datasets["lvos"], split="valid", out=tmp_path / "lvos.zip", progress=False)
    assert result.layout == "lvos"
    assert set(zipfile.ZipFile(tmp_path / "lvos.zip").namelist()) == {
        f"{v.video_id}/{f.name}.png" for v in videos for f in v.frames}
    mevis = list(longrvos_data.load(datasets["mevis"], split="valid")["valid"])
    data = {v.video_id: {e.exp_id: [None] * v.num_frames for e in v.expressions} for v in mevis}
    (tmp_path / "p.json").write_text(json.dumps(data))
    result = pack(tmp_path / "p.json", gt=datasets["mevis"], split="valid", out=tmp_path / "m.zip", progress=False)
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        first = zf.namelist()[0]
        png = zf.read(first)
    assert result.files == sum(len(v.expressions) * v.num_frames for v in mevis)
    assert png.startswith(b"\x89PNG")


def test_eval_reads_the_hf_output_as_ground_truth(datasets, tmp_path):
    from longrvos_data.converters import hf
    from longrvos_data.eval import evaluate
    ds = longrvos_data.load(datasets["mevis"])
    hf.write({"valid_u": ds["valid_u"]}, tmp_path / "hf", source_format="mevis")
    perturbed_predictions(list(ds["valid_u"]), tmp_path / "pred", seed=8)
    native = evaluate(datasets["mevis"], tmp_path / "pred", protocol="mevis", split="valid_u", progress=False)
    from_hf = evaluate(tmp_path / "hf", tmp_path / "pred", protocol="mevis", split="valid_u", workers=2,
                       progress=False)
    assert from_hf.rows == native.rows and from_hf.overall == native.overall


def _complete_predictions(gt, split, pred):
    videos = list(longrvos_data.load(gt, split=split)[split])
    perturbed_predictions(videos, pred, seed=2)
    return videos


def test_eval_cli_ground_truth_rle_error_stops_the_run_from_a_worker(tmp_path, capsys):
    gt = generate("mevis", tmp_path / "mevis", num_videos=3, num_frames=4, seed=2, splits=["valid_u"])
    videos = _complete_predictions(gt, "valid_u", tmp_path / "pred")
    path = gt / "valid_u" / "mask_dict.json"
    data = json.loads(path.read_text())
    v = videos[2]
    anno = v.tracks[0].track_id
    data[anno][1] = M.encode(np.zeros((3, 3), bool))   # an RLE of the wrong size in the last video
    path.write_text(json.dumps(data))
    code = main(["eval", "--gt", str(gt), "--pred", str(tmp_path / "pred"), "--protocol", "mevis", "--split",
                 "valid_u", "--workers", "2", "--no-progress", "--out", str(tmp_path / "R.json")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "R.json").exists()
    assert err == (f"longrvos eval: error: {path}: video {v.video_id!r}: field 'mask_dict[{anno}][1]': RLE size "
                   f"[3, 3] differs from the video's [{v.height}, {v.width}]\n")


def test_eval_cli_ground_truth_png_error_stops_the_run_from_a_worker(tmp_path, capsys):
    gt = generate("long_rvos", tmp_path / "lr", num_videos=3, num_frames=4, seed=2, splits=["valid"])
    videos = _complete_predictions(gt, "valid", tmp_path / "pred")
    v = videos[1]
    bad = gt / "valid" / "Annotations" / v.video_id / v.tracks[0].track_id / f"{v.frames[2].name}.png"
    bad.write_bytes(b"garbage")
    code = main(["eval", "--gt", str(gt), "--pred", str(tmp_path / "pred"), "--protocol", "long_rvos", "--split",
                 "valid", "--workers", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith(f"longrvos eval: error: {bad}: video {v.video_id!r}: ")
    assert captured.err.count("\n") == 1


def test_eval_help_states_the_strict_default(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--missing {strict,official}" in text and "(default: strict)" in text
    assert "official does what each official script does (for parity with the official numbers)" in text


def test_pack_long_rvos_writes_the_run_eval_layout_with_the_usual_modes(datasets, tmp_path, capsys):
    import os
    import stat
    videos = list(longrvos_data.load(datasets["long_rvos"], split="valid")["valid"])
    _write_referring_pngs(videos, tmp_path / "pred")
    os.chmod(tmp_path / "pred" / videos[0].video_id / videos[0].expressions[0].exp_id /
             f"{videos[0].frames[0].name}.png", 0o600)   # a private source file still packs as 0644
    code = main(["pack", str(tmp_path / "pred"), str(tmp_path / "lr.zip"), "--gt", str(datasets["long_rvos"]),
                 "--split", "valid"])
    out = capsys.readouterr().out
    want = {f"{v.video_id}/{e.exp_id}/{f.name}.png" for v in videos for e in v.expressions for f in v.frames}
    with zipfile.ZipFile(tmp_path / "lr.zip") as zf:
        infos = zf.infolist()
    assert code == 0 and {i.filename for i in infos} == want
    assert {i.external_attr >> 16 for i in infos} == {stat.S_IFREG | 0o644}
    assert f"({len(want)} PNGs, long_rvos layout)" in out
    assert "note: this split has ground-truth masks: `longrvos eval` scores it locally" in out
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "lr.zip").st_mode) == 0o666 & ~umask
    # RLE JSON predictions rendered to PNGs get the same mode
    data = {v.video_id: {e.exp_id: [None] * v.num_frames for e in v.expressions} for v in videos}
    (tmp_path / "p.json").write_text(json.dumps(data))
    result = pack(tmp_path / "p.json", gt=datasets["long_rvos"], split="valid", out=tmp_path / "j.zip",
                  progress=False)
    with zipfile.ZipFile(tmp_path / "j.zip") as zf:
        assert {i.external_attr >> 16 for i in zf.infolist()} == {stat.S_IFREG | 0o644}
        assert set(zf.namelist()) == want
    assert (result.layout, result.has_masks) == ("long_rvos", True)
