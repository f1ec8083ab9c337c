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


# -- workers that cannot start: an error at once, never a pool respawning them -------------
def _run_script(tmp_path, text: str):
    """Run ``text`` as a script file with this Python (a real ``__main__``), at most 180 s."""
    import subprocess
    import sys
    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)


def test_a_worker_that_cannot_open_the_split_stops_the_run(tmp_path):
    root = generate("long_rvos", tmp_path / "src", num_videos=3, num_frames=4, splits=["train"])
    res = _run_script(tmp_path, f'''
from pathlib import Path
from longrvos_data.errors import LongRVOSError
from longrvos_data.loaders import load
from longrvos_data.parallel import map_videos
from longrvos_data.summary import count_masks

if __name__ == "__main__":
    reader = load({str(root)!r}, format="long_rvos")["train"]
    ids = reader.video_ids()
    meta = Path({str(root)!r}) / "train" / "meta_expressions.json"
    meta.unlink()                      # the workers open the split after this
    try:
        list(map_videos(reader, ids, count_masks, workers=2, progress=False))
    except LongRVOSError as err:
        print("ERROR", err)
''')
    assert res.returncode == 0, res.stderr
    [line] = res.stdout.splitlines()
    assert line.startswith(f"ERROR a worker process cannot open split 'train' of {root}: ")
    assert "meta_expressions.json" in line


def test_a_script_without_the_main_guard_fails_at_once_with_the_fix(tmp_path):
    root = generate("long_rvos", tmp_path / "src", num_videos=2, num_frames=3, splits=["train"])
    res = _run_script(tmp_path, f'''
from longrvos_data.summary import summarise
print(summarise({str(root)!r}, deep=True, workers=2)["masks"])
''')
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("longrvos_data.errors.LongRVOSError: a worker process exited before finishing")
    assert 'if __name__ == "__main__":' in last


def test_workers_log_records_reach_the_parent_once_and_their_problems_the_report(reader, caplog):
    vid = reader.video_ids()[1]
    folder = reader.root / "JPEGImages" / vid
    (folder / "zz_stray.jpg").write_bytes(sorted(folder.iterdir())[0].read_bytes())
    fresh = load(reader.opened_from, format="long_rvos", on_error="skip")["train"]
    with caplog.at_level("WARNING", logger="longrvos_data"):
        found = list(map_videos(fresh, fresh.video_ids(), video_rows, workers=2, progress=False))
    assert [v for v, _ in found] == fresh.video_ids()
    assert [(p.level, p.video) for p in fresh.problems.problems] == [("warning", vid)]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [str(fresh.problems.problems[0])]
