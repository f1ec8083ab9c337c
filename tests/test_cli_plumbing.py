"""What every verb shares: `--on-error skip` (list, count what was read, exit 3), one warning
line per warning, progress bars on a terminal only, `--version` and the defaults in `--help`.

The commands run as real processes (``python -m longrvos_data.cli``), on a pseudo-terminal
where a terminal is what is being tested.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import longrvos_data
from longrvos_data.cli import VERBS, build_parser
from longrvos_data.loaders import load
from longrvos_data.synth import generate

CLI = [sys.executable, "-m", "longrvos_data.cli"]


def run(*argv, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *(str(a) for a in argv)], capture_output=True, text=True, timeout=timeout)


def run_on_terminal(*argv, timeout: float = 300) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on one pseudo-terminal (24x120); its whole output."""
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([*CLI, *(str(a) for a in argv)], stdin=child_fd, stdout=child_fd, stderr=child_fd,
                            close_fds=True)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    return proc.wait(timeout=timeout), b"".join(chunks).decode()


BAR = re.compile(r"\d+%\|")


@pytest.fixture
def lr(tmp_path: Path) -> Path:
    """Long-RVOS, one split of 3 videos of 5 frames."""
    return generate("long_rvos", tmp_path / "lr", num_videos=3, num_frames=5, splits=["valid"])


def _counts(root: Path, video_ids) -> dict[str, int]:
    videos = [load(root, format="long_rvos")["valid"].video(v) for v in video_ids]
    return {"videos": len(videos), "frames": sum(v.num_frames for v in videos),
            "tracks": sum(len(v.tracks) for v in videos), "expressions": sum(len(v.expressions) for v in videos)}


def _break_video(root: Path, index: int) -> tuple[str, Path]:
    """Remove one frame of one video, so that the video no longer loads; its id and the frame."""
    vid = sorted(p.name for p in (root / "valid" / "JPEGImages").iterdir())[index]
    frame = sorted((root / "valid" / "JPEGImages" / vid).iterdir())[2]
    frame.unlink()
    return vid, frame


def _stray_image(root: Path, index: int) -> tuple[str, str]:
    """Copy a frame under a name the metadata does not list (a warning); the video and its line."""
    vid = sorted(p.name for p in (root / "valid" / "JPEGImages").iterdir())[index]
    folder = root / "valid" / "JPEGImages" / vid
    (folder / "zz_stray.jpg").write_bytes(sorted(folder.iterdir())[0].read_bytes())
    line = (f"warning: {root / 'valid' / 'meta_expressions.json'}: video {vid!r}: field 'frames': "
            f"1 image(s) in {folder} are not in the frame list and are ignored")
    return vid, line


# -- --on-error skip: finish, list, count what was read, exit 3 ----------------------------
def test_info_skip_counts_only_the_videos_it_read_lists_them_and_exits_3(lr):
    ids = load(lr, format="long_rvos")["valid"].video_ids()
    bad, frame = _break_video(lr, 1)
    res = run("info", lr, "--on-error", "skip", "--json")
    assert res.returncode == 3, res.stderr
    summary = json.loads(res.stdout)
    expected = _counts(lr, [v for v in ids if v != bad])
    assert {k: summary["splits"]["valid"][k] for k in expected} == expected
    assert {k: summary[k] for k in expected} == expected
    assert [(p["level"], p["video"]) for p in summary["problems"]] == [("error", bad)]
    lines = res.stderr.splitlines()
    assert lines[0] == "longrvos info: 1 skipped (--on-error skip), not counted:"
    assert len(lines) == 2 and lines[1].startswith(f"  {lr / 'valid'}") and repr(bad) in lines[1]

    table = run("info", lr, "--on-error", "skip")
    assert table.returncode == 3
    row = "".join(f"{expected[k]:>13}" for k in ("videos", "frames", "tracks", "expressions"))
    assert f"valid  {row}" in table.stdout.splitlines() and f"total  {row}" in table.stdout.splitlines()
    assert "skipped" not in table.stdout
    assert table.stderr == res.stderr


def test_info_deep_skip_leaves_out_a_video_whose_mask_does_not_decode(lr):
    reader = load(lr, format="long_rvos")["valid"]
    ids = reader.video_ids()
    full = run("info", lr, "--deep", "--json")
    assert full.returncode == 0, full.stderr
    per_video = {v: sum(sum(1 for a in reader.video(v).frame_areas(i).values() if a > 0)
                        for i in range(reader.video(v).num_frames)) for v in ids}
    assert json.loads(full.stdout)["masks"] == sum(per_video.values())
    bad = ids[0]
    png = sorted((lr / "valid" / "Annotations" / bad).rglob("*.png"))[1]
    png.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for workers in (1, 2):
        res = run("info", lr, "--deep", "--json", "--on-error", "skip", "--workers", workers)
        assert res.returncode == 3, res.stderr
        summary = json.loads(res.stdout)
        expected = _counts(lr, ids[1:])
        assert {k: summary[k] for k in expected} == expected
        assert summary["masks"] == per_video[ids[1]] + per_video[ids[2]]
        assert [(p["video"], p["file"]) for p in summary["problems"]] == [(bad, str(png))]
    stopped = run("info", lr, "--deep")
    assert stopped.returncode == 2 and str(png) in stopped.stderr and "Traceback" not in stopped.stderr


def test_convert_skip_lists_what_it_left_out_and_exits_3(lr, tmp_path):
    bad, _ = _break_video(lr, 0)
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        res = run("convert", lr, "--to", "ytvis", out, "--on-error", "skip", "--workers", workers)
        assert res.returncode == 3, res.stderr
        assert res.stdout.splitlines()[0] == f"wrote 2 video(s) as ytvis to {out} (valid: 2)"
        lines = res.stderr.splitlines()
        assert lines[0] == "longrvos convert: 1 skipped (--on-error skip), not written:"
        assert len(lines) == 2 and repr(bad) in lines[1]
        assert sorted(v.video_id for v in load(out, format="ytvis")["valid"]) == sorted(
            set(load(lr, format="long_rvos")["valid"].video_ids()) - {bad})


def test_a_run_that_skipped_nothing_exits_0(lr, tmp_path):
    assert run("info", lr, "--on-error", "skip").returncode == 0
    assert run("convert", lr, "--to", "ytvis", tmp_path / "o", "--on-error", "skip").returncode == 0


# -- one line per warning ----------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_info_deep_prints_each_warning_once(lr, workers):
    _, line = _stray_image(lr, 0)
    res = run("info", lr, "--deep", "--workers", workers)
    assert res.returncode == 0
    assert res.stderr.splitlines() == [f"longrvos info: {line}"]
    assert line not in res.stdout and "skipped" not in res.stdout


def test_validate_lists_a_warning_once_on_stdout_only(lr):
    _, line = _stray_image(lr, 2)
    res = run("validate", lr, "--workers", "2")
    assert res.returncode == 0
    assert res.stdout.splitlines() == [line, "0 error(s), 1 warning(s)"]
    assert res.stderr == ""


def test_convert_with_workers_reports_a_warning_the_workers_met_once(lr, tmp_path):
    _, line = _stray_image(lr, 1)
    res = run("convert", lr, "--to", "ytvis", tmp_path / "out", "--workers", "2", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert [p["level"] for p in report["problems"]] == ["warning"]
    assert res.stderr.splitlines() == [f"longrvos convert: {line}"]


def test_a_warning_never_shares_a_line_with_a_progress_bar(lr, tmp_path):
    _, line = _stray_image(lr, 1)
    code, text = run_on_terminal("convert", lr, "--to", "ytvis", tmp_path / "out", "--workers", "2")
    assert code == 0, text
    assert BAR.search(text), text
    assert text.count(line) == 1
    before = text[:text.index(line)]
    pending = re.split(r"[\r\n]", before)[-1]  # what is on the line where the warning starts
    assert pending == "longrvos convert: ", repr(text)


# -- progress bars -----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["hf", "mevis", "long_rvos", "ytvis"])
def test_convert_draws_a_bar_on_a_terminal_only(lr, tmp_path, target):
    code, text = run_on_terminal("convert", lr, "--to", target, tmp_path / "tty")
    assert code == 0, text
    assert BAR.search(text), repr(text)
    code, text = run_on_terminal("convert", lr, "--to", target, tmp_path / "quiet", "--no-progress")
    assert code == 0 and not BAR.search(text), repr(text)
    res = run("convert", lr, "--to", target, tmp_path / "pipe")
    assert res.returncode == 0 and not BAR.search(res.stderr), res.stderr


@pytest.mark.parametrize("verb", ["info", "validate"])
def test_info_and_validate_draw_a_bar_on_a_terminal_only(lr, verb):
    extra = ["--deep"] if verb == "info" else []
    code, text = run_on_terminal(verb, lr, *extra)
    assert code == 0 and BAR.search(text), repr(text)
    code, text = run_on_terminal(verb, lr, *extra, "--no-progress")
    assert code == 0 and not BAR.search(text), repr(text)
    res = run(verb, lr, *extra)
    assert res.returncode == 0 and not BAR.search(res.stderr), res.stderr


def _subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "verb")
    return dict(action.choices)


def test_every_verb_that_shows_progress_has_no_progress():
    verbs = _subparsers()
    with_progress = {"info", "validate", "convert", "fiftyone", "eval"}
    assert with_progress <= set(verbs)
    for verb in with_progress:
        assert "--no-progress" in verbs[verb].format_help(), verb


# -- --version and --help ----------------------------------------------------------------
def test_version():
    res = run("--version")
    assert res.returncode == 0 and res.stdout == f"longrvos {longrvos_data.__version__}\n"


def test_help_states_every_default():
    verbs = _subparsers()
    assert set(verbs) == set(VERBS)
    for verb, parser in verbs.items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and action.help:
                help_text = " ".join(action.help.split())
                assert "default:" in help_text or f"{help_text} (default: {action.default})" in text, \
                    (verb, action.option_strings)
    assert "--workers WORKERS processes per split (default: 1)" in " ".join(verbs["convert"].format_help().split())
    assert "(default: 1)" in " ".join(verbs["info"].format_help().split())
    res = run("eval", "--help")
    assert res.returncode == 0 and "--missing" in res.stdout
    assert re.search(r"default: strict", " ".join(res.stdout.split())), res.stdout
