"""MeViS (v1 and v2): per-split ``meta_expressions.json`` plus an RLE ``mask_dict.json``.

Layout (a dataset root, or one split folder)::

    mevis/
      train/    JPEGImages/<video_id>/00000.jpg ...   5-digit names, consecutive from 00000
                meta_expressions.json  (v1)  and/or  meta_expressions_v2.json  (v2)
                mask_dict.json
      valid_u/  (same as train)
      valid/    JPEGImages/...  meta_expressions[_v2].json       no masks, no anno_id

``meta_expressions*.json``::

    {"videos": {"<video_id>": {"vid_id": 0, "frames": ["00000", ...],
        "expressions": {"<exp_id>": {"exp": "...", "obj_id": [0, 2], "anno_id": [17, 19]}}}}}

``mask_dict.json``: ``{"<anno_id>": [RLE | null per listed frame]}`` (see `mask_dict`).

How records are built:

- A track per anno_id: ``Track(track_id=str(anno_id), meta={"obj_id": obj_id})``; an
  expression's ``track_ids`` are its anno_ids (the target is their union). Only objects
  that some expression names are known (the format has no per-video object list).
- Kinds: ``"referring"``; ``"no-target"`` when ``obj_id``/``anno_id`` are empty lists
  (MeViS v2), with ``kind_raw`` holding the empty lists as the source had them.
- Withheld targets (``valid``): an expression without ``anno_id`` names no masks. If it
  has ``obj_id`` values, its tracks are ``"obj<obj_id>"`` (``meta={"obj_id": n}``), so
  that they cannot be mistaken for anno_ids; without them its ``track_ids`` are empty.
  Either way ``kind`` is ``"referring"`` and ``meta["targets_withheld"]`` is True, so
  that an empty ``track_ids`` does not read as no-target. An explicit empty ``obj_id``
  list is no-target only when other expressions of the split do name objects (else the
  lists are placeholders). ``mask_source`` is None when the split has no mask_dict.json.
- Size: ``height``/``width`` from the video's entry when present, else the first frame's
  JPEG header. Other video fields (``vid_id``, ...) go to ``Video.meta`` verbatim, other
  expression fields to ``Expression.meta``.
- Version: ``meta_expressions_v2.json`` (``meta_expressions_v2_release.json`` in the v2
  ``valid`` split) is read when present (``Dataset.version`` "v2");
  ``load(..., version="v1")`` reads ``meta_expressions.json`` instead. With only
  ``meta_expressions.json`` the version is None: the file name is the same in both
  releases and a v1-looking file may be a v2 split without no-target expressions, so
  the loader does not guess.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

from .. import masks as _masks
from ..errors import DataError, LongRVOSError, OnError, ProblemLog
from ..schema import Expression, Frame, RLEMaskSource, Track, Video, check_id
from .base import (Dataset, Detection, SplitReader, is_present, match_frames, read_json, require,
                   require_regular_file)
from .mask_dict import MaskDictIndex, open_index

log = logging.getLogger("longrvos_data")

NAME = "mevis"


class MeViSPaths:
    """File and folder names of the MeViS release."""

    META = "meta_expressions.json"
    META_V2 = "meta_expressions_v2.json"
    # Every name a v2 expression file has, in order of preference: the Hub's ``valid`` split
    # ships ``meta_expressions_v2_release.json`` (the name third-party preparation scripts
    # read; the authors do not state it), the other splits ``meta_expressions_v2.json``.
    META_V2_NAMES = (META_V2, "meta_expressions_v2_release.json")
    MASK_DICT = "mask_dict.json"
    FRAMES = "JPEGImages"
    SPLITS = ("train", "valid_u", "valid")
    VERSIONS = ("v1", "v2")


# -- field parsing shared with ReVOS ------------------------------------------------------------
def int_list(entry: dict, key: str, *, file: Path, video: str, field: str) -> list[int] | None:
    """``entry[key]`` as a list of ints (decimal strings accepted), or None when absent.

    Raises:
        DataError: not a list, or an item that is not an integer.

    Example:
        >>> int_list({"anno_id": [3, "4"]}, "anno_id", file=f, video="v", field="expressions.0.anno_id")
        [3, 4]
    """
    if key not in entry:
        return None
    value = entry[key]
    if not isinstance(value, list):
        raise DataError(f"expected a list of integers, got {type(value).__name__}", file=file, video=video,
                        field=field)
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise DataError(f"expected an integer, got {item!r}", file=file, video=video, field=f"{field}[{i}]")
        try:
            out.append(int(item))
        except ValueError:
            raise DataError(f"expected an integer, got {item!r}", file=file, video=video,
                            field=f"{field}[{i}]") from None
    return out


class MaskDictSplit(SplitReader):
    """One split whose expressions name anno_ids of a ``mask_dict.json`` (MeViS and ReVOS).

    The split's meta file is parsed whole on first use (a few MB); masks stay on disk
    and are read per video through the shared `MaskDictIndex`.

    Args:
        root: the split folder (MeViS) or dataset root (ReVOS).
        split: split name.
        problems: where ``on_error="skip"`` records skipped videos.
        meta_file: the expressions file.
        mask_dict: the ``mask_dict.json`` holding this split's masks, or None.
        frames_root: folder holding ``<video_id>/<frame>.jpg``.
        in_totals: False for subsets (ReVOS ``train_sub``).
    """

    format = NAME
    dataset = NAME
    VIDEO_KEYS: tuple[str, ...] = ("frames", "expressions", "height", "width")
    EXPRESSION_KEYS: tuple[str, ...] = ("exp", "obj_id", "anno_id")
    RLE_LISTS = False  # whether a mask_dict item may be a list of RLEs (their union)

    def __init__(self, root: Path, split: str, *, problems: ProblemLog, meta_file: Path, mask_dict: Path | None,
                 frames_root: Path, in_totals: bool = True) -> None:
        super().__init__(root, split, problems=problems, in_totals=in_totals)
        self.meta_file = Path(meta_file)
        self.mask_dict = None if mask_dict is None else Path(mask_dict)
        self.frames_root = Path(frames_root)
        self._videos: dict[str, Any] | None = None
        self._names_objects: bool | None = None
        self._warned_no_masks = False

    # -- metadata -------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        if self._videos is None:
            try:
                data = read_json(self.meta_file)
                videos = require(data, "videos", dict, file=self.meta_file, video=None, field="videos")
            except DataError as err:
                self.problems.add(err)  # raises unless on_error="skip"
                videos = {}
            self._videos = videos
        return self._videos

    def video_ids(self) -> list[str]:
        return list(self._meta())

    def metadata_files(self) -> list[Path]:
        """The metadata files this split reads (`validate` checks every id in them)."""
        return [self.meta_file]

    def _split_names_objects(self) -> bool:
        """True when some expression of the split has a non-empty ``obj_id`` or ``anno_id``."""
        if self._names_objects is None:
            self._names_objects = False
            for entry in self._meta().values():
                exps = entry.get("expressions") if isinstance(entry, dict) else None
                for exp in (exps.values() if isinstance(exps, dict) else ()):
                    if isinstance(exp, dict) and any(isinstance(exp.get(k), list) and exp[k]
                                                     for k in ("obj_id", "anno_id")):
                        self._names_objects = True
                        return True
        return self._names_objects

    def index(self) -> MaskDictIndex | None:
        """The split's mask_dict index, or None when the split has no mask_dict.json."""
        if self.mask_dict is None or not self.mask_dict.exists():
            return None
        return open_index(self.mask_dict)

    # -- one video ---------------------------------------------------------------------------
    def _load(self, video_id: str) -> Video:
        file = self.meta_file
        entry = self._meta()[video_id]
        vid = check_id(video_id, file=file, video=video_id, field="video_id")
        if not isinstance(entry, dict):
            raise DataError(f"expected an object, got {type(entry).__name__}", file=file, video=vid,
                            field=f"videos.{vid}")
        names = require(entry, "frames", list, file=file, video=vid, field="frames")
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise DataError(f"expected a frame name (string), got {name!r}", file=file, video=vid,
                                field=f"frames[{i}]")
            check_id(name, file=file, video=vid, field=f"frames[{i}]")
        if not names:
            raise DataError("the video lists no frames", file=file, video=vid, field="frames")
        if names != sorted(names):
            self.problems.warning("frames are not in sorted order; masks are aligned with the listed order",
                                  file=file, video=vid, field="frames")
        paths = match_frames(self.frames_root / vid, names, video=vid, meta_file=file, problems=self.problems)
        frames = [Frame(n, p) for n, p in zip(names, paths)]
        height, width = self._size(entry, vid, frames)
        tracks, expressions, anno_tracks = self._expressions(entry, vid)
        source = self._mask_source(vid, anno_tracks, num_frames=len(frames), height=height, width=width)
        meta = {k: v for k, v in entry.items() if k not in self.VIDEO_KEYS}
        return Video(dataset=self.dataset, split=self.split, video_id=vid, frames=frames, height=height,
                     width=width, tracks=tracks, expressions=expressions, fps=None, meta=meta,
                     mask_source=source, source_file=str(file))

    def _size(self, entry: dict, vid: str, frames: list[Frame]) -> tuple[int, int]:
        if "height" in entry or "width" in entry:
            h = require(entry, "height", int, file=self.meta_file, video=vid, field="height")
            w = require(entry, "width", int, file=self.meta_file, video=vid, field="width")
            if h <= 0 or w <= 0:
                raise DataError(f"bad frame size {h}x{w}", file=self.meta_file, video=vid, field="height")
            return h, w
        return _masks.image_size(frames[0].path, video=vid)

    def _expressions(self, entry: dict, vid: str) -> tuple[list[Track], list[Expression], dict[str, str]]:
        """Tracks (in order of first mention), expressions, and ``{anno track id: first exp_id}``."""
        file = self.meta_file
        raw = require(entry, "expressions", dict, file=file, video=vid, field="expressions")
        tracks: dict[str, Track] = {}
        anno_tracks: dict[str, str] = {}
        expressions = []
        for exp_id, exp in raw.items():
            where = f"expressions.{exp_id}"
            check_id(exp_id, file=file, video=vid, field=where)
            if not isinstance(exp, dict):
                raise DataError(f"expected an object, got {type(exp).__name__}", file=file, video=vid, field=where)
            text = require(exp, "exp", str, file=file, video=vid, field=f"{where}.exp")
            obj_ids = int_list(exp, "obj_id", file=file, video=vid, field=f"{where}.obj_id")
            anno_ids = int_list(exp, "anno_id", file=file, video=vid, field=f"{where}.anno_id")
            if obj_ids is not None and anno_ids is not None and len(obj_ids) != len(anno_ids):
                raise DataError(f"obj_id has {len(obj_ids)} id(s) but anno_id has {len(anno_ids)}",
                                file=file, video=vid, field=f"{where}.obj_id")
            withheld = anno_ids is None and not (obj_ids == [] and self._split_names_objects())
            if anno_ids is not None:
                # keys as the official loader spells them: str(anno_id) of the raw value
                keys = [a.strip() if isinstance(a, str) else str(a) for a in exp["anno_id"]]
                pairs = list(zip(keys, obj_ids if obj_ids is not None else [None] * len(keys)))
                for tid, _ in pairs:
                    anno_tracks.setdefault(tid, exp_id)
            else:
                pairs = [(f"obj{o}", o) for o in (obj_ids or [])]
            for tid, obj in pairs:
                track = Track(tid, meta={} if obj is None else {"obj_id": obj})
                known = tracks.setdefault(tid, track)
                if known.meta != track.meta:
                    self.problems.warning(f"track {tid} has obj_id {obj} here but {known.meta.get('obj_id')} "
                                          "in an earlier expression; keeping the first", file=file, video=vid,
                                          field=f"{where}.obj_id")
            track_ids = tuple(dict.fromkeys(tid for tid, _ in pairs))
            kind, kind_raw = self._kind(exp, track_ids=track_ids, withheld=withheld, vid=vid, where=where)
            meta = {k: v for k, v in exp.items() if k not in self.EXPRESSION_KEYS}
            if withheld:
                meta["targets_withheld"] = True
            expressions.append(Expression(exp_id, text, track_ids, kind, kind_raw=kind_raw, meta=meta))
        return list(tracks.values()), expressions, anno_tracks

    def _kind(self, exp: dict, *, track_ids: tuple[str, ...], withheld: bool, vid: str, where: str) -> tuple[str, Any]:
        """MeViS has no kind field: targets make it referring, empty lists no-target."""
        if withheld or track_ids:
            return "referring", None
        return "no-target", {k: exp[k] for k in ("obj_id", "anno_id") if k in exp}

    def _mask_source(self, vid: str, anno_tracks: dict[str, str], *, num_frames: int, height: int,
                     width: int) -> RLEMaskSource | None:
        index = self.index()
        if index is None:
            if anno_tracks and not self._warned_no_masks:
                self._warned_no_masks = True
                self.problems.warning(f"expressions name anno_ids but {self.mask_dict} is missing; "
                                      "the split is read without masks", file=self.meta_file)
            return None
        try:
            index.ensure()  # a truncated mask_dict fails here (once; the error is kept)
        except DataError as err:
            raise DataError(err.message, file=err.file, video=vid, field=err.field) from None
        for tid, exp_id in anno_tracks.items():
            if tid not in index:
                raise DataError(f"anno_id {tid} is not in {index.path}", file=self.meta_file, video=vid,
                                field=f"expressions.{exp_id}.anno_id")
        keys = list(anno_tracks)
        return RLEMaskSource(lambda: index.fetch_tracks(keys, video=vid, num_frames=num_frames, height=height,
                                                        width=width, lists=self.RLE_LISTS))


class MeViSSplit(MaskDictSplit):
    """One MeViS split folder.

    A ``longrvos_sidecar.json`` in the folder (written by `longrvos_data.converters.mevis`
    with ``sidecar=True``) completes each video with what MeViS cannot hold
    (`longrvos_data.sidecar.Sidecar.apply`).
    """

    _sidecar = None

    def _load(self, video_id: str) -> Video:
        if self._sidecar is None:
            from ..sidecar import Sidecar
            self._sidecar = Sidecar.read(self.root, target=NAME)
        return self._sidecar.apply(super()._load(video_id))


# -- detection and loading ---------------------------------------------------------------------
def v2_meta(folder: Path) -> Path | None:
    """The split's v2 expression file (the first of `MeViSPaths.META_V2_NAMES` present), or None."""
    for name in MeViSPaths.META_V2_NAMES:
        if is_present(folder / name):
            return folder / name
    return None


def _has_meta(folder: Path) -> bool:
    return is_present(folder / MeViSPaths.META) or v2_meta(folder) is not None


def split_folders(path: Path) -> dict[str, Path]:
    """``{split: folder}``: ``path`` itself when it holds a meta file, else its subfolders that do.

    Example:
        >>> list(split_folders(Path("data/mevis")))
        ['train', 'valid_u', 'valid']
    """
    if _has_meta(path):
        return {path.name: path}
    try:
        subs = [p for p in path.iterdir() if p.is_dir() and _has_meta(p)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}
    order = {name: i for i, name in enumerate(MeViSPaths.SPLITS)}
    subs.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    return {p.name: p for p in subs}


def _peek_videos(meta: Path, limit: int = 5) -> Iterator[tuple[str, Any]]:
    """The first ``limit`` videos of a meta file, streamed (the file is not read whole)."""
    import ijson
    require_regular_file(meta)  # never open a FIFO (it blocks) or a device
    with open(meta, "rb") as fh:
        for n, item in enumerate(ijson.kvitems(fh, "videos", use_float=True)):
            if n >= limit:
                return
            yield item


def _probe_split(folder: Path) -> tuple[float, str]:
    meta = folder / (MeViSPaths.META_V2 if (folder / MeViSPaths.META_V2).is_file() else MeViSPaths.META)
    exps: list[dict] = []
    frames: list = []
    try:
        for _, entry in _peek_videos(meta):
            if isinstance(entry, dict):
                frames = frames or (entry.get("frames") or [])
                e = entry.get("expressions")
                if isinstance(e, dict):
                    exps.extend(x for x in e.values() if isinstance(x, dict))
            if exps and frames:
                break
    except Exception as exc:  # ijson raises its own error types for bad JSON
        if not exps:
            return 0.0, f"{meta.name} could not be parsed ({type(exc).__name__})"
    if not exps:
        return 0.0, f"{meta.name} has no expressions in its first videos"
    if any("type_id" in x for x in exps):
        return 0.0, f"{meta.name}: expressions carry type_id (ReVOS)"
    if any(isinstance(x.get("type"), str) for x in exps):
        return 0.0, f"{meta.name}: expressions carry a 'type' string (Long-RVOS)"
    has_mask_dict = (folder / MeViSPaths.MASK_DICT).is_file()
    if any("obj_id" in x and not isinstance(x["obj_id"], list) for x in exps):
        return 0.0, f"{meta.name}: obj_id is a single id, not a list (Long-RVOS / Ref-YouTube-VOS)"
    if any(isinstance(x.get("obj_id"), list) or isinstance(x.get("anno_id"), list) for x in exps):
        if any("anno_id" in x for x in exps) and not has_mask_dict:
            return 0.8, f"{meta.name}: obj_id/anno_id lists, but {MeViSPaths.MASK_DICT} is missing"
        return 1.0, f"{meta.name}: obj_id/anno_id lists" + (f" beside {MeViSPaths.MASK_DICT}" if has_mask_dict else "")
    # Expressions with text only (the valid split): tell MeViS from Ref-YouTube-VOS by frame numbering.
    steps = {int(b) - int(a) for a, b in zip(frames, frames[1:]) if str(a).isdigit() and str(b).isdigit()}
    if steps == {1}:
        return (0.9 if has_mask_dict else 0.5), f"{meta.name}: text-only expressions, consecutive frame names"
    return 0.0, f"{meta.name}: text-only expressions and frame steps {sorted(steps)[:3]} (not MeViS)"


def detect(path: str | Path) -> Detection:
    """How well ``path`` (a root or one split folder) matches MeViS, probing the meta files.

    Evidence: ``meta_expressions[_v2].json`` whose expressions hold ``obj_id``/``anno_id``
    lists (beside ``mask_dict.json``); text-only expressions with consecutive frame names
    count less (the ``valid`` split). ``type_id`` (ReVOS), a ``type`` string (Long-RVOS) or
    a single ``obj_id`` (Ref-YouTube-VOS) rule it out.

    Example:
        >>> detect("data/mevis").confidence
        1.0
    """
    path = Path(path)
    if not path.is_dir():
        return Detection(NAME, 0.0, (f"{path} is not a folder",))
    folders = split_folders(path)
    if not folders:
        return Detection(NAME, 0.0, (f"no {MeViSPaths.META} or {MeViSPaths.META_V2} here or in a subfolder",))
    best, reasons = 0.0, []
    for name, folder in folders.items():
        conf, why = _probe_split(folder)
        best = max(best, conf)
        reasons.append(f"{name}: {why}")
    return Detection(NAME, best, tuple(reasons))


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise",
         version: str | None = None) -> Dataset:
    """Open a MeViS root or split folder; metadata per split on first use, masks per video.

    Args:
        path: ``mevis/`` (holding ``train``, ``valid_u``, ``valid``) or one split folder.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded and left out).
        version: ``"v1"`` reads ``meta_expressions.json``, ``"v2"`` ``meta_expressions_v2.json``
            (or ``meta_expressions_v2_release.json``); None prefers the v2 file where a split has both.

    Returns:
        A `Dataset` whose ``version`` is "v1"/"v2" when asked for or when a v2 file was
        chosen, else None (see the module docstring).

    Raises:
        DataError: no meta file found, an unknown split, or the requested version's
            file is missing.

    Example:
        >>> ds = load("data/mevis", split="valid_u")
        >>> video = ds["valid_u"].video("1c8ddd6b5a9a")
        >>> video.frame_masks(0)            # {"17": (H, W) bool, ...}
    """
    path = Path(path)
    if version not in (None, *MeViSPaths.VERSIONS):
        raise LongRVOSError(f"unknown MeViS version {version!r}; use one of {MeViSPaths.VERSIONS}")
    folders = split_folders(path)
    if not folders:
        raise DataError(f"no {MeViSPaths.META} or {MeViSPaths.META_V2} here or in a subfolder", file=path)
    if split is not None:
        if split not in folders:
            raise DataError(f"no split {split!r}; found {sorted(folders)}", file=path, field="split")
        folders = {split: folders[split]}
    problems = ProblemLog(on_error)
    splits: dict[str, SplitReader] = {}
    chosen: set[str] = set()
    for name, folder in folders.items():
        v1, v2 = folder / MeViSPaths.META, v2_meta(folder)
        if version == "v1" or (version is None and v2 is None):
            if not v1.is_file():
                raise DataError(f"no {v1.name} for version {version}", file=folder, field="version")
            meta = v1
        elif v2 is None:
            raise DataError(f"no {' or '.join(MeViSPaths.META_V2_NAMES)} for version {version}", file=folder,
                            field="version")
        else:
            meta = v2
        chosen.add("v2" if meta == v2 else "v1")
        splits[name] = MeViSSplit(folder, name, problems=problems, meta_file=meta,
                                  mask_dict=folder / MeViSPaths.MASK_DICT, frames_root=folder / MeViSPaths.FRAMES)
    found = version or ("v2" if "v2" in chosen else None)
    if version is None and chosen == {"v1", "v2"}:
        log.warning("%s: some splits have only %s; they are read as such", path, MeViSPaths.META)
    return Dataset(format=NAME, root=path, splits=splits, version=found, problems=problems)


__all__ = ["MeViSPaths", "MaskDictSplit", "MeViSSplit", "NAME", "detect", "int_list", "load", "split_folders",
           "v2_meta"]
