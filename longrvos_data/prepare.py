"""`longrvos prepare`: unpack the archives a release ships, in place, into the layout the loaders read.

Archives are looked for in ROOT and in its split folders (``train``, ``valid``, ``val``,
``valid_u``, ``test``), and go where their name says::

    <dir>/JPEGImages.{tar.gz,tgz,tar,zip}   -> <dir>/JPEGImages/     (Long-RVOS, MeViS v2, ReVOS)
    <dir>/Annotations.{...}                 -> <dir>/Annotations/    (Long-RVOS)
    <dir>/meta_expressions*.zip             -> <dir>/meta_expressions/   (Ref-YouTube-VOS)
    <dir>/<split>.{zip,tar,...}, <dir>/<split>_*.zip  -> <dir>/<split>/   (Ref-YouTube-VOS, LVOS)

An archive may hold its content under one top folder of the destination's name (MeViS v2's
``JPEGImages.tar`` holds ``JPEGImages/``) or not (Long-RVOS's ``*.tar.gz``): a single top
folder of that name is dropped, so both give the same layout. The releases whose prefix is
unconfirmed (ReVOS, Ref-YouTube-VOS, LVOS) are read either way.

Each archive is extracted into ``<dest>.partial/`` and renamed to ``<dest>`` (or merged into
an existing ``<dest>``) once complete; then the hidden marker ``.<archive>.prepared``
records the archive's size and mtime, so that a re-run skips it. A ``.partial`` left by a
killed run is removed and the archive extracted again. Loaders refuse a tree that still
has a packed archive or a ``.partial`` (`check_unpacked`).

Safety: a member that is absolute, contains ``..``, is a link whose target leaves the
archive's folder, or is a device or FIFO is refused with a `DataError` naming the archive
and the member, and its ``.partial`` is removed: nothing is written outside ROOT.
ReVOS ``JPEGImages.zip`` is checked against the SHA256 its README publishes before
anything is written (``verify=False`` skips the check).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import DataError, LongRVOSError
from .fsutil import atomic_write_json, file_sha256

log = logging.getLogger("longrvos_data")

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SUFFIXES = (*TAR_SUFFIXES, ".zip")
CONTENT_FOLDERS = ("JPEGImages", "Annotations")
META_FOLDER = "meta_expressions"
SPLIT_FOLDERS = ("valid_u", "train", "valid", "val", "test")  # longest first where one prefixes another
SPLIT_ALIASES = {"val": "valid", "valid": "val"}  # LVOS: the README says val, the archives unpack to valid
PARTIAL = ".partial"
CHUNK = 1 << 20  # compressed bytes read at a time; larger members are written in pieces
INFLATED_CHUNK = 4 << 20  # uncompressed bytes per chunk: few hand-overs between the two threads
QUEUE_CHUNKS = 8  # chunks decompressed ahead at most (32 MiB)
# ``.tar.gz`` is decompressed by Python's zlib in a second thread unless a program is asked for:
# bench/bench_prepare.py measures both against ``tar -xzf``.


@dataclass(frozen=True)
class Archive:
    """One archive of a release and where it goes.

    Attributes:
        path: the archive file.
        dest: the folder its content ends up in.
        tops: names of a single top folder that is dropped (the content is moved up one level).
        sha256: the sum the release publishes, checked before extracting; None if none.
    """

    path: Path
    dest: Path
    tops: tuple[str, ...]
    sha256: str | None = None

    @property
    def partial(self) -> Path:
        """The folder the archive is extracted into before it is complete."""
        return self.dest.with_name(self.dest.name + PARTIAL)

    @property
    def marker(self) -> Path:
        """The hidden file recording which archive (size, mtime) was extracted."""
        return self.path.with_name(f".{self.path.name}.prepared")


@dataclass
class ArchiveResult:
    """What `prepare` did with one archive: ``extracted`` or ``skipped`` (marker matched)."""

    archive: Path
    dest: Path
    action: str
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    top: str | None = None
    removed: bool = False

    def as_dict(self) -> dict:
        return {"archive": str(self.archive), "dest": str(self.dest), "action": self.action, "files": self.files,
                "bytes": self.bytes, "seconds": round(self.seconds, 3), "top": self.top, "removed": self.removed}


@dataclass
class PrepareReport:
    """Every archive found under ROOT, in the order they were handled."""

    root: Path
    archives: list[ArchiveResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"root": str(self.root), "archives": [a.as_dict() for a in self.archives]}


def _stem(name: str) -> str | None:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def archive_spec(path: str | Path) -> Archive | None:
    """The `Archive` a file is, from its name, or None when it is no archive a release ships.

    Example:
        >>> archive_spec("long_rvos/valid/Annotations.tar.gz").dest
        PosixPath('long_rvos/valid/Annotations')
    """
    path = Path(path)
    stem = _stem(path.name)
    if stem is None:
        return None
    parent = path.parent
    if stem in CONTENT_FOLDERS:
        sha = None
        if path.name == "JPEGImages.zip":  # only ReVOS ships this one
            from .loaders.revos import ReVOSPaths
            sha = ReVOSPaths.SHA256[path.name]
        return Archive(path, parent / stem, (stem,), sha)
    if path.suffix == ".zip" and stem.startswith(META_FOLDER):
        return Archive(path, parent / META_FOLDER, (META_FOLDER,))
    for split in SPLIT_FOLDERS:  # <split>_*: the LVOS zips' names are unconfirmed
        if stem == split or (path.suffix == ".zip" and stem.startswith(split + "_")):
            tops = tuple(dict.fromkeys((split, stem, SPLIT_ALIASES.get(split, split))))
            return Archive(path, parent / split, tops)
    return None


def _search_dirs(root: Path) -> list[Path]:
    """ROOT and its split folders: where releases put archives (never deeper)."""
    dirs = [root]
    for name in SPLIT_FOLDERS:
        if (root / name).is_dir():
            dirs.append(root / name)
    return dirs


def find_archives(root: str | Path) -> list[Archive]:
    """Every archive of a release in ROOT and its split folders, sorted by path.

    Example:
        >>> [a.path.relative_to("data/long_rvos").as_posix() for a in find_archives("data/long_rvos")]
        ['test/Annotations.tar.gz', 'test/JPEGImages.tar.gz', 'train/Annotations.tar.gz', ...]
    """
    found = []
    for folder in _search_dirs(Path(root)):
        with os.scandir(folder) as it:
            for entry in it:
                if not entry.name.startswith(".") and entry.is_file():
                    spec = archive_spec(Path(entry.path))
                    if spec is not None:
                        found.append(spec)
    return sorted(found, key=lambda a: str(a.path))


def check_unpacked(path: str | Path) -> None:
    """Refuse a tree whose data is still packed, or half unpacked by an interrupted `prepare`.

    Cheap: one listing of ``path`` and of each of its split folders. Hidden entries (the Hub's
    ``.cache/``, ``.gitattributes``, this module's markers) and other files are ignored.

    Raises:
        DataError: an archive with no folder beside it (``Annotations.tar.gz`` but no
            ``Annotations/``), or a ``<dest>.partial/`` folder; the message names the
            archive and says to run ``longrvos prepare``.
    """
    path = Path(path)
    if not path.is_dir():
        return
    for folder in _search_dirs(path):
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".")]
        for entry in entries:
            if entry.name.endswith(PARTIAL) and entry.is_dir():
                dest = entry.name[: -len(PARTIAL)]
                archives = [e.name for e in entries if (spec := archive_spec(Path(e.path))) and spec.dest.name == dest]
                what = f"of {folder / archives[0]} " if archives else ""
                raise DataError(f"left by an interrupted extraction {what}(a partial folder is never read): "
                                f"run `longrvos prepare {path}` to finish it", file=entry.path)
            if entry.is_file():
                spec = archive_spec(Path(entry.path))
                if spec is not None and not spec.dest.is_dir():
                    raise DataError(f"is not extracted (no {spec.dest.name}/ beside it): run "
                                    f"`longrvos prepare {path}` first", file=entry.path)


# -- extraction ---------------------------------------------------------------------------------------------------
def _refuse(archive: Path, member: str, why: str) -> DataError:
    return DataError(f"member {member!r} {why}: refused, nothing extracted", file=archive)


def _relative(archive: Path, name: str) -> str | None:
    """The member's path inside the archive, normalised; None for the archive's own root entry."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, name, "is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, name, "contains '..'")
    return "/".join(parts) or None


def _link_target(archive: Path, name: str, rel: str, target: str) -> str:
    """A symlink's target, refused when absolute or when it leaves the archive's folder."""
    if target.startswith("/") or not target:
        raise _refuse(archive, name, f"is a link to the absolute path {target!r}")
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(archive, name, f"is a link to {target!r}, outside the archive's folder")
    return target


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base + os.sep)


class _Writer:
    """Writes members under one folder, refusing any write that a link would carry out of it."""

    def __init__(self, archive: Path, base: Path) -> None:
        self.archive = archive
        self.base = str(base)
        self.real_base = os.path.realpath(base)
        self.made: set[str] = {""}  # folders created, as paths inside the archive
        self.links: list[tuple[str, str]] = []  # (member name, path) of every symlink written
        self.files = 0
        self.bytes = 0

    def _parent(self, name: str, rel: str) -> str:
        path = f"{self.base}/{rel}"
        if self.links and not _inside(os.path.realpath(os.path.dirname(path)), self.real_base):
            raise _refuse(self.archive, name, "would be written through a link out of the archive's folder")
        folder = rel.rpartition("/")[0]
        if folder not in self.made:
            os.makedirs(f"{self.base}/{folder}", exist_ok=True)
            self.made.add(folder)
        return path

    def folder(self, name: str, rel: str) -> None:
        path = self._parent(name, rel)
        if self.links and os.path.islink(path):
            raise _refuse(self.archive, name, "is a folder where the archive put a link")
        os.makedirs(path, exist_ok=True)
        self.made.add(rel)

    def file(self, name: str, rel: str, pieces: Iterable[tuple[int, bytes | memoryview]],
             size: int | None = None) -> None:
        """Write a member's bytes, given as (offset, bytes) pieces; ``size``: the length of a sparse file."""
        path = self._parent(name, rel)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as err:  # a link (or folder) of the same name came earlier in the archive
            if err.errno not in (errno.ELOOP, errno.EISDIR):
                raise
            if not os.path.islink(path):
                raise _refuse(self.archive, name, "is a file where the archive has a folder") from None
            os.unlink(path)  # the later member wins, as with tar
            fd = os.open(path, flags, 0o666)
        try:
            for offset, data in pieces:
                done = os.pwrite(fd, data, offset)
                while done < len(data):  # a short write: a signal, or a full disk (then an error)
                    done += os.pwrite(fd, data[done:], offset + done)
                self.bytes += done
            if size is not None:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.files += 1

    def symlink(self, name: str, rel: str, target: str) -> None:
        path = self._parent(name, rel)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
        self.links.append((name, path))

    def hardlink(self, name: str, rel: str, source_rel: str) -> None:
        source = f"{self.base}/{source_rel}"
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise _refuse(self.archive, name, f"is a hard link to {source_rel!r}, which the archive does not "
                                              "hold before it") from None
        if not stat.S_ISREG(st.st_mode) or not _inside(os.path.realpath(os.path.dirname(source)), self.real_base):
            raise _refuse(self.archive, name, f"is a hard link to {source_rel!r}, which is not a file of the archive")
        path = self._parent(name, rel)
        if os.path.lexists(path):
            os.unlink(path)
        os.link(source, path, follow_symlinks=False)
        self.files += 1

    def check_links(self, bound: Path) -> None:
        """Every symlink written must resolve inside ``bound`` (links through links included)."""
        real_bound = os.path.realpath(bound)
        for name, path in self.links:
            if not _inside(os.path.realpath(path), real_bound):
                raise _refuse(self.archive, name, "is a link that resolves outside the archive's folder")


class _Progress:
    """Bytes of the archive read so far, shown with tqdm when asked."""

    def __init__(self, archive: Path, total: int, *, enabled: bool, desc: str | None = None) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or archive.name,
                            file=sys.stderr, leave=False)
        self.done = 0

    def to(self, position: int) -> None:
        if self.bar is not None and position > self.done:
            self.bar.update(position - self.done)
        self.done = max(self.done, position)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _gunzip_program(gunzip: str) -> str | None:
    """The program to decompress with, or None for Python's zlib."""
    if gunzip == "python":
        return None
    found = shutil.which(gunzip)
    if found is None:
        raise LongRVOSError(f"{gunzip}: no such program on PATH")
    return found


BLOCK = tarfile.BLOCKSIZE
_END_BLOCK = bytes(BLOCK)
_PLAIN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
_PLAIN_MAGIC = (b"ustar\x0000", b"ustar  \x00")  # POSIX ustar, GNU


class _Stream:
    """The uncompressed archive as one forward-only stream over large chunks.

    A member inside one chunk is read as a view of it, without a copy. ``position`` is how much
    of the archive file the chunks read so far came from (for progress).
    """

    def __init__(self, chunks: Iterator[tuple[bytes, int]]) -> None:
        self.chunks = chunks
        self.buf = b""
        self.view = memoryview(self.buf)
        self.pos = 0  # in buf
        self.start = 0  # offset of buf in the stream
        self.position = 0

    def _next(self) -> bool:
        item = next(self.chunks, None)
        if item is None:
            return False
        self.start += len(self.buf)
        self.buf, self.position = item
        self.view = memoryview(self.buf)
        self.pos = 0
        return True

    def tell(self) -> int:
        return self.start + self.pos

    def read(self, n: int) -> bytes | memoryview:
        """The next ``n`` bytes; fewer at the end of the stream."""
        end = self.pos + n
        if end <= len(self.buf):
            self.pos = end
            return self.view[end - n:end]
        out = [self.view[self.pos:]]
        n -= len(self.buf) - self.pos
        self.pos = len(self.buf)
        while n > 0 and self._next():
            take = min(n, len(self.buf))
            out.append(self.view[:take])
            self.pos = take
            n -= take
        return b"".join(out)

    def pieces(self, n: int, offset: int = 0) -> Iterator[tuple[int, memoryview]]:
        """The next ``n`` bytes as (offset, view) pieces, one per chunk they span."""
        while n > 0:
            if self.pos == len(self.buf) and not self._next():
                raise tarfile.ReadError("unexpected end of data")
            take = min(n, len(self.buf) - self.pos)
            yield offset, self.view[self.pos:self.pos + take]
            self.pos += take
            offset += take
            n -= take

    def skip_to(self, offset: int) -> None:
        while offset > self.start + len(self.buf):
            if not self._next():
                raise tarfile.ReadError("unexpected end of data")
        self.pos = offset - self.start

    def unread(self, data: bytes) -> None:
        """Put back what `read` just returned."""
        if self.pos >= len(data):
            self.pos -= len(data)
            return
        at = self.tell() - len(data)
        self.buf = data + self.buf[self.pos:]
        self.view = memoryview(self.buf)
        self.start, self.pos = at, 0


class _TarShim:
    """What `tarfile.TarInfo.fromtarfile` reads a header from: the stream, and the pax global headers so far."""

    encoding = tarfile.ENCODING
    errors = "surrogateescape"

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.fileobj = self
        self.pax_headers: dict[str, str] = {}
        self.offset = 0  # set by fromtarfile: where the next header starts

    def read(self, n: int) -> bytes:
        return bytes(self.stream.read(n))

    def tell(self) -> int:
        return self.stream.tell()


def _nts(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")


def _plain_header(header: bytes) -> tuple[str, bytes, int] | None:
    """(name, type, size) of a ustar or GNU header of a file or folder with octal fields and a good
    checksum, read as tarfile reads it; None for any other header (tarfile parses those)."""
    kind = header[156:157]
    if kind not in _PLAIN_TYPES or header[257:265] not in _PLAIN_MAGIC or header[124] & 0x80:
        return None
    try:
        if int(header[148:156].split(b"\0", 1)[0] or b"-", 8) != 256 + sum(header) - sum(header[148:156]):
            return None
        size = int(header[124:136].split(b"\0", 1)[0] or b"0", 8)
    except ValueError:
        return None
    name = _nts(header[:100])
    if kind == tarfile.AREGTYPE and name.endswith("/"):  # old tar: a folder is a file named with a slash
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    prefix = header[345:500]
    if prefix[0]:
        name = _nts(prefix) + "/" + name
    return name, kind, size


def _members(stream: _Stream) -> Iterator[tuple[str, bytes, int, str, list | None]]:
    """(name, type, size, link target, sparse map) of each member, the stream at its data.

    The headers of plain files and folders (nearly every member of a release) are parsed here, at a
    few microseconds each; any other (pax, GNU long names, links, sparse files, base-256 fields, a bad
    checksum) by tarfile's own `TarInfo.fromtarfile`, so that its rules apply unchanged.
    """
    shim = _TarShim(stream)
    while True:
        header = bytes(stream.read(BLOCK))
        if len(header) < BLOCK:
            if header or stream.tell() == 0:
                raise tarfile.ReadError("unexpected end of data" if header else "empty file")
            return  # no end-of-archive blocks: tarfile accepts that too
        if header == _END_BLOCK:
            return
        plain = None if shim.pax_headers else _plain_header(header)
        if plain is not None:
            name, kind, size = plain
            data = stream.tell()
            yield name, kind, size, "", None
            stream.skip_to(data if kind == tarfile.DIRTYPE else data + -(-size // BLOCK) * BLOCK)
        else:
            stream.unread(header)
            info = tarfile.TarInfo.fromtarfile(shim)
            yield info.name, info.type, info.size, info.linkname, info.sparse
            stream.skip_to(shim.offset)


class _Inflater:
    """Decompresses a ``.tar.gz`` in a second thread, into a bounded queue of large chunks.

    zlib releases the GIL while it inflates, so decompressing and writing the members overlap on
    two cores, as ``tar -xzf`` does with its gzip process. Concatenated gzip members and NUL
    padding after them are read as GzipFile reads them; the CRC and length are checked by zlib.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="longrvos-gunzip", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        try:
            inflate = zlib.decompressobj(31)
            read = 0
            while block := self.raw.read(CHUNK):
                read += len(block)
                data = block
                while data:
                    if inflate.eof:  # past one gzip member: padding, or the next member
                        data = data.lstrip(b"\0")
                        if not data:
                            break
                        inflate = zlib.decompressobj(31)
                    out = inflate.decompress(data, INFLATED_CHUNK)
                    data = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
                    if out and not self._put((out, read)):
                        return
            if not inflate.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
        except BaseException as err:  # noqa: BLE001 - handed to the reading thread, which raises it
            self._put(err)
        else:
            self._put(None)

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def _file_chunks(raw: IO[bytes]) -> Iterator[tuple[bytes, int]]:
    read = 0
    while block := raw.read(INFLATED_CHUNK):
        read += len(block)
        yield block, read


def _pipe_chunks(out: IO[bytes], fd: int) -> Iterator[tuple[bytes, int]]:
    while block := out.read(CHUNK):
        yield block, os.lseek(fd, 0, os.SEEK_CUR)  # the child shares the file offset: how far it has read


@contextlib.contextmanager
def _tar_chunks(path: Path, *, gunzip: str = "python") -> Iterator[Iterator[tuple[bytes, int]]]:
    """The uncompressed archive as (chunk, bytes of the archive file read so far).

    A ``.tar.gz`` is decompressed by ``gunzip`` (see `extract`): in a second thread, or by a
    program in a second process.
    """
    with open(path, "rb", buffering=0) as raw:
        gz = path.name.endswith((".tar.gz", ".tgz"))
        tool = _gunzip_program(gunzip) if gz else None
        if not gz:
            yield _file_chunks(raw)
        elif tool is None:
            inflater = _Inflater(raw)
            try:
                yield iter(inflater)
            finally:
                inflater.close()
        else:
            proc = subprocess.Popen([tool, "-dc"], stdin=raw, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    bufsize=CHUNK)
            try:
                yield _pipe_chunks(proc.stdout, raw.fileno())
                err = proc.stderr.read().decode(errors="replace").strip()
                if proc.wait() != 0:
                    raise DataError(f"is corrupt or truncated ({err or f'{tool} exit {proc.returncode}'})",
                                    file=path)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()


def _extract_tar(archive: Path, writer: _Writer, progress: _Progress, *, gunzip: str) -> None:
    with _tar_chunks(archive, gunzip=gunzip) as chunks:
        stream = _Stream(chunks)
        for name, kind, size, linkname, sparse in _members(stream):
            rel = _relative(archive, name)
            if rel is None:
                continue
            if kind == tarfile.DIRTYPE:
                writer.folder(name, rel)
            elif kind in tarfile.REGULAR_TYPES:
                if sparse is not None:  # the data holds the map's pieces one after the other
                    writer.file(name, rel, (piece for at, n in sparse for piece in stream.pieces(n, at)), size=size)
                elif size <= CHUNK:  # a frame or a mask: one read, one write
                    data = stream.read(size)
                    if len(data) != size:
                        raise tarfile.ReadError("unexpected end of data")
                    writer.file(name, rel, ((0, data),))
                else:
                    writer.file(name, rel, stream.pieces(size))
            elif kind == tarfile.SYMTYPE:
                writer.symlink(name, rel, _link_target(archive, name, rel, linkname))
            elif kind == tarfile.LNKTYPE:
                if linkname.startswith("/") or ".." in linkname.split("/"):
                    raise _refuse(archive, name, f"is a hard link to {linkname!r}, outside the archive's folder")
                source = _relative(archive, linkname)
                if source is None:
                    raise _refuse(archive, name, "is a hard link to the archive's root")
                writer.hardlink(name, rel, source)
            else:
                raise _refuse(archive, name, "is a device or FIFO, not a file, folder or link")
            progress.to(stream.position)
        for _ in chunks:  # the rest: end-of-archive padding, and the gzip trailer, whose CRC is checked
            pass
        progress.to(stream.position)


def _in_order(blocks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for block in blocks:
        yield offset, block
        offset += len(block)


def _extract_zip(archive: Path, writer: _Writer, progress: _Progress) -> None:
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():  # the whole list is known up front: check it all before writing
            rel = _relative(archive, info.filename)
            if rel is None:
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8", errors="surrogateescape")
                plan.append((info, rel, _link_target(archive, info.filename, rel, target)))
            else:
                plan.append((info, rel, None))
        done = 0
        for info, rel, target in plan:
            if target is not None:
                writer.symlink(info.filename, rel, target)
            elif info.is_dir():
                writer.folder(info.filename, rel)
            else:
                with zf.open(info) as src:
                    writer.file(info.filename, rel, _in_order(iter(lambda: src.read(CHUNK), b"")))
            done += info.compress_size
            progress.to(done)


def _sha256(path: Path, *, progress: bool) -> str:
    bar = _Progress(path, path.stat().st_size, enabled=progress, desc=f"SHA256 {path.name}")
    try:
        return file_sha256(path, chunk=4 * CHUNK, on_block=lambda n: bar.to(bar.done + n))
    finally:
        bar.close()


def _merge(src: Path, dst: Path) -> None:
    """Move ``src``'s entries into the folder ``dst``: same-named folders merge, files are replaced."""
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge(Path(entry.path), target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry.path, target)
    os.rmdir(src)


def _marker_matches(spec: Archive, st: os.stat_result) -> bool:
    try:
        mark = json.loads(spec.marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(mark, dict) and mark.get("size") == st.st_size and mark.get("mtime_ns") == st.st_mtime_ns
            and spec.dest.is_dir() and not spec.partial.exists())


def _clear_stale(spec: Archive) -> None:
    """Remove what a killed run left: the ``.partial`` folder and temporary marker files."""
    if spec.partial.exists() or spec.partial.is_symlink():
        log.info("%s: removing %s left by an interrupted run; extracting again", spec.path, spec.partial)
        if spec.partial.is_symlink() or not spec.partial.is_dir():
            spec.partial.unlink()
        else:
            shutil.rmtree(spec.partial)
    for tmp in spec.marker.parent.glob(f".{spec.marker.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def extract(spec: Archive, *, verify: bool = True, progress: bool = False,
            gunzip: str = "python") -> ArchiveResult:
    """Extract one archive into ``spec.partial``, then move it to ``spec.dest`` and write the marker.

    Args:
        spec: the archive and its destination (`archive_spec`).
        verify: check the published SHA256 first (ReVOS ``JPEGImages.zip``).
        progress: show a progress bar in bytes of the archive.
        gunzip: what decompresses a ``.tar.gz``: ``"python"`` (zlib, in this process) or a program
            such as ``"pigz"`` or ``"gzip"``, run as ``-dc`` in a second process.

    Raises:
        DataError: the sum does not match (nothing written), the archive is corrupt, or a member
            is unsafe (the ``.partial`` is removed; nothing is written outside its folder).
    """
    archive = spec.path
    st = archive.stat()
    _clear_stale(spec)
    if verify and spec.sha256 is not None:
        got = _sha256(archive, progress=progress)
        if got != spec.sha256:
            raise DataError(f"SHA256 is {got}, the release publishes {spec.sha256}: the download is corrupt or "
                            "of another release; download it again, or pass --no-verify to extract it anyway "
                            "(nothing was extracted)", file=archive)
    start = time.perf_counter()
    spec.partial.mkdir(parents=True)
    writer = _Writer(archive, spec.partial)
    bar = _Progress(archive, st.st_size, enabled=progress)
    try:
        try:
            if archive.suffix == ".zip":
                try:
                    _extract_zip(archive, writer, bar)
                except (NotImplementedError, RuntimeError) as err:  # deflate64, encryption
                    raise DataError(f"cannot be read by Python's zipfile ({err}): extract it with `unzip` or "
                                    "7-Zip into the folder named after it", file=archive) from err
            else:
                _extract_tar(archive, writer, bar, gunzip=gunzip)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise DataError(f"is corrupt or truncated ({err})", file=archive) from err
        with os.scandir(spec.partial) as it:
            entries = list(it)
        top = None
        source = spec.partial
        if len(entries) == 1 and entries[0].name in spec.tops and entries[0].is_dir(follow_symlinks=False):
            top = entries[0].name
            source = spec.partial / top
        writer.check_links(source)
        if spec.dest.exists() or spec.dest.is_symlink():
            log.info("%s: merging into the existing %s", archive, spec.dest)
            _merge(source, spec.dest)
        else:
            os.replace(source, spec.dest)
        if spec.partial.exists():
            os.rmdir(spec.partial)
    except BaseException:
        shutil.rmtree(spec.partial, ignore_errors=True)
        raise
    finally:
        bar.close()
    atomic_write_json(spec.marker, {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                    "dest": spec.dest.name, "top": top, "files": writer.files})
    seconds = time.perf_counter() - start
    log.info("%s: %d file(s), %d bytes into %s in %.1f s", archive, writer.files, writer.bytes, spec.dest, seconds)
    return ArchiveResult(archive, spec.dest, "extracted", files=writer.files, bytes=writer.bytes, seconds=seconds,
                         top=top)


def prepare(root: str | Path, *, remove_archives: bool = False, verify: bool = True,
            progress: bool = False) -> PrepareReport:
    """Extract every archive of a release under ``root`` in place (see the module docstring).

    Args:
        root: a dataset root (or one split folder) holding the archives as downloaded.
        remove_archives: delete each archive once extracted (its marker stays, so that
            `longrvos download` does not fetch it again).
        verify: check published SHA256 sums before extracting (ReVOS ``JPEGImages.zip``).
        progress: progress bars in bytes.

    Raises:
        LongRVOSError: ``root`` is no folder. DataError: see `extract`.

    Example:
        >>> report = prepare("data/long_rvos")
        >>> [(a.archive.name, a.action) for a in report.archives][:2]
        [('Annotations.tar.gz', 'extracted'), ('JPEGImages.tar.gz', 'extracted')]
    """
    root = Path(root)
    if not root.is_dir():
        raise LongRVOSError(f"{root}: no such folder")
    report = PrepareReport(root)
    for spec in find_archives(root):
        st = spec.path.stat()
        if _marker_matches(spec, st):
            log.info("%s: already extracted into %s (marker matches); skipped", spec.path, spec.dest)
            result = ArchiveResult(spec.path, spec.dest, "skipped")
        else:
            result = extract(spec, verify=verify, progress=progress)
        if remove_archives:
            spec.path.unlink()
            result.removed = True
        report.archives.append(result)
    return report


def prepared_removed(root: str | Path) -> list[Path]:
    """Archives (as paths under ``root``) that `prepare` extracted and then removed.

    Their markers stay beside the extracted folders so that `longrvos download` skips them.
    """
    root = Path(root)
    out = []
    for folder in _search_dirs(root) if root.is_dir() else []:
        for marker in folder.glob(".*.prepared"):
            try:
                mark = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(mark, dict) or not isinstance(mark.get("archive"), str):
                continue
            archive = folder / mark["archive"]
            spec = archive_spec(archive)
            if spec is not None and not archive.exists() and spec.dest.is_dir():
                out.append(archive)
    return sorted(out)


