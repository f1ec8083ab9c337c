"""Small file-system helpers: atomic writes, cheap frame copies, one writer per output."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Literal, Sequence

from .errors import LongRVOSError

FrameMode = Literal["hardlink", "copy", "symlink"]
FRAME_MODES: tuple[str, ...] = ("hardlink", "copy", "symlink")


class OutputError(LongRVOSError):
    """Writing an output failed (disk full, file too large, no permission): names the file."""


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """``exc``, raised while writing ``path``, as an `OutputError` naming ``path``."""
    what = exc.strerror or errno.errorcode.get(exc.errno or 0) or str(exc)
    return OutputError(f"{path}: cannot write: {what}")


def _writing(exc: OSError, *paths: str | Path) -> bool:
    """Whether ``exc`` is about the file being written (an error of the open handle names no file)."""
    return exc.filename is None or str(exc.filename) in {str(p) for p in paths}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it into place on success.

    A failure (or a kill) never leaves a partial file under the final name.

    Example:
        >>> with atomic_open(out / "mask_dict.json", "w", encoding="utf-8") as fh:
        ...     fh.write("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if _writing(exc, tmp, path):
            raise output_error(path, exc) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path, *, chunk: int = 4 << 20, on_block: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of a file, read in chunks (never whole); ``on_block(n)`` after each block (progress bars).

    Example:
        >>> file_sha256("ReVOS/mask_dict.json") == ReVOSPaths.SHA256["mask_dict.json"]
        True
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            if on_block is not None:
                on_block(len(block))
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def report_paths(out: str | Path, kinds: Sequence[str] = ("json", "csv", "md")) -> dict[str, Path]:
    """``{kind: path}`` of a report's files side by side: ``out`` (``R.json`` or ``R``) gives
    ``R.json``, ``R.csv``, ``R.md``..."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() == ".json" else out
    return {k: stem.with_name(f"{stem.name}.{k}") for k in kinds}


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON (UTF-8) and write it atomically."""
    atomic_write_bytes(path, json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8"))


def link_or_copy(src: str | Path, dst: str | Path, mode: FrameMode = "hardlink") -> None:
    """Put ``src`` at ``dst``: a hard link (``hardlink``; a copy across file systems), a copy, or a symlink.

    Frames are never re-encoded: the bytes stay the source's. A hard-linked file is the
    source's file: editing it in place changes the source.
    """
    dst = Path(dst)
    if mode not in FRAME_MODES:
        raise ValueError(f"frame mode must be one of {', '.join(FRAME_MODES)}, not {mode!r}")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dst):
            dst.unlink()
        if mode == "symlink":
            os.symlink(os.path.abspath(src), dst)
            return
        if mode == "hardlink":
            try:
                os.link(src, dst)
                return
            except OSError:
                pass  # another file system (or links not allowed): copy
        tmp = dst.with_name(f".{dst.name}.tmp")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        if str(exc.filename) == str(src) and exc.filename2 is None:
            raise  # the source cannot be read: the caller's error
        raise output_error(dst, exc) from None


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[bool]:
    """Hold an ``fcntl.flock`` on ``path`` (created if missing) for the block; yields False at once,
    without waiting, when another process holds it. The OS releases it when the process dies.

    Example:
        >>> with exclusive_lock(out / ".longrvos.lock") as mine:
        ...     if not mine: raise LongRVOSError("another conversion is writing there")
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_dir(dst: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``dst`` that replaces ``dst`` only if the block succeeds.

    Writers fill the yielded folder; on success an existing ``dst`` is renamed aside and
    removed, so a failed write leaves the previous ``dst`` (or nothing) and no half-written
    folder.

    Example:
        >>> with staged_dir(out / "valid") as tmp:
        ...     atomic_write_json(tmp / "meta_expressions.json", meta)
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.replace(dst, old / dst.name)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
