"""`longrvos prepare`: the archives each release ships, built here from samples/, unpack to the layouts
the loaders read; unsafe members are refused; a SIGKILLed run, re-run, equals an uninterrupted one."""
import gzip
import hashlib
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from fixtures.archives import RELEASES, SAMPLES, pack, release, tree

from longrvos_data.cli import main
from longrvos_data.errors import DataError
from longrvos_data.loaders import load
from longrvos_data.loaders.revos import ReVOSPaths
from longrvos_data.prepare import (
    archive_spec,
    check_unpacked,
    extract,
    find_archives,
    prepare,
    prepared_removed,
)
from longrvos_data.summary import summarise

REPO = SAMPLES.parent


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _counts(path: Path, split: str | None = None) -> dict:
    summary = summarise(path, split=split, deep=True)
    summary.pop("path")
    return summary


# The Ref-YouTube-VOS sample has no meta_expressions/test/: its valid split is refused (the valid file
# lists the test videos too), so only train is counted; the tree comparison covers valid.
COUNTED_SPLIT = {"ref_youtube_vos": "train"}
CASES = [(fmt, variant) for fmt, variants in RELEASES.items() for variant in variants]


@pytest.mark.parametrize("fmt,variant", CASES)
def test_release_archives_unpack_to_the_sample_layout(fmt, variant, tmp_path, capsys):
    src = SAMPLES / fmt
    packed = RELEASES[fmt][variant]
    root = release(src, tmp_path / fmt, packed)
    with pytest.raises(DataError, match="is not extracted"):
        check_unpacked(root)
    code, out, err = _run(capsys, "prepare", root, "--no-verify")
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == len(packed)
    tops = {archive: top for archive, top in packed.values()}
    for line in out.splitlines():
        archive = Path(line.split(": ", 1)[0]).relative_to(root).as_posix()
        assert ("(top folder" in line) == (tops[archive] is not None), line
    assert tree(root, content_only=True) == tree(src)
    assert _counts(root, COUNTED_SPLIT.get(fmt)) == _counts(src, COUNTED_SPLIT.get(fmt))
    assert sorted(a.marker.name for a in find_archives(root)) == sorted(
        f".{Path(a).name}.prepared" for a, _ in packed.values())
    # a re-run finds every marker matching and extracts nothing
    assert [a.action for a in prepare(root, verify=False).archives] == ["skipped"] * len(packed)
    assert all((root / archive).is_file() for archive, _ in packed.values())


def test_long_rvos_split_with_packed_masks_is_an_error_not_an_unannotated_split(tmp_path):
    split = tmp_path / "long_rvos" / "valid"
    shutil.copytree(SAMPLES / "long_rvos" / "valid", split)
    pack(split / "Annotations", split / "Annotations.tar.gz", None)
    shutil.rmtree(split / "Annotations")
    expected = (f"{split / 'Annotations.tar.gz'}: is not extracted (no Annotations/ beside it): "
                f"run `longrvos prepare {tmp_path / 'long_rvos'}` first")
    with pytest.raises(DataError) as err:
        load(tmp_path / "long_rvos")
    assert str(err.value) == expected
    with pytest.raises(DataError) as err:
        load(tmp_path / "long_rvos", format="long_rvos", split="valid")
    assert str(err.value) == expected
    with pytest.raises(DataError, match="is not extracted"):
        summarise(split, format="long_rvos")


def test_partial_folder_is_never_read(tmp_path, capsys):
    root = release(SAMPLES / "long_rvos", tmp_path / "lr", RELEASES["long_rvos"]["none"])
    prepare(root)
    (root / "valid" / "Annotations.partial" / "va01v000").mkdir(parents=True)
    expected = (f"{root / 'valid' / 'Annotations.partial'}: left by an interrupted extraction of "
                f"{root / 'valid' / 'Annotations.tar.gz'} (a partial folder is never read): "
                f"run `longrvos prepare {root}` to finish it")
    with pytest.raises(DataError) as err:
        load(root, format="long_rvos")
    assert str(err.value) == expected
    code, out, err = _run(capsys, "info", root)
    assert (code, out, err) == (2, "", f"longrvos info: error: {expected}\n")
    # prepare restarts that archive (its marker is there, but a .partial means "not finished")
    report = prepare(root)
    assert [(a.archive.relative_to(root).as_posix(), a.action) for a in report.archives if a.action != "skipped"] \
        == [("valid/Annotations.tar.gz", "extracted")]
    assert not (root / "valid" / "Annotations.partial").exists()
    assert tree(root, content_only=True) == tree(SAMPLES / "long_rvos")


def test_check_ignores_the_hub_files_and_hidden_entries(tmp_path):
    root = release(SAMPLES / "long_rvos", tmp_path / "lr", RELEASES["long_rvos"]["none"])
    prepare(root)
    (root / "README.md").write_text("---\nlicense: mit\n---\n# Long-RVOS\n")
    (root / ".gitattributes").write_text("*.tar.gz filter=lfs diff=lfs merge=lfs -text\n")
    incomplete = root / ".cache" / "huggingface" / "download" / "valid"
    incomplete.mkdir(parents=True)
    (incomplete / "JPEGImages.tar.gz.incomplete").write_bytes(b"\0" * 10)
    (root / ".cache" / "huggingface" / "download" / "train.zip").write_bytes(b"")
    check_unpacked(root)
    assert load(root, format="long_rvos").splits.keys() == {"train", "valid", "test"}


def test_changed_archive_is_extracted_again_and_merged(tmp_path):
    root = release(SAMPLES / "lvos", tmp_path / "lvos", RELEASES["lvos"]["top"])
    (root / "valid").mkdir()
    (root / "valid" / "notes.txt").write_text("mine")  # a folder already there is merged into, not replaced
    first = prepare(root)
    assert [a.action for a in first.archives] == ["extracted", "extracted"]
    assert (root / "valid" / "notes.txt").read_text() == "mine"
    archive = root / "train.zip"
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = prepare(root)
    assert [(a.archive.name, a.action) for a in again.archives] == [("train.zip", "extracted"),
                                                                    ("valid.zip", "skipped")]
    got = tree(root, content_only=True)
    assert got.pop("valid/notes.txt") == b"mine"
    assert got == tree(SAMPLES / "lvos")


def test_remove_archives_keeps_the_marker(tmp_path, capsys):
    root = release(SAMPLES / "long_rvos", tmp_path / "lr", RELEASES["long_rvos"]["none"])
    code, out, _ = _run(capsys, "prepare", root, "--remove-archives")
    assert code == 0 and out.count("; archive removed") == 5
    assert find_archives(root) == []
    assert [p.relative_to(root).as_posix() for p in prepared_removed(root)] == [
        "test/JPEGImages.tar.gz", "train/Annotations.tar.gz", "train/JPEGImages.tar.gz",
        "valid/Annotations.tar.gz", "valid/JPEGImages.tar.gz"]
    check_unpacked(root)
    assert tree(root, content_only=True) == tree(SAMPLES / "long_rvos")
    code, out, _ = _run(capsys, "prepare", root)
    assert (code, out) == (0, f"no archive to unpack in {root}\n")


# -- ReVOS: the published SHA256 ------------------------------------------------------------------------------
def test_revos_sum_mismatch_refuses_and_writes_nothing_then_no_verify_extracts(tmp_path, capsys):
    root = release(SAMPLES / "revos", tmp_path / "ReVOS", RELEASES["revos"]["none"])
    zip_path = root / "JPEGImages.zip"
    actual = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    before = tree(root)
    code, out, err = _run(capsys, "prepare", root)
    assert (code, out) == (2, "")
    assert err == (f"longrvos prepare: error: {zip_path}: SHA256 is {actual}, the release publishes "
                   f"{ReVOSPaths.SHA256['JPEGImages.zip']}: the download is corrupt or of another release; "
                   "download it again, or pass --no-verify to extract it anyway (nothing was extracted)\n")
    assert ReVOSPaths.SHA256["JPEGImages.zip"] == "1844db76c3075deb95034935a8208ba459272784242ec39de9287c66a4c22f07"
    assert tree(root) == before
    code, _, err = _run(capsys, "prepare", root, "--no-verify")
    assert (code, err) == (0, "")
    assert _counts(root) == _counts(SAMPLES / "revos")


def test_revos_matching_sum_extracts(tmp_path, monkeypatch):
    root = release(SAMPLES / "revos", tmp_path / "ReVOS", RELEASES["revos"]["top"])
    digest = hashlib.sha256((root / "JPEGImages.zip").read_bytes()).hexdigest()
    monkeypatch.setitem(ReVOSPaths.SHA256, "JPEGImages.zip", digest)
    assert archive_spec(root / "JPEGImages.zip").sha256 == digest
    assert [a.action for a in prepare(root).archives] == ["extracted"]
    assert tree(root, content_only=True) == tree(SAMPLES / "revos")


# -- unsafe members ---------------------------------------------------------------------------------------------
def _tar_with(path: Path, *members: tarfile.TarInfo, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if m.isreg():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _escape_cases(outside: Path):
    ok = _info("va01v000/00000.jpg")
    return {
        "dotdot": ([ok, _info("../../../outside/x")], "'../../../outside/x' contains '..'"),
        "absolute": ([ok, _info(f"{outside}/x")], f"'{outside}/x' is an absolute path"),
        "symlink-out": ([ok, _info("va01v000/evil", tarfile.SYMTYPE, "../../../../outside"),
                         _info("va01v000/evil/x")],
                        "'va01v000/evil' is a link to '../../../../outside', outside the archive's folder"),
        "symlink-absolute": ([ok, _info("evil", tarfile.SYMTYPE, str(outside))],
                             f"'evil' is a link to the absolute path '{outside}'"),
        # each hop stays inside lexically, but sub/a/b/l is the archive's folder itself, so t leaves it
        "symlink-chain": ([_info("sub/a/b", tarfile.DIRTYPE), _info("sub/a/b/l", tarfile.SYMTYPE, "../../.."),
                           _info("t", tarfile.SYMTYPE, "sub/a/b/l/../../../../outside"), _info("t/x")],
                          "'t/x' would be written through a link out of the archive's folder"),
        "hardlink-out": ([ok, _info("h", tarfile.LNKTYPE, "../../../outside/secret")],
                         "'h' is a hard link to '../../../outside/secret', outside the archive's folder"),
        "hardlink-absolute": ([ok, _info("h", tarfile.LNKTYPE, f"{outside}/secret")],
                              f"'h' is a hard link to '{outside}/secret', outside the archive's folder"),
        "fifo": ([ok, _info("pipe", tarfile.FIFOTYPE)], "'pipe' is a device or FIFO, not a file, folder or link"),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-out", "symlink-absolute", "symlink-chain",
                                  "hardlink-out", "hardlink-absolute", "fifo"])
def test_unsafe_tar_member_is_refused_and_nothing_lands_outside(case, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "secret").write_text("s")
    root = tmp_path / "root"
    members, message = _escape_cases(outside)[case]
    archive = root / "valid" / "JPEGImages.tar.gz"
    _tar_with(archive, *members)
    code, out, err = _run(capsys, "prepare", root)
    assert (code, out) == (2, "")
    assert err == f"longrvos prepare: error: {archive}: member {message}: refused, nothing extracted\n"
    assert list(outside.iterdir()) == []
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "outside", "root", "root/valid", "root/valid/JPEGImages.tar.gz", "secret"]


def _zip_with(path: Path, entries: list[tuple[str, bytes, int | None]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-out"])
def test_unsafe_zip_member_is_refused_before_anything_is_written(case, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    ok = ("JPEGImages/v/00000.jpg", b"x", None)
    entries, message = {
        "dotdot": ([ok, ("../outside/x", b"x", None)], "'../outside/x' contains '..'"),
        "absolute": ([ok, (f"{outside}/x", b"x", None)], f"'{outside}/x' is an absolute path"),
        "symlink-out": ([ok, ("JPEGImages/v/l", b"../../../outside", stat.S_IFLNK | 0o777)],
                        "'JPEGImages/v/l' is a link to '../../../outside', outside the archive's folder"),
    }[case]
    archive = tmp_path / "root" / "JPEGImages.zip"
    _zip_with(archive, entries)
    code, _, err = _run(capsys, "prepare", tmp_path / "root", "--no-verify")
    assert code == 2
    assert err == f"longrvos prepare: error: {archive}: member {message}: refused, nothing extracted\n"
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["JPEGImages.zip"]


def test_links_inside_the_archive_are_kept(tmp_path):
    archive = tmp_path / "root" / "valid" / "Annotations.tar.gz"
    _tar_with(archive, _info("v/1", tarfile.DIRTYPE), _info("v/1/00000.png"),
              _info("v/1/00001.png", tarfile.LNKTYPE, "v/1/00000.png"),
              _info("v/2", tarfile.SYMTYPE, "1"), data=b"png")
    [result] = prepare(tmp_path / "root").archives
    dest = tmp_path / "root" / "valid" / "Annotations"
    assert (result.files, result.top) == (2, None)
    assert tree(dest) == {"v": None, "v/1": None, "v/1/00000.png": b"png", "v/1/00001.png": b"png",
                           "v/2": "link:1"}
    assert os.stat(dest / "v/1/00000.png").st_ino == os.stat(dest / "v/1/00001.png").st_ino


@pytest.mark.parametrize("gunzip", ["gzip", "python"])
def test_truncated_archive_is_an_error_and_leaves_nothing(gunzip, tmp_path):
    root = release(SAMPLES / "long_rvos", tmp_path / "lr", {"valid/JPEGImages": ("valid/JPEGImages.tar.gz", None)})
    archive = root / "valid" / "JPEGImages.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    [spec] = find_archives(root)
    with pytest.raises(DataError) as err:
        extract(spec, gunzip=gunzip)
    assert str(err.value).startswith(f"{archive}: is corrupt or truncated (")
    assert sorted(p.name for p in (root / "valid").iterdir()) == ["Annotations", "JPEGImages.tar.gz",
                                                                 "meta_expressions.json"]


# -- durability: SIGKILL mid-way, re-run, same tree ---------------------------------------------------------------
@pytest.mark.slow
def test_sigkilled_prepare_rerun_gives_the_uninterrupted_tree(tmp_path):
    base = release(SAMPLES / "long_rvos", tmp_path / "base", RELEASES["long_rvos"]["none"])
    big = tmp_path / "frames"
    rng = __import__("random").Random(0)
    for v in range(30):
        (big / f"v{v:03d}").mkdir(parents=True)
        for f in range(40):  # 1,200 files of 16 KiB of incompressible bytes: about 20 MB
            (big / f"v{v:03d}" / f"{f:05d}.jpg").write_bytes(rng.randbytes(16 * 1024))
    archive = base / "valid" / "JPEGImages.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=0) as tar:  # stored blocks: quick to build
        for child in sorted(big.iterdir()):
            tar.add(child, arcname=child.name)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    shutil.copytree(base, whole)  # copy2: sizes and mtimes kept, so the markers agree too
    shutil.copytree(base, killed)
    cmd = [sys.executable, "-m", "longrvos_data.cli", "prepare", "--no-progress"]
    subprocess.run([*cmd, str(whole)], check=True, capture_output=True, cwd=REPO)

    proc = subprocess.Popen([*cmd, str(killed)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = killed / "valid" / "JPEGImages.partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.is_dir() and len(os.listdir(partial)) >= 2:  # well into the big archive
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert partial.is_dir() and not (killed / "valid" / "JPEGImages").exists()
    with pytest.raises(DataError, match="left by an interrupted extraction"):
        check_unpacked(killed)

    rerun = subprocess.run([*cmd, str(killed)], capture_output=True, text=True, cwd=REPO)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{killed / 'valid' / 'JPEGImages.tar.gz'}: extracted 1200 file(s)" in rerun.stdout
    assert tree(killed) == tree(whole)
    assert not [p for p in killed.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    check_unpacked(killed)


def test_a_later_file_replaces_a_link_of_the_same_name(tmp_path):
    archive = tmp_path / "root" / "valid" / "Annotations.tar.gz"
    _tar_with(archive, _info("v/1", tarfile.DIRTYPE), _info("v/2", tarfile.SYMTYPE, "1"), _info("v/2"), data=b"f")
    prepare(tmp_path / "root")
    assert tree(tmp_path / "root" / "valid" / "Annotations") == {"v": None, "v/1": None, "v/2": b"f"}


def test_zip_method_python_cannot_read_is_one_error(tmp_path):
    archive = tmp_path / "root" / "train.zip"
    _zip_with(archive, [("train/JPEGImages/v/00000.jpg", b"x" * 100, None)])
    data = bytearray(archive.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # compression method -> 9 (deflate64)
        at = data.index(sig) + offset
        data[at:at + 2] = (9).to_bytes(2, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        prepare(tmp_path / "root")
    assert str(err.value) == (f"{archive}: cannot be read by Python's zipfile (That compression method is not "
                              "supported): extract it with `unzip` or 7-Zip into the folder named after it")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["train.zip"]


@pytest.mark.parametrize("name,dest,tops", [
    ("v/JPEGImages.tar.gz", "v/JPEGImages", ("JPEGImages",)),
    ("v/Annotations.tgz", "v/Annotations", ("Annotations",)),
    ("v/JPEGImages.tar", "v/JPEGImages", ("JPEGImages",)),
    ("JPEGImages.zip", "JPEGImages", ("JPEGImages",)),
    ("meta_expressions_test.zip", "meta_expressions", ("meta_expressions",)),
    ("valid_u.zip", "valid_u", ("valid_u",)),
    ("val.zip", "val", ("val", "valid")),
    ("valid.tar.gz", "valid", ("valid", "val")),
    ("train_images.zip", "train", ("train", "train_images")),
    ("train_log.tar.gz", None, None),
    ("meta_expressions.tar.gz", None, None),
    ("notes.zip", None, None),
    ("meta_expressions.json", None, None),
    (".zip", None, None),
])
def test_archive_names(name, dest, tops):
    spec = archive_spec(Path("r") / name)
    got = (None, None) if spec is None else (spec.dest.relative_to("r").as_posix(), spec.tops)
    assert got == (dest, tops)
    if spec is not None:
        assert spec.sha256 == (ReVOSPaths.SHA256["JPEGImages.zip"] if name == "JPEGImages.zip" else None)
        assert spec.partial == spec.dest.with_name(spec.dest.name + ".partial")


# -- every header kind is read as tarfile reads it; the decompressing thread ---------------------------------------
def _content() -> dict[str, bytes | None]:
    rng = __import__("random").Random(1)
    deep = "d" * 60 + "/" + "e" * 60  # 121 characters: ustar's prefix field, GNU's long name, a pax path
    return {"v": None, "v/00000.jpg": rng.randbytes(1000), "v/empty.png": b"", f"{deep}/00000.png": b"png",
            "vidéo/00000.jpg": b"accent", "big/exactly.bin": rng.randbytes(1 << 20),
            "big/spans.bin": rng.randbytes((9 << 20) + 7)}  # larger than a chunk: written in pieces


def _pack(archive: Path, content: dict, fmt: int, **kwargs) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    gz = archive.name.endswith(".gz")
    with tarfile.open(archive, "w:gz" if gz else "w", format=fmt, **({"compresslevel": 1} if gz else {}),
                      **kwargs) as tar:
        for name, data in content.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
            info.size = len(data or b"")
            tar.addfile(info, None if data is None else io.BytesIO(data))


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax", "pax-global"])
@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_header_formats_extract_exactly(fmt, suffix, tmp_path):
    archive = tmp_path / "root" / "valid" / f"Annotations{suffix}"
    content = _content()
    kwargs = {"pax_headers": {"comment": "a global header"}} if fmt == "pax-global" else {}
    _pack(archive, content, {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT}.get(fmt, tarfile.PAX_FORMAT),
          **kwargs)
    [result] = prepare(tmp_path / "root").archives
    got = tree(tmp_path / "root" / "valid" / "Annotations")
    assert got == {**content, "d" * 60: None, "d" * 60 + "/" + "e" * 60: None, "vidéo": None, "big": None}
    assert (result.files, result.bytes) == (6, sum(len(d) for d in content.values() if d))


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_file_from_gnu_tar(fmt, tmp_path):
    src = tmp_path / "src" / "v"
    src.mkdir(parents=True)
    with open(src / "holes.bin", "wb") as fh:
        fh.write(b"a" * 5000)
        fh.seek(3 << 20)
        fh.write(b"b" * 100)
        fh.truncate(5 << 20)  # ends in a hole
    archive = tmp_path / "root" / "valid" / "JPEGImages.tar.gz"
    archive.parent.mkdir(parents=True)
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-czf", str(archive), "-C", str(tmp_path / "src"), "v"],
                   check=True)
    with tarfile.open(archive) as tar:
        assert [m.name for m in tar if m.issparse()] == ["v/holes.bin"]
    prepare(tmp_path / "root")
    assert tree(tmp_path / "root" / "valid" / "JPEGImages") == {"v": None, "v/holes.bin": (src / "holes.bin").read_bytes()}


def test_concatenated_gzip_members_and_padding_are_read_whole(tmp_path):
    plain = tmp_path / "plain.tar"
    content = {"v": None, **{f"v/{i:05d}.jpg": bytes([i]) * (700 + i) for i in range(20)}}
    _pack(plain, content, tarfile.PAX_FORMAT)
    data = plain.read_bytes()
    archive = tmp_path / "root" / "valid" / "JPEGImages.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(gzip.compress(data[:5000]) + gzip.compress(data[5000:]) + bytes(64))
    prepare(tmp_path / "root")
    assert tree(tmp_path / "root" / "valid" / "JPEGImages") == content


@pytest.mark.parametrize("damage", ["checksum", "truncated"])
def test_damaged_plain_tar_is_an_error_not_a_partial_tree(damage, tmp_path):
    archive = tmp_path / "root" / "valid" / "JPEGImages.tar"
    _pack(archive, {"v": None, "v/00000.jpg": b"x" * 600, "v/00001.jpg": b"y" * 600}, tarfile.USTAR_FORMAT)
    data = bytearray(archive.read_bytes())
    if damage == "checksum":  # tarfile alone stops there, silently: only v/00000.jpg would be extracted
        data[2048 + 20] ^= 1  # a byte of the third header's name (headers at 0, 512, 2048)
    else:
        data = data[:512 * 5 + 100]  # inside the last file's data
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        prepare(tmp_path / "root")
    reason = "bad checksum" if damage == "checksum" else "unexpected end of data"
    assert str(err.value) == f"{archive}: is corrupt or truncated ({reason})"
    assert sorted(p.name for p in (tmp_path / "root" / "valid").iterdir()) == ["JPEGImages.tar"]


def test_refusal_stops_the_decompressing_thread(tmp_path):
    archive = tmp_path / "root" / "valid" / "JPEGImages.tar.gz"
    _pack(archive, {"../evil": b"x", "v/zeros.bin": bytes(64 << 20)}, tarfile.PAX_FORMAT)  # 64 MiB: fills the queue
    with pytest.raises(DataError, match="'../evil' contains '..'"):
        prepare(tmp_path / "root")
    assert [t for t in threading.enumerate() if t.name == "longrvos-gunzip"] == []
    assert sorted(p.name for p in (tmp_path / "root" / "valid").iterdir()) == ["JPEGImages.tar.gz"]
