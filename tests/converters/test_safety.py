"""Conversion safety: never into the source, one run per output, only this package's files,
completion marks that every reader checks, frame modes, and write errors that name the file.

The killed and concurrent conversions are real processes (SIGKILL, two interpreters), the
disk-full case a child under ``RLIMIT_FSIZE``."""
from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import longrvos_data
from longrvos_data import DataError, LongRVOSError
from longrvos_data.cli import main
from longrvos_data.converters.base import convert
from longrvos_data.sidecar import COMPLETE, LOCK, check_complete, read_complete
from longrvos_data.synth import generate

FOLDER_TARGETS = ["mevis", "long_rvos", "ytvis", "davis", "sola"]
CLI = [sys.executable, "-m", "longrvos_data.cli"]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return generate("long_rvos", tmp_path / "src", num_videos=4, num_frames=4, splits=["train", "valid"])


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links followed) by relative path: its SHA-1."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


# -- never into the source ------------------------------------------------------------
@pytest.mark.parametrize("where", ["same", "inside", "around", "same_by_symlink"])
@pytest.mark.parametrize("target", ["mevis", "ytvis", "hf"])
def test_out_that_is_inside_or_around_the_source_is_refused_before_anything_is_written(
        tmp_path: Path, src: Path, capsys, where: str, target: str) -> None:
    # before: `convert X --to mevis X` deleted a source frame, then failed
    out = {"same": src, "inside": src / "train" / "out", "around": tmp_path,
           "same_by_symlink": tmp_path / "link"}[where]
    if where == "same_by_symlink":
        out.symlink_to(src)
    before = _tree(tmp_path)
    code, stdout, stderr = _cli(capsys, "convert", src, "--to", target, out)
    assert code == 2 and stdout == ""
    why = {"same": "is the source", "same_by_symlink": "is the source", "inside": "is inside the source",
           "around": "contains the source"}[where]
    assert stderr == (f"longrvos convert: error: output folder {out} {why} {src}: a conversion never writes into "
                      "its source; choose a folder outside it\n")
    assert _tree(tmp_path) == before


# -- what OUT may hold ----------------------------------------------------------------
def test_splits_of_one_target_are_added_to_one_out(tmp_path: Path, src: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _cli(capsys, "convert", src, "--to", "ytvis", out, "--split", "train")[0] == 0
    assert _cli(capsys, "convert", src, "--to", "ytvis", out, "--split", "valid")[0] == 0
    back = longrvos_data.load(out)
    assert {s: len(r) for s, r in back.splits.items()} == {"train": 4, "valid": 4}
    for split in ("train", "valid"):
        mark = read_complete(out / split)
        assert (mark["target"], mark["split"], mark["videos"]) == ("ytvis", split, 4)
        assert mark["settings"] == {"lossy": False, "sidecar": True, "options": {}}


def test_another_target_needs_overwrite_which_removes_only_what_longrvos_wrote(
        tmp_path: Path, src: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _cli(capsys, "convert", src, "--to", "davis", out, "--split", "train")[0] == 0
    code, _, stderr = _cli(capsys, "convert", src, "--to", "ytvis", out, "--split", "train")
    assert code == 2
    assert stderr == (f"longrvos convert: error: {out} holds a davis conversion, not ytvis; pass --overwrite to "
                      "replace it, or choose another folder\n")
    assert _cli(capsys, "convert", src, "--to", "ytvis", out, "--split", "train", "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [LOCK, "train"]     # ImageSets/ of davis went too
    assert longrvos_data.detect_format(out) == "ytvis"


def test_files_longrvos_did_not_write_are_refused_even_with_overwrite(tmp_path: Path, src: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _cli(capsys, "convert", src, "--to", "sola", out, "--split", "train")[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "mydata").mkdir()
    before = _tree(out)
    for extra in ([], ["--overwrite"]):
        code, _, stderr = _cli(capsys, "convert", src, "--to", "ytvis", out, *extra)
        assert code == 2
        assert stderr == (f"longrvos convert: error: {out} holds files longrvos did not write (mydata, notes.txt); "
                          "choose an empty or new folder"
                          + (" (--overwrite removes only what longrvos wrote)" if extra else "") + "\n")
        assert _tree(out) == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "notes.txt").write_text("mine")
    assert _cli(capsys, "convert", src, "--to", "sola", fresh)[0] == 2
    assert sorted(p.name for p in fresh.iterdir()) == ["notes.txt"]   # not even a lock file was written


# -- one run at a time ----------------------------------------------------------------
HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from longrvos_data.converters import ytvis
    from longrvos_data.cli import main
    real = ytvis.write
    def held(*a, **kw):            # holds the output's lock until the test says go
        Path(sys.argv[1]).write_text("writing")
        while not Path(sys.argv[2]).exists():
            time.sleep(0.02)
        return real(*a, **kw)
    ytvis.write = held
    sys.exit(main(sys.argv[3:]))
""")


def test_a_second_conversion_into_the_same_out_is_refused_at_start(tmp_path: Path, src: Path) -> None:
    # before: two ytvis runs into one folder both exited 0 and left 8 of 18 videos
    out, started, go = tmp_path / "out", tmp_path / "started", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(started), str(go), "convert", str(src), "--to",
                              "ytvis", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        for _ in range(3000):
            if started.exists() or first.poll() is not None:
                break
            time.sleep(0.02)
        assert started.exists(), first.communicate()[1][-2000:]
        second = subprocess.run([*CLI, "convert", str(src), "--to", "ytvis", str(out), "--no-progress"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert second.stderr.splitlines()[-1] == (
            f"longrvos convert: error: another conversion is writing into {out} (it holds {out / LOCK}); "
            "wait until it ends, then re-run")
        go.write_text("go")
        stdout, stderr = first.communicate(timeout=300)
    finally:
        go.write_text("go")
        first.wait(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    alone = tmp_path / "alone"
    convert(src, "ytvis", alone)
    assert _tree(out) == _tree(alone)


# -- killed runs: readers refuse them, a re-run finishes them -----------------------------
KILL = textwrap.dedent("""
    import os, signal, sys
    from longrvos_data.converters import long_rvos, mevis, ytvis
    from longrvos_data.cli import main
    real = ytvis.link_or_copy
    count = {"n": 0}
    def dying(*a, **kw):           # SIGKILL at the Nth frame file
        count["n"] += 1
        if count["n"] == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)
    ytvis.link_or_copy = long_rvos.link_or_copy = mevis.link_or_copy = dying
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("target", ["ytvis", "davis", "long_rvos", "sola", "mevis"])
@pytest.mark.parametrize("nth", [11, 27])   # in the 3rd video of train; in the 3rd video of valid
def test_a_killed_conversion_is_refused_by_readers_and_a_rerun_equals_an_uninterrupted_run(
        tmp_path: Path, src: Path, capsys, target: str, nth: int) -> None:
    # before: a killed ytvis/davis/long_rvos/sola output read as a complete, smaller dataset
    out = tmp_path / "out"
    argv = ["convert", str(src), "--to", target, str(out), "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", KILL, str(nth), *argv], capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # mevis writes every split's expression file at the end: train is not finished either
    incomplete = "train" if nth == 11 or target == "mevis" else "valid"
    code, stdout, stderr = _cli(capsys, "info", out)
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"longrvos info: error: {out / incomplete}: field 'split': incomplete conversion, "
                             "re-run to resume")
    code, stdout, _ = _cli(capsys, "validate", out)
    assert code == 1 and stdout.splitlines()[0].startswith(
        f"error: {out / incomplete}: field 'split': incomplete conversion, re-run to resume")
    code, _, stderr = _cli(capsys, "convert", out, "--to", "hf", tmp_path / "hf")
    assert code == 2 and "incomplete conversion, re-run to resume" in stderr
    if incomplete == "valid":   # the finished split still reads
        assert len(longrvos_data.load(out, split="train")["train"]) == 4
    assert _cli(capsys, *argv)[0] == 0
    alone = tmp_path / "alone"
    assert _cli(capsys, "convert", src, "--to", target, alone, "--no-progress")[0] == 0
    assert _tree(out) == _tree(alone)
    assert _cli(capsys, "info", out)[0] == 0


def test_a_folder_without_lock_or_partial_files_is_source_data(tmp_path: Path, src: Path) -> None:
    assert not (src / "train" / COMPLETE).exists()  # synth writes a dataset as released: no mark
    check_complete(src)
    assert len(longrvos_data.load(src)["train"]) == 4
    (src / ".train.k2j3h4.partial").mkdir()
    with pytest.raises(DataError, match="incomplete conversion, re-run to resume") as info:
        longrvos_data.load(src)
    assert str(info.value).startswith(f"{src / 'train'}: field 'split': ")
    assert len(longrvos_data.load(src, split="valid")["valid"]) == 4   # another split is not concerned
    assert len(longrvos_data.load(src / "valid")["valid"]) == 4


# -- frame modes ----------------------------------------------------------------------
@pytest.mark.parametrize("target", FOLDER_TARGETS)
@pytest.mark.parametrize("mode", ["hardlink", "copy", "symlink"])
def test_frames_are_hard_linked_copied_or_symlinked(tmp_path: Path, src: Path, capsys, target: str,
                                                    mode: str) -> None:
    out = tmp_path / "out"
    assert _cli(capsys, "convert", src, "--to", target, out, "--split", "train", "--frames", mode)[0] == 0
    source = longrvos_data.load(src)["train"].video("tr00v001")
    back = longrvos_data.load(out)["train"].video("tr00v001")
    assert len(back.frames) == 4
    for a, b in zip(source.frames, back.frames):
        assert b.path.read_bytes() == a.path.read_bytes()
        assert b.path.is_symlink() == (mode == "symlink")
        if mode == "symlink":
            assert os.readlink(b.path) == str(a.path.absolute())
        else:
            assert os.path.samefile(a.path, b.path) == (mode == "hardlink")


def test_help_says_a_hard_linked_frame_is_the_source_and_hf_keeps_link_frames(capsys, tmp_path, src) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a hard-linked frame IS the source's file: editing it in place changes the source" in text
    code, _, stderr = _cli(capsys, "convert", src, "--to", "hf", tmp_path / "out", "--frames", "copy")
    assert code == 2 and "--frames applies to the folder targets" in stderr


# -- a full disk names the file ------------------------------------------------------------
def _file_size_limit(limit: int):
    def start() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return start


@pytest.mark.parametrize("target", ["ytvis", "long_rvos", "hf"])
def test_a_write_past_the_file_size_limit_names_the_file(tmp_path: Path, src: Path, target: str) -> None:
    # before: "longrvos convert: error: [Errno 27] File too large" named no file
    out = tmp_path / "out"
    extra = [] if target == "hf" else ["--frames", "copy"]
    done = subprocess.run([*CLI, "convert", str(src), "--to", target, str(out), "--split", "train", "--no-progress",
                           *extra], capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(900))
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.splitlines()[-1]
    if target == "hf":
        shard = out / ".longrvos_hf" / "staging" / "train" / "frames" / "train-00000.parquet.tmp"
        assert line.startswith(f"longrvos convert: error: {shard}: cannot write: ") and "File too large" in line
    elif target == "long_rvos":   # the split is staged, and the staging folder is removed on failure
        assert re.fullmatch(f"longrvos convert: error: {re.escape(str(out))}/\\.train\\.[^/]+\\.partial/JPEGImages/"
                            "tr00v000/00000.jpg: cannot write: File too large", line), line
        assert not list(out.glob(".train.*"))
    else:
        first = out / "train" / "JPEGImages" / "tr00v000" / "00000.jpg"
        assert line == f"longrvos convert: error: {first}: cannot write: File too large"
    with pytest.raises(LongRVOSError):
        longrvos_data.load(out)
