"""Loaders: one module per source format, chosen by id or by content detection.

Every module in `LOADERS` exposes ``NAME``, ``detect(path) -> Detection`` and
``load(path, *, split=None, on_error="raise") -> Dataset``; ``path`` is a dataset root
or one split folder.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ..errors import FormatDetectionError, LongRVOSError, OnError
from .base import Dataset, Detection, SplitReader

# Literal registry, imported lazily (nothing is computed at import time).
LOADERS: dict[str, str] = {
    "long_rvos": "longrvos_data.loaders.long_rvos",
    "lvos": "longrvos_data.loaders.lvos",
    "mevis": "longrvos_data.loaders.mevis",
    "revos": "longrvos_data.loaders.revos",
    "ref_youtube_vos": "longrvos_data.loaders.ref_youtube_vos",
    "ytvis": "longrvos_data.loaders.ytvis",
    "davis": "longrvos_data.loaders.davis",
    "sola": "longrvos_data.loaders.sola",
    "hf": "longrvos_data.loaders.hf",
}


def get_loader(format: str) -> ModuleType:
    """The loader module for a format id; raises with the known ids when unknown."""
    if format not in LOADERS:
        raise LongRVOSError(f"unknown format {format!r}; known formats: {', '.join(LOADERS)}")
    return importlib.import_module(LOADERS[format])


def detect_all(path: str | Path) -> list[Detection]:
    """Every format's detection for ``path``, best first."""
    path = Path(path)
    found = [get_loader(name).detect(path) for name in LOADERS]
    return sorted(found, key=lambda d: -d.confidence)


def detect_format(path: str | Path) -> str:
    """The format id of the dataset at ``path`` (a root or one split folder).

    Raises:
        FormatDetectionError: nothing matches, or two formats match equally; the message
            lists each format's reasons.

    Example:
        >>> detect_format("data/mevis")
        'mevis'
    """
    path = Path(path)
    if not path.exists():
        raise FormatDetectionError(f"{path}: no such file or folder")
    found = detect_all(path)
    best = found[0]
    if best.confidence > 0 and (len(found) == 1 or found[1].confidence < best.confidence):
        return best.format
    lines = [f"  {d.format} ({d.confidence:.2f}): {'; '.join(d.reasons) or 'no reason given'}" for d in found]
    what = "matches several formats equally" if best.confidence > 0 else "matches no known format"
    raise FormatDetectionError(f"{path} {what}; pass --format. Reasons:\n" + "\n".join(lines))


def load(path: str | Path, *, format: str | None = None, split: str | None = None,
         on_error: OnError = "raise") -> Dataset:
    """Open a dataset lazily: metadata is parsed, masks are decoded only when asked for.

    Args:
        path: dataset root or one split folder.
        format: a format id (`LOADERS`); detected from the content when None.
        split: read only this split (e.g. ``"valid"``, ReVOS ``"train_sub"``).
        on_error: ``"raise"`` stops at the first bad record; ``"skip"`` logs it, records
            it in ``dataset.problems`` and leaves the video out.

    Example:
        >>> ds = load("data/long_rvos", split="valid")
        >>> video = next(iter(ds["valid"]))
    """
    fmt = format or detect_format(path)
    dataset = get_loader(fmt).load(Path(path), split=split, on_error=on_error)
    for reader in dataset.splits.values():
        reader.opened_from = Path(path)  # so worker processes can reopen the same split
    return dataset


__all__ = ["LOADERS", "Dataset", "Detection", "SplitReader", "detect_all", "detect_format", "get_loader", "load"]
