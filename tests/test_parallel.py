"""`parallel.map_videos`: videos in order, long videos shared out in runs of frames, and a
bad video reported (or raised) without stopping the others."""
from __future__ import annotations

import pytest

from longrvos_data import DataError
from longrvos_data.converters.hf_rows import join_rows, video_rows
from longrvos_data.loaders import load
from longrvos_data.parallel import map_videos
from longrvos_data.synth import generate


@pytest.fixture
def reader(tmp_path):
    root = generate("long_rvos", tmp_path / "src", num_videos=3, num_frames=10, splits=["train"])
    return load(root, format="long_rvos")["train"]


def _break_mask(reader, video_index: int, frame: int):
    """Overwrite one mask PNG of one video with bytes that are no PNG; that file."""
    vid = reader.video_ids()[video_index]
    png = sorted((reader.root / "Annotations" / vid).rglob("*.png"))[frame]
    png.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return vid, png


@pytest.mark.parametrize("workers", [1, 2])
def test_parts_cover_every_frame_in_order_and_join_into_the_whole_video(reader, workers):
    ids = reader.video_ids()
    found = list(map_videos(reader, ids, video_rows, workers=workers, progress=False, part_frames=4))
    assert [vid for vid, _ in found] == ids
    for vid, parts in found:
        expected_runs = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] if workers > 1 else [list(range(10))]
        assert [p.frames["frame_index"] for p in parts] == expected_runs
        assert join_rows(parts) == video_rows(reader.video(vid))


@pytest.mark.slow
def test_a_bad_part_makes_its_video_an_error_and_the_others_go_on(reader):
    bad, png = _break_mask(reader, 1, 6)
    found = dict(map_videos(reader, reader.video_ids(), video_rows, workers=2, progress=False, part_frames=4,
                            errors="return"))
    assert isinstance(found[bad], DataError) and found[bad].file == str(png) and found[bad].video == bad
    assert [type(found[v]) for v in reader.video_ids() if v != bad] == [list, list]
    with pytest.raises(DataError, match="cannot be decoded") as err:
        list(map_videos(reader, reader.video_ids(), video_rows, workers=2, progress=False, part_frames=4))
    assert err.value.video == bad


@pytest.mark.slow
def test_a_video_that_cannot_be_opened_is_reported_by_the_worker(reader):
    vid = reader.video_ids()[0]
    next((reader.root / "JPEGImages" / vid).glob("*.jpg")).unlink()  # frames no longer match the metadata
    with pytest.raises(DataError) as opened:
        reader.video(vid)
    found = list(map_videos(reader, reader.video_ids(), video_rows, workers=2, progress=False, part_frames=4,
                            errors="return"))
    assert [type(r) for _, r in found] == [DataError, list, list]
    assert str(found[0][1]) == str(opened.value)


def test_rows_of_runs_join_into_the_rows_of_the_whole_video(tmp_path):
    """Multi-object and no-target expressions (MeViS) and a split without masks."""
    root = generate("mevis", tmp_path / "mevis", num_videos=2, num_frames=9, splits=["train", "valid"])
    for split in ("train", "valid"):
        for video in load(root, format="mevis")[split]:
            runs = [range(0, 2), range(2, 7), range(7, 9)]
            assert join_rows([video_rows(video, r) for r in runs]) == video_rows(video)
