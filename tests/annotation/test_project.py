"""Projects: import every fixture and sample, edit/undo/redo then export, predictions as pre-annotations."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import longrvos_data
from longrvos_data import loaders, masks
from longrvos_data.annotation import project
from longrvos_data.annotation.store import Store, Write
from longrvos_data.converters import hf as hf_writer
from longrvos_data.converters.base import convert
from longrvos_data.errors import LongRVOSError
from longrvos_data.loaders import project as project_loader
from longrvos_data.schema import MaskSource, Video

from fixtures import fixture, grid, hand_sources

hand = fixture("interchange_hand")
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _hf(root: Path) -> Path:
    hf_writer.write({"train": fixture("hf_hand").videos(root / "stage")}, root / "hf")
    return root / "hf"


SOURCES: dict[str, Callable[[Path], Path]] = {
    **hand_sources(),
    "hf_hand": _hf,
    **{f"sample_{name}": (lambda p, name=name: SAMPLES / name)
       for name in ("long_rvos", "lvos", "mevis", "ref_youtube_vos", "revos")},
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_fixture_and_sample_imports_as_its_loader_reads_it(tmp_path: Path, source: str) -> None:
    root = SOURCES[source](tmp_path / "src")
    report = project.init_project(tmp_path / "proj", root, user="importer")
    original = longrvos_data.load(root)
    back = project_loader.load(tmp_path / "proj")
    assert list(back.splits) == list(original.splits)
    expected_cells = 0
    for name, reader in original.splits.items():
        videos = list(reader)
        hand.assert_same_split(videos, list(back[name]))
        for got, want in zip(back[name], videos):
            assert (got.fps, dict(got.meta), got.dataset) == (want.fps, dict(want.meta), want.dataset)
            assert [(e.kind_raw, dict(e.meta)) for e in got.expressions] == \
                [(json.loads(json.dumps(e.kind_raw)), dict(e.meta)) for e in want.expressions]
            assert [f.path.read_bytes() for f in got.frames] == [Path(f.path).read_bytes() for f in want.frames]
        expected_cells += sum(v.num_frames * len(v.tracks) for v in videos if v.has_masks)
    assert report.imported_cells == expected_cells
    assert report.videos == {n: len(r) for n, r in original.splits.items()}
    with Store.open(tmp_path / "proj") as store:
        kinds = store.con.execute("SELECT provenance, version, count(*) FROM cells GROUP BY 1, 2").fetchall()
        assert kinds == ([("imported", 1, expected_cells)] if expected_cells else [])
        assert [(o.user, o.kind) for o in store.history()] == [("importer", "import")]
        assert store.integrity_check() == "ok"


def test_frames_that_are_no_files_under_the_source_are_copied_into_the_project(tmp_path: Path) -> None:
    root = _hf(tmp_path / "src")                     # embedded JPEGs: written to a cache when used
    project.init_project(tmp_path / "proj", root, user="u")
    video = next(iter(project_loader.load(tmp_path / "proj")["train"]))
    assert video.frames[0].path == tmp_path / "proj" / "frames" / "train" / "v1" / "f0.jpg"
    with Store.open(tmp_path / "proj") as store:
        assert set(store.sources().values()) == {str(root), "frames"}


class Edited(MaskSource):
    """``base``'s masks with ``edits`` applied: ``{(track, frame): mask | None (absent)}``."""

    def __init__(self, base: Video, edits: dict[tuple[str, int], np.ndarray | None]) -> None:
        self.base, self.edits = base, edits

    def masks(self, index: int) -> dict[str, np.ndarray]:
        out = dict(self.base.frame_masks(index))
        for (tid, f), mask in self.edits.items():
            if f == index:
                out.pop(tid, None)
                if mask is not None:
                    out[tid] = mask
        return out


NEW = grid("......",
           "...##.",
           "...##.",
           "......")
PROP = [grid("#.....", "......", "......", "......"),
        grid(".#....", "......", "......", "......"),
        grid("..#...", "......", "......", "......")]


@pytest.mark.parametrize("target", ["mevis", "hf"])
def test_edit_undo_redo_then_export_equals_the_source_plus_the_edits(tmp_path: Path, target: str) -> None:
    root = fixture("mevis_hand").build(tmp_path / "src")
    project.init_project(tmp_path / "proj", root, user="importer")
    with Store.open(tmp_path / "proj") as store:
        brush = store.write("train", "vidA", [Write("10", 1, base=1, rle=masks.encode(NEW))], user="ana", label="brush")
        prop = store.write("train", "vidA", [Write("11", i, base=1, rle=masks.encode(PROP[i]),
                                                   provenance="human" if i == 0 else "propagated") for i in range(3)],
                           user="ana", label="propagate")
        store.write("train", "vidA", [Write("10", 2, base=1, state="absent")], user="bob")
        assert store.undo(user="ana").versions == {("11", 0): 3, ("11", 1): 3, ("11", 2): 3}
        store.redo(user="ana")
        assert {store.cell("train", "vidA", "11", i).provenance for i in (1, 2)} == {"propagated"}
        store.undo(user="ana")
        assert [(o.user, o.kind, o.target) for o in store.history()] == [
            ("ana", "undo", prop.op_id), ("ana", "redo", prop.op_id), ("ana", "undo", prop.op_id),
            ("bob", "edit", None), ("ana", "edit", None), ("ana", "edit", None), ("importer", "import", None)]
        cells = {(c.track_id, c.frame): (c.state, c.provenance, c.version) for c in store.cells("train", "vidA")}
        assert cells[("10", 1)] == ("present", "human", 2) and store.cell("train", "vidA", "10", 1).op_id == brush.op_id
        assert cells[("10", 2)] == ("absent", "human", 2)
        assert [cells[("11", i)] for i in range(3)] == [("present", "imported", 5), ("absent", "imported", 5),
                                                        ("present", "imported", 5)]
    original = longrvos_data.load(root)
    expected = {name: [dataclasses.replace(v, mask_source=Edited(v, {("10", 1): NEW, ("10", 2): None}))
                       if v.video_id == "vidA" else v for v in reader] for name, reader in original.splits.items()}
    report = convert(tmp_path / "proj", target, tmp_path / "out", format="project")
    assert report.dropped == []
    back = longrvos_data.load(tmp_path / "out", format=target)
    assert set(back.splits) == set(expected)
    for name, videos in expected.items():
        hand.assert_same_split(videos, list(back[name]))
    vid_a = next(v for v in back["train"] if v.video_id == "vidA")
    assert vid_a.frame_masks(1)["10"].tolist() == NEW.tolist() and "10" not in vid_a.frame_masks(2)


def _rle(rows: list[str]) -> dict:
    return masks.encode(grid(*rows))


def test_rle_json_predictions_become_model_pre_annotations(tmp_path: Path) -> None:
    root = fixture("mevis_hand").build(tmp_path / "src")
    a = ["#.....", "......", "......", "......"]
    b = ["......", "......", "......", ".....#"]
    zero = ["......"] * 4
    preds = {"vidV": {"0": [_rle(a), None], "1": [_rle(b), _rle(zero)]},
             "vidA": {"0": [_rle(a)] * 3, "1": [_rle(b), _rle(a), None], "2": [_rle(a)] * 3},
             "ghost": {"0": [None]}}
    pred = tmp_path / "referformer.json"
    pred.write_text(json.dumps(preds))
    report = project.init_project(tmp_path / "proj", root, pred=pred, user="u")
    assert report.provenance == "model:referformer"
    assert report.predicted_cells == 2 + 2 + 3
    messages = sorted(str(p) for p in report.problems if "mevis:" not in p.message)
    assert messages == sorted([
        f"warning: {pred}: video 'ghost': field 'predictions': predictions for video 'ghost', which the project "
        "does not hold, are ignored",
        f"warning: {pred}: video 'vidA': field 'expressions.2': prediction for no-target expression '2' ignored",
        f"warning: {pred}: video 'vidA': field 'tracks.10': 3 frame(s) of track '10' were already annotated; "
        "the prediction of '0' did not replace them",
    ])
    ds = project_loader.load(tmp_path / "proj")
    vid_v = ds["valid"].video("vidV")
    assert [t.track_id for t in vid_v.tracks] == ["obj2", "pred:0"]
    assert vid_v.track("pred:0").meta == {"expression": "0"}
    assert vid_v.expression("0").track_ids == ("pred:0",)          # the trackless expression names it
    assert vid_v.expression("1").track_ids == ("obj2",)
    assert {t: m.tolist() for t, m in vid_v.frame_masks(0).items()} == {"obj2": grid(*b).tolist(),
                                                                       "pred:0": grid(*a).tolist()}
    assert vid_v.frame_masks(1) == {}                              # null and all-zero: absent
    vid_a = ds["train"].video("vidA")
    assert vid_a.expression("1").track_ids == ("10", "11")         # a multi-track expression keeps its tracks
    assert [sorted(vid_a.frame_masks(i)) for i in range(3)] == [["10", "11", "pred:1"], ["10", "pred:1"],
                                                                 ["10", "11"]]
    with Store.open(tmp_path / "proj") as store:
        got = {(c.track_id, c.frame): (c.state, c.provenance) for c in store.cells("valid", "vidV")}
        assert got == {("obj2", 0): ("present", "model:referformer"), ("obj2", 1): ("absent", "model:referformer"),
                       ("pred:0", 0): ("present", "model:referformer"), ("pred:0", 1): ("absent", "model:referformer")}
        assert store.cell("train", "vidA", "10", 0).provenance == "imported"     # the source's masks win
    human = project_loader.load(tmp_path / "proj", provenance="human,imported")
    assert human["valid"].video("vidV").frame_masks(0) == {}
    assert sorted(human["train"].video("vidA").frame_masks(0)) == ["10", "11"]
    assert ds["valid"].model_masks() == {"vidV": 2} and human["valid"].model_masks() == {}


def test_png_predictions_named_after_their_folder(tmp_path: Path) -> None:
    root = fixture("long_rvos_hand").build(tmp_path / "src")
    folder = tmp_path / "cutie" / "vidT" / "0"
    folder.mkdir(parents=True)
    masks.write_binary_png(folder / "00000.png", grid("#..", ".##"))
    masks.write_binary_png(folder / "00001.png", grid("...", "..."))
    report = project.init_project(tmp_path / "proj", root, split="test", pred=tmp_path / "cutie", user="u")
    assert (report.provenance, report.predicted_cells) == ("model:cutie", 2)
    assert [str(p) for p in report.problems] == [
        f"warning: {tmp_path / 'cutie'}: video 'vidT': field 'predictions.0': 1 frame(s) of unit '0' are missing "
        "frame; left not annotated"]
    with Store.open(tmp_path / "proj") as store:
        assert [(c.track_id, c.frame, c.state, c.provenance) for c in store.cells("test", "vidT")] == [
            ("1", 0, "present", "model:cutie"), ("1", 1, "absent", "model:cutie")]
        assert store.cell("test", "vidT", "1", 2).state == "none"
    video = project_loader.load(tmp_path / "proj")["test"].video("vidT")
    assert video.frame_masks(0)["1"].tolist() == grid("#..", ".##").tolist()


def test_an_existing_project_is_refused_unless_overwrite(tmp_path: Path) -> None:
    root = fixture("long_rvos_hand").build(tmp_path / "src")
    project.init_project(tmp_path / "proj", root, split="test", user="u")
    with pytest.raises(LongRVOSError, match="a project exists; pass --overwrite to replace it$"):
        project.init_project(tmp_path / "proj", root, user="u")
    report = project.init_project(tmp_path / "proj", root, overwrite=True, user="u")
    assert report.videos == {"train": 2, "test": 1}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(LongRVOSError, match="exists and is not a project; refusing to replace it$"):
        project.init_project(tmp_path / "other", root, overwrite=True, user="u")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_the_loader_detects_projects_and_filters_by_status(tmp_path: Path) -> None:
    root = fixture("long_rvos_hand").build(tmp_path / "src")
    project.init_project(tmp_path / "proj", root, user="u")
    assert loaders.detect_format(tmp_path / "proj") == "project"
    assert loaders.detect_format(tmp_path / "proj" / "project.sqlite") == "project"
    assert project_loader.detect(root).confidence == 0
    with Store.open(tmp_path / "proj") as store:
        store.set_status("train", "vidB", "done")
    assert project_loader.load(tmp_path / "proj", status="done,reviewed")["train"].video_ids() == ["vidB"]
    assert project_loader.load(tmp_path / "proj", status=["todo"])["train"].video_ids() == ["vidA"]
    with pytest.raises(LongRVOSError, match="field 'status': unknown status\\(es\\) finished; choose among todo, "
                                            "in_progress, done, reviewed$"):
        project_loader.load(tmp_path / "proj", status="finished")
    with pytest.raises(LongRVOSError, match="field 'provenance': provenance 'model:' is not one of"):
        project_loader.load(tmp_path / "proj", provenance="human,model:")
    with pytest.raises(LongRVOSError, match="field 'split': no split 'valid'; found \\['train', 'test'\\]$"):
        project_loader.load(tmp_path / "proj", split="valid")


def test_eval_on_a_project_warns_about_model_masks_unless_filtered(tmp_path: Path) -> None:
    from longrvos_data.eval import evaluate

    project.init_project(tmp_path / "proj", SAMPLES / "long_rvos", split="valid", user="u")
    pred = SAMPLES / "predictions" / "long_rvos_valid"
    plain = evaluate(tmp_path / "proj", pred, protocol="long_rvos", split="valid")
    assert [w for w in plain.warnings if w["problem"] == "model_ground_truth"] == []
    with Store.open(tmp_path / "proj") as store:
        base = store.cell("valid", "va01v000", "1", 3).version
        store.write("valid", "va01v000", [Write("1", 3, base=base, rle=masks.encode(np.ones((37, 53), bool)))],
                    user="u", provenance="model:cutie")
    report = evaluate(tmp_path / "proj", pred, protocol="long_rvos", split="valid")
    [warning] = [w for w in report.warnings if w["problem"] == "model_ground_truth"]
    assert (warning["video_id"], warning["count"]) == ("va01v000", 1)
    assert "--provenance human,imported" in warning["message"]
    human = evaluate(tmp_path / "proj", pred, protocol="long_rvos", split="valid",
                     load_options={"provenance": "human,imported"})
    assert [w for w in human.warnings if w["problem"] == "model_ground_truth"] == []
    assert plain.overall != report.overall != human.overall  # filtered out, that frame has no mask at all


def test_export_to_a_writer_that_cannot_hold_an_expression_surfaces_its_refusal(tmp_path: Path) -> None:
    """Long-RVOS has no 'referring' type and names one object per expression: refused, kept or dropped."""
    from longrvos_data.errors import DataError

    project.init_project(tmp_path / "proj", fixture("mevis_hand").build(tmp_path / "src"), user="u")
    with pytest.raises(DataError, match="kind 'referring' has no Long-RVOS type") as refused:
        convert(tmp_path / "proj", "long_rvos", tmp_path / "refused", sidecar=False)
    assert str(refused.value).startswith(f"{tmp_path / 'proj' / 'project.sqlite'}: video 'vidA': field ")
    kept = convert(tmp_path / "proj", "long_rvos", tmp_path / "kept")
    assert sorted(p.parent.name for p in kept.sidecars) == sorted(kept.videos)  # one sidecar per split
    back = longrvos_data.load(tmp_path / "kept")["train"].video("vidA")
    assert {e.exp_id: e.track_ids for e in back.expressions}["1"] == ("10", "11")
    lossy = convert(tmp_path / "proj", "long_rvos", tmp_path / "lossy", lossy=True)
    assert ("vidA", "expression", "1") in [(d.video, d.what, d.exp_id) for d in lossy.dropped]
