"""ReVOS: one frame folder and one mask_dict for every split, per-split expression files.

Layout (the dataset root; there are no split folders)::

    ReVOS/
      JPEGImages/<video_id>/<frame>.jpg     train and valid share it (or JPEGImages.zip, unextracted)
      mask_dict.json                        {"<anno_id>": [RLE | null per frame]}   (MeViS format)
      mask_dict_foreground.json             {"<video_id>": {"masks_rle": [RLE per frame],
                                                            "foreground_ratio": [float per frame]}}
      meta_expressions_train_.json          note the trailing underscore
      meta_expressions_train_sub_.json      a subset of train
      meta_expressions_valid_.json

``meta_expressions_<split>_.json``::

    {"videos": {"<video_id>": {"height": 720, "width": 1280, "frames": [...],
        "expressions": {"<exp_id>": {"exp": "...", "obj_id": [1], "anno_id": [5], "type_id": 0}}}}}

Records are built as for MeViS (`longrvos_data.loaders.mevis`): a track per anno_id
(``Track(str(anno_id), meta={"obj_id": obj_id})``), an expression's ``track_ids`` are
its anno_ids. ``type_id`` gives the kind: 0 referring, 1 reasoning, 2 no-target
(``kind_raw`` is the int). A type 2 expression keeps whatever anno_ids it lists, so a
no-target expression may still name tracks; a type 0/1 expression with none is kept as
the source has it, with a warning.

Splits: every ``meta_expressions_<split>_.json`` present. ``train_sub`` is a subset of
``train``: `Dataset.splits` lists it with ``in_totals=False`` (``info`` shows it but does
not add it to totals) unless it is the split asked for.

The foreground masks FG_t (the union of all of a video's objects per frame, which the
official R metric divides by) are not put in `Video.meta`; read them lazily with
`foreground` (``mask_dict_foreground.json`` is indexed like ``mask_dict.json``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import masks as _masks
from ..errors import DataError, LongRVOSError, OnError, Problem, ProblemLog
from ..fsutil import file_sha256
from ..schema import Video
from .base import Dataset, Detection, SplitReader, is_present
from .mask_dict import check_rle_list, open_index
from .mevis import MaskDictSplit, _peek_videos

log = logging.getLogger("longrvos_data")

NAME = "revos"


class ReVOSPaths:
    """File names of the ReVOS release and the SHA256 sums its README publishes."""

    FRAMES = "JPEGImages"
    FRAMES_ZIP = "JPEGImages.zip"
    MASK_DICT = "mask_dict.json"
    FOREGROUND = "mask_dict_foreground.json"
    META_PREFIX = "meta_expressions_"
    META_SUFFIX = "_.json"
    SPLITS = ("train", "valid", "train_sub")
    SUBSETS = ("train_sub",)
    KINDS = {0: "referring", 1: "reasoning", 2: "no-target"}
    # From the ReVOS README (https://github.com/cilinyan/ReVOS-api), ``shasum -a 256 ReVOS/*``.
    SHA256 = {
        "JPEGImages.zip": "1844db76c3075deb95034935a8208ba459272784242ec39de9287c66a4c22f07",
        "mask_dict.json": "e9b4310661495ddd47dedcac1e289621cf8f5dff89c0bb8b65f7699f748d5cff",
        "mask_dict_foreground.json": "05d9be5d7bbed03b216a457274022ad1c9e683b4ffdc32b19c60c5e797fd8f01",
        "meta_expressions_train_.json": "3917dfba8725d080c8658dc43ad4a84cf41ce51438acfaee70bef5aa0310417a",
        "meta_expressions_train_sub_.json": "e171028757d8ec75bea33a661c38c288ecdafdb6c7bc64bb9e14edb97e2e5ade",
        "meta_expressions_valid_.json": "127b975e78effef6033846e68989dcf79c692d644dd07c835b723cea700d4c2d",
    }
    # Another revision of the same README lists different sums for the expression files
    # (a re-release of the annotations); a file matching one of these is reported as a
    # warning, not as corruption.
    SHA256_OTHER_REVISION = {
        "meta_expressions_train_.json": "3fbc3d82c36f109ce6d01d8750ad0a4f803ab7357a8f7a2d94d6a312a8baaf36",
        "meta_expressions_train_sub_.json": "81f6fc809c3a024fc0356bf5f2d77374b763e19802a44b90213e4641b37fbbb9",
        "meta_expressions_valid_.json": "291d1854eb860ebac5dd3870451bfc9a2bf002765efabf39bf5496bcb8e1f4b6",
    }

    @classmethod
    def meta(cls, split: str) -> str:
        return f"{cls.META_PREFIX}{split}{cls.META_SUFFIX}"


def meta_files(root: Path) -> dict[str, Path]:
    """``{split: meta file}`` for every ``meta_expressions_<split>_.json`` in ``root``.

    Example:
        >>> list(meta_files(Path("data/ReVOS")))
        ['train', 'valid', 'train_sub']
    """
    found: dict[str, Path] = {}
    try:
        entries = sorted(root.iterdir())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return found
    for p in entries:
        n = p.name
        if (is_present(p) and n.startswith(ReVOSPaths.META_PREFIX) and n.endswith(ReVOSPaths.META_SUFFIX)
                and len(n) > len(ReVOSPaths.META_PREFIX) + len(ReVOSPaths.META_SUFFIX)):
            found[n[len(ReVOSPaths.META_PREFIX):-len(ReVOSPaths.META_SUFFIX)]] = p
    order = {name: i for i, name in enumerate(ReVOSPaths.SPLITS)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


class ReVOSSplit(MaskDictSplit):
    """One ReVOS split: its expression file over the shared frames and mask_dict."""

    format = NAME
    dataset = NAME
    EXPRESSION_KEYS = ("exp", "obj_id", "anno_id", "type_id")
    RLE_LISTS = True  # a mask_dict item may be a list of RLEs: VISA's loader sums them

    def _kind(self, exp: dict, *, track_ids: tuple[str, ...], withheld: bool, vid: str, where: str) -> tuple[str, Any]:
        type_id = exp.get("type_id")
        if isinstance(type_id, bool) or type_id not in ReVOSPaths.KINDS:
            if "type_id" not in exp:
                raise DataError("required key 'type_id' is missing", file=self.meta_file, video=vid,
                                field=f"{where}.type_id")
            raise DataError(f"type_id must be 0 (referring), 1 (reasoning) or 2 (no-target), got {type_id!r}",
                            file=self.meta_file, video=vid, field=f"{where}.type_id")
        kind = ReVOSPaths.KINDS[type_id]
        if kind != "no-target" and not track_ids and not withheld:
            self.problems.warning(f"a {kind} expression (type_id {type_id}) names no object",
                                  file=self.meta_file, video=vid, field=where)
        return kind, type_id

    def foreground(self, video_id: str) -> "Foreground | None":
        """The foreground masks of one video of this split (see `foreground`)."""
        return foreground(self.video(video_id))


@dataclass(frozen=True)
class Foreground:
    """One video's foreground masks: per frame, the union of all its objects.

    Attributes:
        video_id: the video.
        height, width: frame size.
        rles: per frame an RLE, a list of RLEs (their union is meant), or None (empty).
        ratios: ``foreground_ratio`` per frame as the file gives it, or None.
    """

    video_id: str
    height: int
    width: int
    rles: tuple[Any, ...]
    ratios: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.rles)

    def rle(self, index: int) -> dict | None:
        """Frame ``index``'s foreground as one RLE, or None when the frame has none."""
        item = self.rles[index]
        if item is None:
            return None
        if isinstance(item, list):
            return _masks.union(item)
        return item

    def mask(self, index: int) -> np.ndarray:
        """Frame ``index``'s foreground, ``(H, W) bool`` (all False when absent)."""
        rle = self.rle(index)
        if rle is None:
            return np.zeros((self.height, self.width), dtype=bool)
        return _masks.decode(rle)


def foreground(video: Video, *, path: str | Path | None = None) -> Foreground | None:
    """Read one video's entry of ``mask_dict_foreground.json`` (FG_t of the R metric).

    Only that video's bytes are read, through the same on-disk index as the masks.

    Args:
        video: a ReVOS video (its ``source_file`` locates the dataset root).
        path: the foreground file, when it is not beside the expression file.

    Returns:
        The `Foreground`, or None when the file does not exist (compute the union of the
        video's tracks instead).

    Raises:
        DataError: the file lacks the video, or its entry is malformed (wrong frame count,
            an RLE of the wrong size); names the file, the video and the field.

    Example:
        >>> fg = foreground(ds["valid"].video("JPEGImages_0001"))
        >>> fg.mask(0).shape
        (720, 1280)
    """
    if path is None:
        if video.source_file is None:
            raise DataError("cannot locate mask_dict_foreground.json: the video has no source file",
                            video=video.video_id, field="foreground")
        path = Path(video.source_file).parent / ReVOSPaths.FOREGROUND
    path = Path(path)
    if not path.is_file():
        return None
    vid = video.video_id
    field = f"mask_dict_foreground[{vid}]"
    try:
        value = open_index(path).read_many([vid], video=vid, field="mask_dict_foreground[{key}]")[vid]
    except KeyError:
        raise DataError("the video has no entry", file=path, video=vid, field=field) from None
    if not isinstance(value, dict) or "masks_rle" not in value:
        raise DataError("expected an object with 'masks_rle'", file=path, video=vid, field=field)
    rles = check_rle_list(value["masks_rle"], file=path, video=vid, field=f"{field}.masks_rle",
                          num_frames=video.num_frames, height=video.height, width=video.width, allow_lists=True)
    ratios = value.get("foreground_ratio")
    if ratios is not None:
        if (not isinstance(ratios, list) or len(ratios) != video.num_frames
                or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios)):
            raise DataError(f"expected {video.num_frames} number(s)", file=path, video=vid,
                            field=f"{field}.foreground_ratio")
        ratios = tuple(float(r) for r in ratios)
    return Foreground(vid, video.height, video.width, tuple(rles), ratios)


# -- detection and loading -------------------------------------------------------------------
def detect(path: str | Path) -> Detection:
    """How well ``path`` matches a ReVOS root: ``meta_expressions_<split>_.json`` with ``type_id``.

    Example:
        >>> detect("data/ReVOS").confidence
        1.0
    """
    path = Path(path)
    if not path.is_dir():
        return Detection(NAME, 0.0, (f"{path} is not a folder",))
    files = meta_files(path)
    if not files:
        return Detection(NAME, 0.0, ("no meta_expressions_<split>_.json (e.g. meta_expressions_valid_.json) here",))
    split, meta = next(iter(files.items()))
    reasons = [f"found {', '.join(p.name for p in files.values())}"]
    exps: list = []
    try:
        for _, entry in _peek_videos(meta):
            e = entry.get("expressions") if isinstance(entry, dict) else None
            if isinstance(e, dict):
                exps.extend(x for x in e.values() if isinstance(x, dict))
            if exps:
                break
    except Exception as exc:  # ijson's own error types
        if not exps:
            return Detection(NAME, 0.3, (*reasons, f"{meta.name} could not be parsed ({type(exc).__name__})"))
    if not exps:
        return Detection(NAME, 0.3, (*reasons, f"{meta.name} has no expressions in its first videos"))
    if not any("type_id" in x for x in exps):
        return Detection(NAME, 0.3, (*reasons, f"{meta.name}: expressions carry no type_id"))
    reasons.append(f"{meta.name}: expressions carry type_id")
    if (path / ReVOSPaths.FRAMES).is_dir() or (path / ReVOSPaths.FRAMES_ZIP).is_file():
        reasons.append("shared JPEGImages found")
    return Detection(NAME, 1.0, tuple(reasons))


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open a ReVOS root (or one ``meta_expressions_<split>_.json`` in it); masks stay lazy.

    Args:
        path: the folder holding ``JPEGImages/``, ``mask_dict.json`` and the expression files.
        split: read only this split (``"train"``, ``"valid"``, ``"train_sub"``).
        on_error: ``"raise"`` or ``"skip"``.

    Raises:
        DataError: no expression file, or an unknown split.

    Example:
        >>> ds = load("data/ReVOS")
        >>> [(s.split, s.in_totals) for s in ds]
        [('train', True), ('valid', True), ('train_sub', False)]
    """
    path = Path(path)
    if path.is_file():
        name = path.name
        if not (name.startswith(ReVOSPaths.META_PREFIX) and name.endswith(ReVOSPaths.META_SUFFIX)):
            raise DataError("not a ReVOS expression file (meta_expressions_<split>_.json)", file=path)
        file_split = name[len(ReVOSPaths.META_PREFIX):-len(ReVOSPaths.META_SUFFIX)]
        if split is not None and split != file_split:
            raise LongRVOSError(f"{path} holds split {file_split!r}, not {split!r}")
        path, split = path.parent, file_split
    files = meta_files(path)
    if not files:
        raise DataError("no meta_expressions_<split>_.json here", file=path)
    if split is not None:
        if split not in files:
            raise DataError(f"no split {split!r}; found {sorted(files)}", file=path, field="split")
        files = {split: files[split]}
    if not (path / ReVOSPaths.FRAMES).is_dir() and (path / ReVOSPaths.FRAMES_ZIP).is_file():
        log.warning("%s: %s is not extracted; frames cannot be read until it is", path, ReVOSPaths.FRAMES_ZIP)
    problems = ProblemLog(on_error)
    splits: dict[str, SplitReader] = {
        name: ReVOSSplit(path, name, problems=problems, meta_file=meta, mask_dict=path / ReVOSPaths.MASK_DICT,
                         frames_root=path / ReVOSPaths.FRAMES,
                         in_totals=name not in ReVOSPaths.SUBSETS or split == name)
        for name, meta in files.items()}
    return Dataset(format=NAME, root=path, splits=splits, version=None, problems=problems)


# -- validate hook -------------------------------------------------------------------------------
def validate_extra(path: Path, *, split: str | None, checksums: bool) -> list[Problem]:
    """ReVOS checks beyond the per-video ones: the unextracted archive and, with
    ``checksums``, the SHA256 sums the release publishes.

    Files: ``JPEGImages.zip`` (only if present), ``mask_dict.json``,
    ``mask_dict_foreground.json`` and the expression files (only ``split``'s when given).
    A mismatch is an error naming the file and both sums; a missing file a warning.

    Example:
        >>> [str(p) for p in validate_extra(Path("ReVOS"), split=None, checksums=True)]
        []
    """
    path = Path(path)
    root = path.parent if path.is_file() else path
    problems: list[Problem] = []
    if not (root / ReVOSPaths.FRAMES).is_dir():
        if (root / ReVOSPaths.FRAMES_ZIP).is_file():
            problems.append(Problem("error", f"{ReVOSPaths.FRAMES_ZIP} is not extracted; unzip it here",
                                    str(root / ReVOSPaths.FRAMES)))
    if not checksums:
        return problems
    names: Sequence[str] = [ReVOSPaths.FRAMES_ZIP, ReVOSPaths.MASK_DICT, ReVOSPaths.FOREGROUND]
    metas = [n for n in ReVOSPaths.SHA256 if n.startswith(ReVOSPaths.META_PREFIX)]
    if split is not None:
        metas = [n for n in metas if n == ReVOSPaths.meta(split)]
    for name in [*names, *metas]:
        file = root / name
        expected = ReVOSPaths.SHA256[name]
        if not file.is_file():
            if name != ReVOSPaths.FRAMES_ZIP:
                problems.append(Problem("warning", "file is missing; its SHA256 was not checked", str(file)))
            continue
        actual = file_sha256(file)
        if actual == expected:
            continue
        if ReVOSPaths.SHA256_OTHER_REVISION.get(name) == actual:
            problems.append(Problem("warning", f"SHA256 {actual} matches another revision of the ReVOS README, "
                                    f"not the current one ({expected})", str(file)))
        else:
            problems.append(Problem("error", f"SHA256 mismatch: expected {expected}, got {actual}", str(file)))
    return problems


__all__ = ["Foreground", "NAME", "ReVOSPaths", "ReVOSSplit", "detect", "foreground", "load", "meta_files",
           "validate_extra"]
