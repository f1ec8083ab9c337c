"""Small file-system helpers: atomic writes and cheap frame copies."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON (UTF-8) and write it atomically."""
    atomic_write_bytes(path, json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8"))


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` when both are on one file system, else copy it.

    Frames are never re-encoded: the bytes stay the source's.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


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
