"""LVOS v1 and v2 (Hong et al., 2023/2024): palette PNGs, per-object frame ranges, captions.

On-disk layout (a dataset root holds split folders; a split folder may be passed alone)::

    LVOS/{train,valid|val,test}/
      JPEGImages/<video_id>/00000001.jpg     8-digit names stepping by 5 (6 fps kept, 30 fps numbering)
      Annotations/<video_id>/00000001.png    ONE indexed PNG per frame: pixel = object id, 255 = void
      <split>_meta.json                      objects and their frame ranges (meta.json accepted)
      <split>_expression_meta.json           v1: the same plus one "caption" per object
      <split>_meta_attribute.json            v2: the same plus sets, attributes, image sizes

``<split>_meta.json``::

    {"videos": {"<video_id>": {"objects": {"<obj_id>": {
        "frame_range": {"start": "00000001", "end": "00002296", "frame_nums": 460}}}}}}

The three metadata files download separately from the image zips and are often left at
the dataset root, beside the split folders (``LVOS/valid_meta.json`` next to ``LVOS/valid/``,
``val_`` and ``valid_`` prefixes alike): they are read there too, a split folder's own copy
first (see `LVOSFiles`).

Reading rules:

- Frames are the image files of ``JPEGImages/<video_id>/`` in name order: the metadata
  has no frame list.
- Object ids are the JSON keys, kept as the track ids; they must be integers 1..254,
  since they are the pixel values of the object (0 is background, 255 is void).
  ``frame_range`` is kept verbatim in ``Track.meta``; its ``start``, ``end`` and
  ``frame_nums`` may each be an int or a string (start/end are seen both ways).
- An object is present in a frame when at least one pixel holds its id: a palette PNG
  cannot say "present but empty". A frame without a PNG has every object absent (the
  test split ships only first-frame masks).
- Captions (v1, ``<split>_expression_meta.json``) become one `Expression` per object:
  ``exp_id`` = the object id, ``kind="caption"``, ``kind_raw=None`` (the source has no
  type). An object without a ``caption`` key has no expression.
- v2 attributes (``<split>_meta_attribute.json``; a few other spellings of the name are
  accepted, see `LVOSPaths.ATTRIBUTE_NAMES`): per-video ``set``, ``attributes``,
  ``num_scribbles``, ``name``, ``image_size`` go to ``Video.meta``; the top-level ``sets``
  and ``attributes`` lists are kept on the split reader (`LVOSSplit.attribute_lists`).
- ``Dataset.version`` is ``"v2"`` when an attribute file is present, else ``"v1"`` when a
  caption file is present, else None. v2 also publishes captions, so a v2 copy that
  lacks its attribute file reads as ``"v1"``: nothing else in the files tells them apart.
- ``fps`` is 6.0 (frames are kept at 6 fps; their numbering counts 30 fps frames).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import masks as _masks
from ..errors import DataError, OnError, Problem, ProblemLog
from ..schema import Expression, Frame, MaskSource, Track, Video, check_id
from .base import Dataset, Detection, SplitReader, is_present, list_images, read_json, require

log = logging.getLogger("longrvos_data")

NAME = "lvos"
FPS = 6.0
VOID = 255


class LVOSPaths:
    """File and folder names of the LVOS layout; ``{split}`` is the split folder's name."""

    IMAGES = "JPEGImages"
    ANNOTATIONS = "Annotations"
    SPLITS = ("train", "valid", "val", "test")
    META = "{split}_meta.json"
    META_PLAIN = "meta.json"      # what one version of the evaluation toolkit reads
    EXPRESSION_META = "{split}_expression_meta.json"
    ATTRIBUTE_META = "{split}_meta_attribute.json"
    # The attribute file's exact name is unconfirmed; these spellings are all accepted.
    ATTRIBUTE_NAMES = ("{split}_meta_attribute.json", "{split}_meta_attributes.json",
                       "{split}_attribute_meta.json", "{split}_attributes_meta.json",
                       "{split}_attribute.json", "{split}_attributes.json")
    MASK_EXT = ".png"
    FRAME_EXT = ".jpg"


# Per-video keys of the v2 attribute file (besides "objects").
ATTRIBUTE_KEYS = ("set", "attributes", "num_scribbles", "name", "image_size")

_ALIASES = {"valid": ("valid", "val"), "val": ("val", "valid")}
_OBJ_ID = re.compile(r"^[0-9]+$")


def _frame_key(name: str) -> tuple:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


class LVOSMasks(MaskSource):
    """One video's palette PNGs ``Annotations/<video_id>/<frame>.png``; mask = ``png == obj_id``.

    Each PNG is decoded once per call and split into every object's mask; pixel counts
    come from one `numpy.bincount`, so `areas` builds no mask at all.
    """

    def __init__(self, folder: Path, *, video_id: str, frame_names: Sequence[str], ids: Mapping[str, int],
                 height: int, width: int, present: frozenset[str]) -> None:
        self.folder = Path(folder)
        self.video_id = video_id
        self.frame_names = tuple(frame_names)
        self.ids = dict(ids)
        self.height, self.width = height, width
        self.present = present

    def path(self, index: int) -> Path:
        return self.folder / f"{self.frame_names[index]}{LVOSPaths.MASK_EXT}"

    def read(self, index: int) -> np.ndarray | None:
        """The raw ``(H, W)`` id image of frame ``index``, or None when it has no PNG.

        Raises:
            DataError: the PNG is corrupt, not single-channel or of another size than the video.
        """
        name = self.frame_names[index]
        if name not in self.present:
            return None
        path = self.path(index)
        return _masks.read_mask_png(path, video=self.video_id, field=f"{LVOSPaths.ANNOTATIONS}/{name}.png",
                                    shape=(self.height, self.width))

    @staticmethod
    def _counts(arr: np.ndarray) -> np.ndarray:
        return np.bincount(arr.ravel(), minlength=256)

    def masks(self, index: int) -> dict[str, np.ndarray]:
        arr = self.read(index)
        if arr is None:
            return {}
        out = {}
        for tid, v in self.ids.items():   # a comparison per object beats one bincount for a few objects
            m = arr == v
            if m.any():
                out[tid] = m
        return out

    def areas(self, index: int) -> dict[str, int]:
        arr = self.read(index)
        if arr is None:
            return {}
        counts = self._counts(arr)
        return {tid: int(counts[v]) for tid, v in self.ids.items() if counts[v]}

    def check(self, index: int) -> list[str]:
        """Pixel values that are neither 0, 255 (void) nor an object of the metadata."""
        arr = self.read(index)
        if arr is None:
            return []
        counts = self._counts(arr)
        known = set(self.ids.values()) | {0, VOID}
        unknown = [int(v) for v in np.flatnonzero(counts) if int(v) not in known]
        if not unknown:
            return []
        detail = ", ".join(f"{v} ({int(counts[v])} px)" for v in unknown[:8])
        return [f"{self.path(index)}: video {self.video_id!r}: pixel value(s) {detail} are no object of the "
                f"metadata (objects: {sorted(self.ids.values())})"]


class LVOSFiles:
    """The metadata files of one split folder (None where absent).

    Each file is looked for in the split folder, then (by its exact ``<split>_...`` name,
    ``val``/``valid`` alike) in ``outer``, the dataset root: the metadata downloads
    separately from the image zips and is often left there, beside the split folders.
    Last, a folder whose one ``*_meta.json`` has another prefix is accepted.
    """

    def __init__(self, folder: Path, outer: Path | None = None) -> None:
        folder = Path(folder)
        prefixes = _ALIASES.get(folder.name, (folder.name,))
        meta = [LVOSPaths.META.format(split=p) for p in prefixes]
        expression = [LVOSPaths.EXPRESSION_META.format(split=p) for p in prefixes]
        attribute = [t.format(split=p) for p in prefixes for t in LVOSPaths.ATTRIBUTE_NAMES]
        self.meta = _first(folder, meta + [LVOSPaths.META_PLAIN], outer, meta,
                           lambda n: n.endswith("_meta.json") and not n.endswith("_expression_meta.json"))
        self.expression = _first(folder, expression, outer, expression, lambda n: n.endswith("_expression_meta.json"))
        self.attribute = _first(folder, attribute, outer, attribute, lambda n: "attribute" in n and n.endswith(".json"))
        known = {*meta, LVOSPaths.META_PLAIN, *expression, *attribute}
        # whether a file was found by its own name (not only as the folder's one *_meta.json)
        self.by_name = any(f is not None and f.name in known for f in (self.meta, self.expression, self.attribute))

    @property
    def primary(self) -> Path | None:
        """The file whose ``videos``/``objects`` define the split: meta, else attribute, else expression."""
        return self.meta or self.attribute or self.expression

    def __bool__(self) -> bool:
        return self.primary is not None


def _first(folder: Path, names: Sequence[str], outer: Path | None, outer_names: Sequence[str],
           fallback) -> Path | None:
    """The first of ``names`` in ``folder``, else of ``outer_names`` in ``outer``; else the only
    file of ``folder`` matching ``fallback``."""
    for where, candidates in ((folder, names), (outer, outer_names if outer is not None else ())):
        for n in candidates:
            if is_present(where / n):
                return where / n
    try:
        with os.scandir(folder) as it:
            hits = sorted(e.name for e in it if not e.is_dir() and not e.name.startswith(".") and fallback(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return folder / hits[0] if len(hits) == 1 else None


class LVOSSplit(SplitReader):
    """One LVOS split folder; its metadata files are parsed on opening.

    Attributes:
        files: which metadata files were found (`LVOSFiles`).
        attribute_lists: the v2 attribute file's top-level ``sets`` and ``attributes``
            (empty when there is no attribute file).
        annotated: whether the split has an ``Annotations/`` folder.
    """

    format = NAME

    def __init__(self, root: Path, split: str, *, problems: ProblemLog, files: LVOSFiles | None = None) -> None:
        super().__init__(root, split, problems=problems)
        self.files = files or LVOSFiles(self.root)
        if not self.files:
            raise DataError(f"no {LVOSPaths.META.format(split=split)} (or caption/attribute meta) here",
                            file=self.root, field="meta")
        self._docs: dict[Path, dict] = {}
        self.attribute_lists: dict[str, Any] = {}
        for path in (self.files.meta, self.files.expression, self.files.attribute):
            if path is None or path in self._docs:
                continue
            data = read_json(path)
            self._docs[path] = require(data, "videos", dict, file=path, video=None, field="videos")
            if path == self.files.attribute:
                self.attribute_lists = {k: data[k] for k in ("sets", "attributes") if k in data}
        self.annotated = (self.root / LVOSPaths.ANNOTATIONS).is_dir()
        self._videos = self._docs[self.files.primary]
        log.debug("LVOS split %s: %d videos from %s", split, len(self._videos), self.files.primary.name)
        for path, videos in self._docs.items():
            extra = set(videos) - set(self._videos)
            if extra:
                self.problems.warning(f"{len(extra)} video(s) are not in {self.files.primary.name} and are "
                                      f"ignored: {', '.join(sorted(extra)[:5])}", file=path, field="videos")

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def metadata_files(self) -> list[Path]:
        """The metadata files this split reads (`validate` checks every id in them)."""
        return list(self._docs)

    def _load(self, video_id: str) -> Video:
        primary = self.files.primary
        vid = check_id(video_id, file=primary, video=video_id, field="video_id")
        where = dict(file=primary, video=vid)
        entry = self._videos[video_id]
        if not isinstance(entry, dict):
            raise DataError(f"expected an object, got {type(entry).__name__}", field=f"videos.{vid}", **where)
        objects = require(entry, "objects", dict, field="objects", **where)
        tracks, ids = _tracks(objects, **where)

        meta = {k: v for k, v in entry.items() if k != "objects"}
        attr = self._entry(self.files.attribute, vid)
        if attr is not None:
            meta.update({k: v for k, v in attr.items() if k != "objects"})
        expressions = self._captions(vid, ids)

        image_dir = self.root / LVOSPaths.IMAGES / vid
        files = list_images(image_dir, video=vid)
        if not files:
            raise DataError(f"no frames in {image_dir}", file=image_dir, video=vid, field="frames")
        names = sorted(files, key=_frame_key)
        frames = [Frame(n, files[n]) for n in names]
        height, width = _masks.image_size(frames[0].path, video=vid)
        if attr is not None and "image_size" in attr:
            size = attr["image_size"]
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
                raise DataError(f"image_size must be [height, width], got {size!r}", file=self.files.attribute,
                                video=vid, field="image_size")
            if (size[0], size[1]) != (height, width):
                self.problems.warning(f"image_size {size} differs from the first frame's {height}x{width}; "
                                      f"using image_size", file=self.files.attribute, video=vid, field="image_size")
            height, width = size

        mask_source = None
        if self.annotated:
            ann_dir = self.root / LVOSPaths.ANNOTATIONS / vid
            present = _mask_files(ann_dir)
            if present is None:
                self.problems.warning("the split has Annotations/ but this video has no folder there; "
                                      "it is read without masks", file=ann_dir, video=vid, field="Annotations")
            else:
                stray = present - set(names)
                if stray:
                    self.problems.warning(f"{len(stray)} mask PNG(s) have no frame and are ignored: "
                                          f"{', '.join(sorted(stray)[:5])}", file=ann_dir, video=vid,
                                          field="Annotations")
                mask_source = LVOSMasks(ann_dir, video_id=vid, frame_names=names, ids=ids, height=height,
                                        width=width, present=present)
        return Video(dataset=NAME, split=self.split, video_id=vid, frames=frames, height=height, width=width,
                     tracks=tracks, expressions=expressions, fps=FPS, meta=meta, mask_source=mask_source,
                     source_file=str(primary))

    def _entry(self, path: Path | None, vid: str) -> dict | None:
        if path is None:
            return None
        entry = self._docs[path].get(vid)
        if entry is not None and not isinstance(entry, dict):
            raise DataError(f"expected an object, got {type(entry).__name__}", file=path, video=vid,
                            field=f"videos.{vid}")
        return entry

    def _captions(self, vid: str, ids: Mapping[str, int]) -> list[Expression]:
        path = self.files.expression
        entry = self._entry(path, vid)
        if entry is None:
            if path is not None:
                self.problems.warning("video has no captions", file=path, video=vid, field="videos")
            return []
        objects = require(entry, "objects", dict, file=path, video=vid, field="objects")
        out = []
        for key, obj in objects.items():
            field = f"objects.{key}.caption"
            if key not in ids:
                raise DataError(f"caption for object {key!r}, which {self.files.primary.name} does not list",
                                file=path, video=vid, field=f"objects.{key}")
            if not isinstance(obj, dict):
                raise DataError(f"expected an object, got {type(obj).__name__}", file=path, video=vid,
                                field=f"objects.{key}")
            if "caption" not in obj:
                continue
            text = require(obj, "caption", str, file=path, video=vid, field=field)
            if not text.strip():
                raise DataError("caption is empty", file=path, video=vid, field=field)
            out.append(Expression(exp_id=key, text=text, track_ids=(key,), kind="caption", kind_raw=None))
        return out


def _tracks(objects: Mapping[str, Any], *, file: Path, video: str) -> tuple[list[Track], dict[str, int]]:
    """Tracks and ``{track_id: pixel value}`` from a video's ``objects``, every field checked."""
    tracks: list[Track] = []
    ids: dict[str, int] = {}
    for key, obj in objects.items():
        field = f"objects.{key}"
        if not _OBJ_ID.match(key) or not 1 <= int(key) <= 254:
            raise DataError("object ids must be integers 1..254 (they are the pixel values of the object; "
                            f"0 is background and 255 void), got {key!r}", file=file, video=video, field=field)
        if int(key) in ids.values():
            raise DataError(f"object id {key!r} repeats pixel value {int(key)}", file=file, video=video, field=field)
        fr = require(obj, "frame_range", dict, file=file, video=video, field=f"{field}.frame_range")
        for k in ("start", "end", "frame_nums"):   # each may be an int or a string in the releases
            value = require(fr, k, (int, str), file=file, video=video, field=f"{field}.frame_range.{k}")
            if isinstance(value, bool):
                raise DataError("expected int/str, got bool", file=file, video=video, field=f"{field}.frame_range.{k}")
        ids[key] = int(key)
        tracks.append(Track(key, meta={k: v for k, v in obj.items() if k != "caption"}))
    tracks.sort(key=lambda t: ids[t.track_id])
    return tracks, ids


def _mask_files(folder: Path) -> frozenset[str] | None:
    """Stems of the PNGs in a video's annotation folder; None when the folder is missing."""
    try:
        with os.scandir(folder) as it:
            return frozenset(e.name[:-len(LVOSPaths.MASK_EXT)] for e in it
                             if e.name.endswith(LVOSPaths.MASK_EXT) and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return None


# -- detection and loading -----------------------------------------------------------------------
def _by_name(folder: Path, outer: Path | None = None) -> LVOSFiles | None:
    """`LVOSFiles` of ``folder`` when one of them was found by its split-prefixed name."""
    files = LVOSFiles(folder, outer)
    return files if files.by_name else None


def _split_folders(path: Path) -> dict[str, tuple[Path, LVOSFiles]]:
    """``{split: (folder, files)}`` under a dataset root, or for one split folder.

    In order: ``path`` is a split folder holding its own ``<split>_meta.json``; a root
    whose split folders hold their metadata or have it beside them in the root
    (``LVOS/valid_meta.json`` next to ``LVOS/valid/``); a split folder whose one meta file
    has another prefix; a split folder whose metadata is beside it in its parent.
    """
    path = Path(path)
    if not path.is_dir():
        return {}
    if _by_name(path):
        return {path.name: (path, LVOSFiles(path, path.parent))}   # files it lacks may sit beside it
    found = {}
    for child in path.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            files = LVOSFiles(child, path)
            if files:
                found[child.name] = (child, files)
    if found:
        order = {s: i for i, s in enumerate(LVOSPaths.SPLITS)}
        return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    own = LVOSFiles(path) or _by_name(path, path.parent)
    return {path.name: (path, own)} if own else {}


def detect(path: str | Path) -> Detection:
    """How likely ``path`` (a root or one split folder) is LVOS, from file content.

    Requires a ``<split>_meta.json`` (or caption/attribute meta) whose videos hold
    ``objects.<id>.frame_range``.

    Example:
        >>> detect("data/LVOS").confidence
        1.0
    """
    path = Path(path)
    splits = _split_folders(path)
    if not splits:
        return Detection(NAME, 0.0, (f"no <split>_meta.json (or caption/attribute meta) in {path} "
                                     "or its sub-folders",))
    name, (folder, files) = next(iter(splits.items()))
    meta = files.primary
    reasons = [f"found {meta}"]
    try:
        data = read_json(meta)
    except DataError as err:
        return Detection(NAME, 0.0, (*reasons, f"unreadable: {err.message}"))
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        return Detection(NAME, 0.0, (*reasons, "no top-level 'videos' object"))
    for vid, entry in list(videos.items())[:3]:
        objects = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(objects, dict):
            return Detection(NAME, 0.0, (*reasons, f"video {vid!r} has no 'objects' object"))
        for key, obj in objects.items():
            if not isinstance(obj, dict) or not isinstance(obj.get("frame_range"), dict):
                return Detection(NAME, 0.0, (*reasons, f"video {vid!r}: object {key!r} has no 'frame_range'"))
    if not videos:
        return Detection(NAME, 0.3, (*reasons, "no video to probe"))
    reasons.append(f"objects carry 'frame_range' (split {name!r})")
    if (folder / LVOSPaths.IMAGES).is_dir():
        reasons.append("JPEGImages/ present")
    return Detection(NAME, 1.0, tuple(reasons))


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open an LVOS (v1 or v2) root or one split folder; metadata now, masks on demand.

    Args:
        path: ``LVOS/`` (holding ``train/ valid/ test/``, ``val/`` accepted) or one split folder.
        split: read only this split (the folder's name, e.g. ``"val"``).
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded in ``problems`` and left out).

    Raises:
        DataError: no split folder found, the split is unknown, or a metadata file is broken.

    Example:
        >>> ds = load("data/LVOS", split="valid")
        >>> ds.version                                # "v1", "v2" or None
        >>> video = ds["valid"].video("0tCWPOrc")
        >>> video.tracks[0].meta["frame_range"]
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", file=path)
    problems = ProblemLog(on_error)
    found = _split_folders(path)
    if not found:
        raise DataError("no <split>_meta.json (or caption/attribute meta) here or in a split folder", file=path,
                        field="meta")
    if split is not None:
        if split not in found:
            raise DataError(f"no split {split!r}; found {sorted(found)}", file=path, field="split")
        found = {split: found[split]}
    splits = {name: LVOSSplit(folder, name, problems=problems, files=files) for name, (folder, files) in found.items()}
    if any(s.files.attribute for s in splits.values()):
        version = "v2"
    elif any(s.files.expression for s in splits.values()):
        version = "v1"
    else:
        version = None
    return Dataset(format=NAME, root=path, splits=splits, version=version, problems=problems)


def validate_extra(path: str | Path, *, split: str | None = None, checksums: bool = False) -> list[Problem]:
    """Whole-video checks that per-frame decoding cannot make: each object's ``frame_range``.

    The start frame holds the object's reference mask (the first-frame mask of the
    semi-supervised protocol), so a start that is no frame of the video, or whose frame
    image or (in an annotated split) mask PNG is missing, is an error. The evaluation
    iterates ``range(start, end, 5)`` and never reaches ``end``: an end that is no frame
    is a warning, an error only when it lies beyond the video's last frame. Videos that
    fail to load are left to the generic validation. ``checksums`` is accepted for the
    common signature; LVOS publishes none.

    Example:
        >>> for p in validate_extra("data/LVOS", split="valid"):
        ...     print(p)
    """
    ds = load(path, split=split, on_error="skip")
    found: list[Problem] = []
    for reader in ds:
        for vid in reader.video_ids():
            try:
                video = reader.video(vid)
            except DataError:
                continue
            found.extend(_frame_range_problems(reader, video))
    return found


def _frame_range_problems(reader: LVOSSplit, video: Video) -> list[Problem]:
    """`validate_extra`'s findings for one video's objects."""
    vid = video.video_id
    by_number = {int(n): n for n in video.frame_names if n.isdigit()}
    width = max((len(n) for n in video.frame_names), default=8)
    last = max(by_number, default=None)
    image_dir = reader.root / LVOSPaths.IMAGES / vid
    ann_dir = reader.root / LVOSPaths.ANNOTATIONS / vid
    masks = video.mask_source.present if isinstance(video.mask_source, LVOSMasks) else frozenset()
    out: list[Problem] = []

    def add(level: str, message: str, track: str, key: str) -> None:
        out.append(Problem(level, message, video.source_file, vid, f"objects.{track}.frame_range.{key}"))

    for t in video.tracks:
        fr = t.meta["frame_range"]
        start, end = fr["start"], fr["end"]
        if not str(start).isdigit():
            add("error", f"frame_range start {start!r} is not a frame number", t.track_id, "start")
        elif int(start) not in by_number:
            expected = image_dir / f"{int(start):0{width}d}{LVOSPaths.FRAME_EXT}"
            add("error", f"frame_range start {start!r} is not a frame of the video: there is no {expected} "
                "(the start frame holds the object's reference mask)", t.track_id, "start")
        elif reader.annotated and by_number[int(start)] not in masks:
            png = ann_dir / f"{by_number[int(start)]}{LVOSPaths.MASK_EXT}"
            add("error", f"the reference mask of frame_range start {start!r} is missing: there is no {png}",
                t.track_id, "start")
        if not str(end).isdigit():
            add("error", f"frame_range end {end!r} is not a frame number", t.track_id, "end")
        elif last is not None and int(end) > last:
            add("error", f"frame_range end {end!r} is beyond the video's last frame {by_number[last]}",
                t.track_id, "end")
        elif int(end) not in by_number:
            add("warning", f"frame_range end {end!r} is not a frame of the video", t.track_id, "end")
    return out


__all__ = ["NAME", "FPS", "VOID", "ATTRIBUTE_KEYS", "LVOSFiles", "LVOSMasks", "LVOSPaths", "LVOSSplit", "detect",
           "load", "validate_extra"]
