"""``longrvos annotate init|add|relink|validate``."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from longrvos_data.cli import build_parser
from longrvos_data.cli.annotate import VERBS
from longrvos_data.annotation.store import Store
from longrvos_data.errors import DataError
from longrvos_data.loaders import project as project_loader

from fixtures import fixture


def annotate(*argv: str | Path) -> int:
    """The verb itself, so that its errors reach the test as exceptions (`main` prints them)."""
    return VERBS["annotate"][1](build_parser().parse_args(["annotate", *map(str, argv)]))


def _clip(path: Path, *, frames: int, rate: int, height: int, width: int) -> None:
    """An mpeg4 clip whose frame i is grey level 19 * i."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 19 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture()
def proj(tmp_path: Path) -> Path:
    root = fixture("long_rvos_hand").build(tmp_path / "src")
    assert annotate("init", tmp_path / "proj", "--import", root, "--split", "test", "--user", "lead") == 0
    return tmp_path / "proj"


def test_add_a_video_file_at_2_fps(tmp_path: Path, proj: Path, capsys) -> None:
    clip = tmp_path / "dance.mp4"
    _clip(clip, frames=13, rate=5, height=48, width=64)          # 2.6 s
    capsys.readouterr()
    assert annotate("add", proj, clip, "--fps", "2") == 0
    assert capsys.readouterr().out == f"1 video(s) added to {proj} split train: dance\n"
    video = project_loader.load(proj)["train"].video("dance")
    assert video.num_frames == math.ceil(2.6 * 2) == 6
    assert (video.height, video.width, video.fps, video.has_masks) == (48, 64, 2.0, False)
    assert video.frame_names == ["00000", "00001", "00002", "00003", "00004", "00005"]
    folder = proj / "frames" / "train" / "dance"
    assert [f.path for f in video.frames] == [folder / f"{n}.jpg" for n in video.frame_names]
    # frame k = the first decoded frame at or after k/2 s (frames at 0.2 s steps), the last one for 2.5 s
    greys = [float(np.asarray(Image.open(f.path).convert("L")).mean()) for f in video.frames]
    assert all(Image.open(f.path).size == (64, 48) for f in video.frames)
    np.testing.assert_allclose(greys, [19 * i for i in (0, 3, 5, 8, 10, 12)], atol=4)
    with pytest.raises(Exception, match="split 'train' already has a video 'dance'"):
        annotate("add", proj, clip, "--fps", "2")


def test_add_at_the_clips_own_rate(tmp_path: Path, proj: Path) -> None:
    clip = tmp_path / "slow.mp4"
    _clip(clip, frames=4, rate=4, height=32, width=32)
    assert annotate("add", proj, clip, "--split", "new") == 0
    video = project_loader.load(proj)["new"].video("slow")
    assert (video.num_frames, video.fps) == (4, 4.0)


def test_add_a_frame_folder_relink_and_validate(tmp_path: Path, proj: Path, capsys) -> None:
    folder = tmp_path / "mine" / "walk"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (5, 4), (i * 60, 0, 0)).save(folder / f"{i:03d}.png")
    assert annotate("add", proj, folder, "--fps", "10") == 0
    video = project_loader.load(proj)["train"].video("walk")
    assert (video.frame_names, video.height, video.width, video.fps) == (["000", "001", "002"], 4, 5, 10.0)
    assert video.frames[2].path == folder / "002.png"                     # referenced, not copied
    capsys.readouterr()
    assert annotate("validate", proj) == 0
    assert capsys.readouterr().out == "0 error(s), 0 warning(s)\n"
    shutil.move(tmp_path / "mine", tmp_path / "moved")
    assert annotate("validate", proj, "--json") == 1
    problems = json.loads(capsys.readouterr().out)
    assert [(p["level"], p["video"], p["field"], p["file"]) for p in problems] == [
        ("error", "walk", f"frames[{i}]", str(tmp_path / "mine" / "walk" / f"00{i}.png")) for i in range(3)]
    assert problems[0]["message"] == f"frame '000' is missing (expected at {tmp_path / 'mine' / 'walk' / '000.png'})"
    assert annotate("relink", proj, tmp_path / "mine", tmp_path / "moved") == 0
    assert capsys.readouterr().out == f"1 video(s) now read their frames from {tmp_path / 'moved'}\n"
    assert annotate("validate", proj) == 0


def test_relink_the_imported_root(tmp_path: Path, proj: Path) -> None:
    shutil.move(tmp_path / "src", tmp_path / "elsewhere")
    video = project_loader.load(proj)["test"].video("vidT")
    assert not video.frames[0].path.exists()
    assert annotate("relink", proj, tmp_path / "src" / "long_rvos", tmp_path / "elsewhere" / "long_rvos") == 0
    video = project_loader.load(proj)["test"].video("vidT")
    assert video.frames[0].path == tmp_path / "elsewhere" / "long_rvos" / "test" / "JPEGImages" / "vidT" / "00000.jpg"
    assert video.frames[0].path.is_file()


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing.mp4", "nothing.mp4: field 'video': no such video file or frame folder"),
    (lambda p: (p / "bad.mp4").write_bytes(b"not a video") and p / "bad.mp4", "bad.mp4: field 'video': cannot be "
                                                                                "opened as a video"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "empty: field 'frames': no image files (.jpg, .jpeg, .png)"),
])
def test_bad_videos_are_refused_and_nothing_is_added(tmp_path: Path, proj: Path, make, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", "\\(").replace(")", "\\)").replace(".", "\\.")):
        annotate("add", proj, make(tmp_path))
    with Store.open(proj) as store:
        assert store.splits() == ["test"]
    assert not (proj / "frames").exists()


def test_init_prints_what_it_imported(tmp_path: Path, capsys) -> None:
    root = fixture("long_rvos_hand").build(tmp_path / "src")
    assert annotate("init", tmp_path / "p", "--import", root, "--user", "lead") == 0
    assert capsys.readouterr().out == f"3 video(s) (train 2, test 1) imported into {tmp_path / 'p'}\n"


def test_project_filters_through_the_verbs(tmp_path: Path, capsys) -> None:
    from longrvos_data.cli import main

    src = fixture("long_rvos_hand").build(tmp_path / "src")
    assert annotate("init", tmp_path / "proj", "--import", src) == 0
    with Store.open(tmp_path / "proj") as store:
        store.set_status("train", "vidA", "done")
    capsys.readouterr()
    assert main(["info", str(tmp_path / "proj"), "--json", "--status", "done"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["format"] == "project" and counts["splits"]["train"]["videos"] == 1
    assert main(["info", str(src), "--provenance", "human"]) == 2
    assert "the long_rvos format takes no option(s) provenance" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "proj"), "--status", "finished"]) == 2
    assert "unknown status(es) finished" in capsys.readouterr().err
