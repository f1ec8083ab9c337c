"""Loaders: one module per source format, chosen by id or by content detection.

Every module in `LOADERS` exposes ``NAME``, ``detect(path) -> Detection`` and
``load(path, *, split=None, on_error="raise", **options) -> Dataset``; ``path`` is a
dataset root or one split folder.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import prepare as _prepare
from ..errors import FormatDetectionError, LongRVOSError, OnError
from .base import Dataset, Detection, SplitReader, is_present

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
    "project": "longrvos_data.loaders.project",
}


def get_loader(format: str) -> ModuleType:
    """The loader module for a format id; raises with the known ids when unknown."""
    if format not in LOADERS:
        raise LongRVOSError(f"unknown format {format!r}; known formats: {', '.join(LOADERS)}")
    return importlib.import_module(LOADERS[format])


def detect_all(path: str | Path) -> list[Detection]:
    """Every format's detection for ``path`` from content probes, best first."""
    path = Path(path)
    found = [get_loader(name).detect(path) for name in LOADERS]
    return sorted(found, key=lambda d: -d.confidence)


# -- detection by file names ---------------------------------------------------------------------
_LVOS_META = re.compile(r"^(?P<split>[^._][^/]*?)_(meta|expression_meta|meta_attributes?)\.json$")
_REVOS_META = re.compile(r"^meta_expressions_.+_\.json$")


def _dirs(path: Path) -> list[Path]:
    """``path``'s sub-folders, hidden ones (``.cache``, ``.git``) left out."""
    try:
        with os.scandir(path) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _names(path: Path) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if not e.name.startswith("."))
    except OSError:
        return []


def _has_object_folders(annotations: Path) -> bool:
    """Whether the first video folder of ``Annotations/`` holds folders (Long-RVOS: one per object)."""
    for video in _dirs(annotations)[:1]:
        return bool(_dirs(video))
    return False


def _names_in(folder: Path, root: Path) -> dict[str, str]:
    """Formats whose defining file names ``folder`` (the root or one of its split folders) holds."""
    found: dict[str, str] = {}
    rel = folder.name if folder != root else "."
    if is_present(folder / "mask_dict.json") and (is_present(folder / "meta_expressions.json")
                                                 or is_present(folder / "meta_expressions_v2.json")):
        found["mevis"] = f"{rel}/mask_dict.json beside meta_expressions"
    for name in ("meta_expressions_v2.json", "meta_expressions_v2_release.json"):
        if is_present(folder / name):
            found.setdefault("mevis", f"{rel}/{name} (MeViS v2)")
    revos = [n for n in _names(folder) if _REVOS_META.match(n)]
    if revos:
        found["revos"] = f"{rel}/{revos[0]}"
    if is_present(folder / "meta_expressions.json") and _has_object_folders(folder / "Annotations"):
        found["long_rvos"] = f"{rel}/Annotations/<video>/<object>/ folders beside meta_expressions.json"
    lvos = [n for n in _names(folder) if _LVOS_META.match(n)]
    if lvos:
        found["lvos"] = f"{rel}/{lvos[0]}"
    if is_present(folder / "meta_davis.json"):
        found["davis"] = f"{rel}/meta_davis.json"
    if (folder / "sam2_masklets").is_dir():
        found["sola"] = f"{rel}/sam2_masklets/"
    if is_present(folder / "instances.json"):
        found["ytvis"] = f"{rel}/instances.json"
    return found


def match_names(path: str | Path) -> dict[str, str]:
    """``{format: why}`` for the formats whose defining file names are at ``path`` (a root or
    one split folder), before any file is opened.

    The names: ``mask_dict.json`` beside ``meta_expressions[_v2].json``, or the MeViS v2
    names ``meta_expressions_v2[_release].json`` -> mevis; ``meta_expressions_<split>_.json``
    -> revos; ``Annotations/<video>/<object>/`` folders beside ``meta_expressions.json`` ->
    long_rvos; ``<split>_meta.json`` (or the caption and attribute files), in a split
    folder or beside it -> lvos; ``meta_expressions/<split>/meta_expressions.json`` ->
    ref_youtube_vos; ``meta_davis.json``, ``sam2_masklets/``, ``instances.json`` or
    ``annotations/<split>.json`` beside ``<split>/JPEGImages`` -> this package's
    interchange formats; a ``README.md`` with this package's card section beside ``data/``
    -> hf. Hidden entries (``.cache/``, ``.gitattributes``) are ignored, and so is a
    ``README.md`` without that section (the Hub's own card).

    Example:
        >>> match_names("data/mevis")
        {'mevis': 'train/mask_dict.json beside meta_expressions'}
    """
    path = Path(path)
    if not path.is_dir():
        return {}
    found = _names_in(path, path)
    for folder in _dirs(path):
        for fmt, why in _names_in(folder, path).items():
            found.setdefault(fmt, why)
    for parent_meta in (path.parent / f"{path.name}_meta.json", path.parent / f"{path.name}_expression_meta.json"):
        if is_present(parent_meta):
            found.setdefault("lvos", f"../{parent_meta.name}")
    for base in (path, path.parent):
        metas = base / "meta_expressions"
        if any(is_present(d / "meta_expressions.json") for d in _dirs(metas)):
            found.setdefault("ref_youtube_vos", f"{'.' if base == path else '..'}/meta_expressions/<split>/"
                                                "meta_expressions.json")
    annotations = path / "annotations"
    if any((path / Path(n).stem / "JPEGImages").is_dir() for n in _names(annotations) if n.endswith(".json")):
        found.setdefault("ytvis", "annotations/<split>.json beside <split>/JPEGImages")
    from .hf import has_card_section
    if has_card_section(path):
        found["hf"] = "README.md with the longrvos card section"
    return found


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
    _prepare.check_unpacked(path)  # packed archives or a .partial extraction: run `longrvos prepare`
    named = match_names(path)
    if len(named) == 1:
        return next(iter(named))  # its loader reports what is wrong inside, naming file, video and field
    found = detect_all(path)
    if named:
        found = [d for d in found if d.format in named]
    best = found[0]
    if best.confidence > 0 and (len(found) == 1 or found[1].confidence < best.confidence):
        return best.format
    from ..sidecar import check_complete
    check_complete(path)  # a killed conversion's output: say so rather than list every format's reasons
    lines = []
    for d in found:
        reasons = ([f"by name: {named[d.format]}"] if d.format in named else []) + list(d.reasons)
        lines.append(f"  {d.format} ({d.confidence:.2f}): {'; '.join(reasons) or 'no reason given'}")
    what = "matches several formats equally" if best.confidence > 0 or named else "matches no known format"
    raise FormatDetectionError(f"{path} {what}; pass --format. Reasons:\n" + "\n".join(lines))


def load(path: str | Path, *, format: str | None = None, split: str | None = None,
         on_error: OnError = "raise", **options: Any) -> Dataset:
    """Open a dataset lazily: metadata is parsed, masks are decoded only when asked for.

    Args:
        path: dataset root or one split folder.
        format: a format id (`LOADERS`); detected from the content when None.
        split: read only this split (e.g. ``"valid"``, ReVOS ``"train_sub"``).
        on_error: ``"raise"`` stops at the first bad record; ``"skip"`` logs it, records
            it in ``dataset.problems`` and leaves the video out.
        **options: format-specific reading options (``project``: ``provenance``, ``status``);
            a format that takes none refuses them.

    Example:
        >>> ds = load("data/long_rvos", split="valid")
        >>> video = next(iter(ds["valid"]))
    """
    from ..sidecar import check_complete  # late: sidecar imports loaders.base

    check_complete(path, split=split)  # a killed or running conversion is not a smaller dataset
    _prepare.check_unpacked(path)  # packed archives or a .partial extraction: run `longrvos prepare`
    fmt = format or detect_format(path)
    options = {k: v for k, v in options.items() if v is not None}
    loader = get_loader(fmt)
    unknown = sorted(set(options) - set(inspect.signature(loader.load).parameters))
    if unknown:
        raise LongRVOSError(f"{path}: the {fmt} format takes no option(s) {', '.join(unknown)}")
    dataset = loader.load(Path(path), split=split, on_error=on_error, **options)
    for reader in dataset.splits.values():
        reader.opened_from = Path(path)  # so worker processes can reopen the same split
        reader.load_options = dict(options)
    return dataset


__all__ = ["LOADERS", "Dataset", "Detection", "SplitReader", "detect_all", "detect_format", "get_loader", "load",
           "match_names"]
