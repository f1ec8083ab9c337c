"""Ref-YouTube-VOS: one object per expression, one palette PNG per frame, categories in meta.json.

The competition release, as ReferFormer and MTTR lay it out::

    ref-youtube-vos/
      meta_expressions/
        train/meta_expressions.json    {"videos": {vid: {"expressions": {exp_id: {"exp": str, "obj_id": "1"}},
        valid/meta_expressions.json                      "frames": ["00000", "00005", ...]}}}
        test/meta_expressions.json     (valid lists 507 videos = 202 valid + the 305 test videos)
      train/
        JPEGImages/<vid>/00000.jpg     6 fps kept, 30-fps numbering (00000, 00005, ...)
        Annotations/<vid>/00000.png    palette PNG: pixel = object id, 0 background, 255 void
        meta.json                      {"videos": {vid: {"objects": {"1": {"category": "person",
                                                                         "frames": ["00000", ...]}}}}}
      valid/JPEGImages/<vid>/...       no annotations (server-scored)
      test/JPEGImages/<vid>/...        or inside valid/JPEGImages when the frames came in valid.zip

Forks keep ``<split>/meta_expressions.json`` instead of ``meta_expressions/<split>/``; a path
that is one split folder (``root/train``, ``root/valid``) loads too.

Canonical mapping:
- a track per object named in ``<split>/meta.json`` plus every object an expression names; track
  ids are the decimal object ids as strings (``"1"``); ``Track.category`` from meta.json (None
  when missing, null or ``""``); ``Track.meta["frames"]`` keeps meta.json's frame list.
- an expression is kind ``referring`` with ``track_ids == (obj_id,)``. An expression without
  ``obj_id`` (unannotated splits hide their targets) gets ``track_ids == ()``, kind ``referring``
  and ``meta["target_hidden"] = True``: it is not a no-target expression. The optional ``"kind"``
  key is this package's own extension (written by `longrvos_data.converters.ref_youtube_vos`
  for expressions converted from formats with kinds); the official files never carry it.
- ``valid`` = valid file minus the test file's videos (the official loaders' filter); ``test``
  comes from the test file. Without a test file a ``valid`` split is a `DataError` naming the
  missing file (the release's valid file lists the 305 test videos too, and nothing else tells
  them apart). A test file listing no video (what this package's writer puts beside a valid
  split written without test) gives no test split.
- frames are read in sorted order of their names, as every official loader does; fps is 6.0
  when the names step by 5 (30-fps numbering of every 5th frame), else None.
- a frame without annotation PNG has every object absent; an object is absent from a frame
  whose PNG holds none of its pixels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .. import masks as _masks
from ..errors import DataError, OnError, ProblemLog
from ..schema import KINDS, Expression, Frame, MaskSource, Track, Video, check_id
from .base import (Dataset, Detection, SplitReader, is_present, match_frames, read_json, require,
                   require_regular_file)

log = logging.getLogger("longrvos_data")

NAME = "ref_youtube_vos"


class RefYouTubeVOSPaths:
    """File and folder names of the release, and the constants of its frame numbering."""

    META_DIR = "meta_expressions"            # meta_expressions/<split>/meta_expressions.json
    META_FILE = "meta_expressions.json"
    IMAGES = "JPEGImages"
    ANNOTATIONS = "Annotations"
    OBJECTS = "meta.json"                    # <split>/meta.json: objects and categories
    MASK_DICT = "mask_dict.json"             # MeViS, never here
    SPLITS = ("train", "valid", "test")
    VALID_NAMES = ("valid", "val")           # the split the test file is subtracted from
    TEST = "test"
    FRAME_STEP = 5
    FPS = 6.0
    BACKGROUND = 0
    VOID = 255


P = RefYouTubeVOSPaths


# -- layout ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _SplitFiles:
    """Where one split's files are: expressions, data folder, frame folders, excluded ids."""

    name: str
    meta_file: Path
    folder: Path
    image_dirs: tuple[Path, ...]
    exclude_file: Path | None
    exclude_expected: Path | None = None   # where the test file should be, for a valid split


@dataclass(frozen=True)
class _Layout:
    root: Path
    style: str           # "standard" (meta_expressions/<split>/) or "fork" (<split>/meta_expressions.json)
    splits: dict[str, _SplitFiles]


def _meta_file(root: Path, name: str) -> Path | None:
    for candidate in (root / P.META_DIR / name / P.META_FILE, root / name / P.META_FILE):
        if candidate.is_file():
            return candidate
    return None


def _split_files(root: Path, name: str, meta_file: Path) -> _SplitFiles:
    folder = root / name
    image_dirs = [folder / P.IMAGES]
    if name == P.TEST:
        image_dirs += [root / v / P.IMAGES for v in P.VALID_NAMES]
    exclude = _meta_file(root, P.TEST) if name in P.VALID_NAMES else None
    expected = None
    if name in P.VALID_NAMES:
        standard = meta_file == root / P.META_DIR / name / P.META_FILE
        expected = root / P.META_DIR / P.TEST / P.META_FILE if standard else root / P.TEST / P.META_FILE
    return _SplitFiles(name, meta_file, folder, tuple(image_dirs), exclude, expected)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _find_layout(path: Path) -> _Layout | None:
    """The splits under ``path`` (a root or one split folder), or None when there are none."""
    meta_dir = path / P.META_DIR
    if meta_dir.is_dir():
        found = {d.name: d / P.META_FILE for d in _subdirs(meta_dir) if is_present(d / P.META_FILE)}
        if found:
            return _Layout(path, "standard", {n: _split_files(path, n, f) for n, f in found.items()})
    if is_present(path / P.META_FILE):      # one split folder, fork style
        return _Layout(path.parent, "fork", {path.name: _split_files(path.parent, path.name, path / P.META_FILE)})
    standard = path.parent / P.META_DIR / path.name / P.META_FILE
    if is_present(standard):                 # one split folder of the standard layout
        return _Layout(path.parent, "standard", {path.name: _split_files(path.parent, path.name, standard)})
    found = {d.name: d / P.META_FILE for d in _subdirs(path) if is_present(d / P.META_FILE)}
    if found:
        return _Layout(path, "fork", {n: _split_files(path, n, f) for n, f in found.items()})
    return None


# -- JSON helpers ----------------------------------------------------------------------
def _json_error_location(path: Path) -> list[str | int]:
    """The key path at which a JSON file stops parsing (for a truncated or broken file)."""
    import ijson

    stack: list[list[Any]] = []   # [kind, key or index]
    try:
        with open(path, "rb") as fh:
            for event, value in ijson.basic_parse(fh, use_float=True):
                if stack and stack[-1][0] == "array" and event not in ("end_array", "map_key", "end_map"):
                    stack[-1][1] += 1
                if event == "start_map":
                    stack.append(["map", None])
                elif event == "start_array":
                    stack.append(["array", -1])
                elif event == "map_key":
                    stack[-1][1] = value
                elif event in ("end_map", "end_array"):
                    stack.pop()
    except Exception:  # noqa: BLE001 - any parse failure ends the walk; the stack is the answer
        pass
    return [key for _, key in stack if key is not None and key != -1]


def _read_videos(path: Path) -> dict:
    """``data["videos"]`` of a Ref-YouTube-VOS JSON file, errors located by video and field."""
    try:
        data = read_json(path)
    except DataError as err:
        where = _json_error_location(path) if path.is_file() else []
        video = str(where[1]) if len(where) >= 2 and where[0] == "videos" else None
        rest = where[2:] if video is not None else where
        field = ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in rest).replace(".[", "[") or "videos"
        raise DataError(err.message, file=path, video=video, field=field) from None
    return require(data, "videos", dict, file=path, video=None, field="videos")


def _peek_videos(path: Path, count: int) -> list[tuple[str, Any]]:
    """The first ``count`` ``(video_id, entry)`` pairs, streamed (files can be tens of MB)."""
    import ijson

    out: list[tuple[str, Any]] = []
    require_regular_file(path)  # never open a FIFO (it blocks) or a device
    with open(path, "rb") as fh:
        for vid, entry in ijson.kvitems(fh, "videos", use_float=True):
            out.append((vid, entry))
            if len(out) >= count:
                break
    return out


def _object_id(value: Any, *, file: Path, video: str, field: str) -> str:
    """An object id as the decimal string of a positive integer (``"1"``, from ``"1"`` or ``1``)."""
    if isinstance(value, list):
        raise DataError(f"obj_id is a list {value!r}: Ref-YouTube-VOS names one object per expression "
                        "(lists are MeViS)", file=file, video=video, field=field)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None:
        raise DataError(f"object id must be an integer or a string of one, got {value!r}",
                        file=file, video=video, field=field)
    if number in (P.BACKGROUND, P.VOID):
        raise DataError(f"object id {number} is reserved ({P.BACKGROUND} background, {P.VOID} void)",
                        file=file, video=video, field=field)
    return str(number)


def _fps(names: Sequence[str]) -> float | None:
    """6.0 when the frame names step by 5 (30-fps numbering of every 5th frame), else None."""
    if not all(n.isdigit() for n in names):
        return None
    numbers = [int(n) for n in names]
    if all(b - a == P.FRAME_STEP for a, b in zip(numbers, numbers[1:])):
        return P.FPS
    return None


# -- detection -------------------------------------------------------------------------
def _png_kind(folder: Path) -> tuple[str, str]:
    """``("palette"|"per-object"|"other"|"none", reason)`` for one ``Annotations/<vid>`` folder."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return "none", f"{folder} cannot be listed"
    if any(e.is_dir() for e in entries):
        return "per-object", f"{folder} holds per-object sub-folders (Long-RVOS layout)"
    pngs = [e for e in entries if e.suffix.lower() == ".png"]
    if not pngs:
        return "none", f"{folder} holds no PNG"
    try:
        with Image.open(pngs[0]) as im:
            mode = im.mode
    except (OSError, SyntaxError, ValueError):
        return "other", f"{pngs[0]} cannot be opened"
    if mode in ("P", "L"):
        return "palette", f"{pngs[0].name} is an indexed PNG (mode {mode}), one per frame"
    return "other", f"{pngs[0]} has mode {mode}, not an indexed PNG"


def _judge_entries(sample: list[tuple[str, Any]]) -> tuple[bool, float, list[str]]:
    """Probe a few video entries: ``(ruled_out, bonus, reasons)``."""
    reasons: list[str] = []
    string_ids = int_ids = without_ids = 0
    steps_of_5 = steps_other = 0
    if not sample:
        return False, 0.0, ["the expression file lists no videos"]
    for vid, entry in sample:
        if not isinstance(entry, dict) or not isinstance(entry.get("expressions"), dict):
            return True, 0.0, [f"video {vid!r} has no 'expressions' object"]
        for exp_id, exp in entry["expressions"].items():
            if not isinstance(exp, dict) or "exp" not in exp:
                return True, 0.0, [f"expression {vid}/{exp_id} has no 'exp' text"]
            if "type" in exp:
                return True, 0.0, [f"expressions carry 'type' ({exp['type']!r}): Long-RVOS"]
            if "type_id" in exp:
                return True, 0.0, ["expressions carry 'type_id': ReVOS"]
            if "anno_id" in exp:
                return True, 0.0, ["expressions carry 'anno_id': MeViS/ReVOS"]
            obj = exp.get("obj_id")
            if isinstance(obj, list):
                return True, 0.0, ["obj_id values are lists: MeViS"]
            if isinstance(obj, str):
                string_ids += 1
            elif isinstance(obj, int):
                int_ids += 1
            else:
                without_ids += 1
        frames = entry.get("frames")
        if isinstance(frames, list) and len(frames) >= 2 and all(isinstance(f, str) and f.isdigit() for f in frames):
            numbers = sorted(int(f) for f in frames)
            if all(b - a == P.FRAME_STEP for a, b in zip(numbers, numbers[1:])):
                steps_of_5 += 1
            else:
                steps_other += 1
    bonus = 0.0
    if string_ids and not int_ids:
        bonus += 0.2
        reasons.append("single obj_id values are strings")
    elif int_ids:
        reasons.append("single obj_id values are integers")
    elif without_ids:
        reasons.append("expressions have no obj_id (unannotated split)")
    if steps_of_5 and not steps_other:
        bonus += 0.2
        reasons.append("frame names step by 5 (30-fps numbering)")
    elif steps_other:
        reasons.append("frame names do not step by 5")
    return False, bonus, reasons


def detect(path: str | Path) -> Detection:
    """How well ``path`` (a root or one split folder) matches Ref-YouTube-VOS.

    Probes the expression file's first videos (single, non-list ``obj_id``; no ``type``,
    ``type_id`` or ``anno_id``), frame names stepping by 5, and the ``Annotations`` layout
    (one indexed PNG per frame, no per-object folders).

    Example:
        >>> detect("data/ref-youtube-vos").confidence
        1.0
    """
    path = Path(path)
    if not path.is_dir():
        return Detection(NAME, 0.0, (f"{path} is not a folder",))
    layout = _find_layout(path)
    if layout is None:
        return Detection(NAME, 0.0, ("no meta_expressions/<split>/meta_expressions.json, "
                                     "<split>/meta_expressions.json or meta_expressions.json found",))
    reasons = [f"found {', '.join(str(s.meta_file.relative_to(layout.root)) for s in layout.splits.values())}"]
    confidence = 0.6 if layout.style == "standard" else 0.4
    for split in layout.splits.values():
        if (split.meta_file.parent / P.MASK_DICT).is_file() or (split.folder / P.MASK_DICT).is_file():
            return Detection(NAME, 0.0, tuple(reasons + [f"{P.MASK_DICT} beside the expressions: MeViS"]))
    probe = layout.splits.get("train") or next(iter(layout.splits.values()))
    try:
        sample = _peek_videos(probe.meta_file, 5)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a reason, not a crash
        reasons.append(f"{probe.meta_file} cannot be parsed ({type(exc).__name__})")
        return Detection(NAME, 0.3 if layout.style == "standard" else 0.0, tuple(reasons))
    ruled_out, bonus, found = _judge_entries(sample)
    reasons += found
    if ruled_out:
        return Detection(NAME, 0.0, tuple(reasons))
    confidence += bonus
    for split in layout.splits.values():
        annotations = split.folder / P.ANNOTATIONS
        videos = _subdirs(annotations) if annotations.is_dir() else []
        if videos:
            kind, why = _png_kind(videos[0])
            reasons.append(why)
            if kind == "per-object":
                return Detection(NAME, 0.0, tuple(reasons))
            if kind == "palette":
                confidence += 0.2
            break
    return Detection(NAME, round(min(confidence, 1.0), 3), tuple(reasons))


# -- masks -----------------------------------------------------------------------------
class PaletteMaskSource(MaskSource):
    """One indexed PNG per frame, ``Annotations/<vid>/<frame>.png``: pixel value = object id.

    Each frame's PNG is decoded once for all objects (the last decoded frame is kept, so
    that `masks`, `areas` and `check` of one frame share a decode). A frame without PNG
    has every object absent; an object whose id no pixel holds is absent.

    Args:
        folder: ``Annotations/<vid>``.
        frame_names: frame names in video order.
        track_ids: decimal object ids, e.g. ``("1", "2")``.
        height, width: the video's frame size; a PNG of another size is a `DataError`.
        video: the video id, for messages.

    Example:
        >>> src = PaletteMaskSource(root / "train/Annotations/abc", ["00000"], ["1"], height=720,
        ...                         width=1280, video="abc")
        >>> src.masks(0)            # {"1": (720, 1280) bool} when object 1 is in the frame
    """

    def __init__(self, folder: Path, frame_names: Sequence[str], track_ids: Sequence[str], *,
                 height: int, width: int, video: str) -> None:
        self.folder = Path(folder)
        self.frame_names = tuple(frame_names)
        self.values = {tid: int(tid) for tid in track_ids}
        self.height, self.width, self.video = height, width, video
        self._last: tuple[int, np.ndarray | None] | None = None

    def path(self, index: int) -> Path:
        return self.folder / f"{self.frame_names[index]}.png"

    def labels(self, index: int) -> np.ndarray | None:
        """The frame's raw ``(H, W)`` id image (uint8, or uint16 for 16-bit PNGs); None without PNG."""
        last = self._last
        if last is not None and last[0] == index:
            return last[1]
        path = self.path(index)
        field = f"{P.ANNOTATIONS}/{self.video}/{self.frame_names[index]}.png"
        if not path.is_file():
            labels = None
        else:
            labels = _masks.read_mask_png(path, video=self.video, field=field, shape=(self.height, self.width))
        self._last = (index, labels)
        return labels

    def masks(self, index: int) -> dict[str, np.ndarray]:
        labels = self.labels(index)
        if labels is None:
            return {}
        out: dict[str, np.ndarray] = {}
        for tid, value in self.values.items():
            m = labels == value
            if m.any():
                out[tid] = m
        return out

    def _counts(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels.ravel(), minlength=256)

    def areas(self, index: int) -> dict[str, int]:
        labels = self.labels(index)
        if labels is None:
            return {}
        counts = self._counts(labels)
        return {tid: int(counts[v]) for tid, v in self.values.items() if v < len(counts) and counts[v] > 0}

    def check(self, index: int) -> list[str]:
        """Pixel values that are no known object (0 background and 255 void are fine)."""
        labels = self.labels(index)
        if labels is None:
            return []
        present = np.flatnonzero(self._counts(labels))
        known = set(self.values.values()) | {P.BACKGROUND, P.VOID}
        unknown = [int(v) for v in present if int(v) not in known]
        if not unknown:
            return []
        return [f"{self.path(index)}: video {self.video!r}: pixel value(s) {unknown} are no known object "
                f"(objects: {sorted(self.values.values())}; 0 = background, 255 = void)"]


# -- split reader ----------------------------------------------------------------------
@dataclass
class _SplitIndex:
    videos: dict
    video_ids: list[str]
    objects: dict | None              # meta.json "videos", when the split has one
    objects_file: Path
    annotations: Path | None


class RefYouTubeVOSSplit(SplitReader):
    """One split: its expression file is parsed on first use; each video's masks are lazy.

    Example:
        >>> reader = load("data/ref-youtube-vos")["valid"]
        >>> len(reader)             # 202: the valid file's 507 videos minus the test file's 305
    """

    format = NAME

    def __init__(self, files: _SplitFiles, *, problems: ProblemLog) -> None:
        super().__init__(files.folder, files.name, problems=problems)
        self.files = files
        self._index: _SplitIndex | None = None

    def index(self) -> _SplitIndex:
        if self._index is None:
            if self.files.exclude_expected is not None and self.files.exclude_file is None:
                raise DataError(f"the test expression file is missing: {self.files.meta_file} lists the test "
                                "videos too (507 = 202 valid + 305 test in the release), and only the test file "
                                "tells them apart; put the release's test meta_expressions.json there",
                                file=self.files.exclude_expected, field="videos")
            videos = _read_videos(self.files.meta_file)
            excluded: set[str] = set()
            if self.files.exclude_file is not None:
                excluded = set(_read_videos(self.files.exclude_file))
                log.debug("%s: %d of %d videos belong to the test file and are left out",
                          self.files.meta_file, len(excluded & set(videos)), len(videos))
            objects_file = self.files.folder / P.OBJECTS
            objects = _read_videos(objects_file) if objects_file.is_file() else None
            annotations = self.files.folder / P.ANNOTATIONS
            annotations = annotations if annotations.is_dir() else None
            if annotations is not None and objects is None:
                self.problems.warning(f"{annotations} has no {P.OBJECTS} beside it: categories are unknown and "
                                      "expression targets are not checked against the annotations",
                                      file=objects_file, field="videos")
            self._index = _SplitIndex(videos, [v for v in videos if v not in excluded], objects,
                                      objects_file, annotations)
        return self._index

    def video_ids(self) -> list[str]:
        return list(self.index().video_ids)

    def metadata_files(self) -> list[Path]:
        """The metadata files this split reads (`validate` checks every id in them)."""
        objects = self.files.folder / P.OBJECTS
        return [f for f in (self.files.meta_file, self.files.exclude_file, objects) if f is not None and f.is_file()]

    def _image_dir(self, video_id: str) -> Path:
        for folder in self.files.image_dirs:
            if (folder / video_id).is_dir():
                return folder
        return self.files.image_dirs[0]

    def _tracks_from_objects(self, idx: _SplitIndex, video_id: str) -> dict[str, Track] | None:
        if idx.objects is None or video_id not in idx.objects:
            return None
        file = idx.objects_file
        objects = require(idx.objects[video_id], "objects", dict, file=file, video=video_id, field="objects")
        tracks: dict[str, Track] = {}
        for key, obj in objects.items():
            field = f"objects.{key}"
            tid = _object_id(key, file=file, video=video_id, field=field)
            if not isinstance(obj, dict):
                raise DataError(f"expected an object, got {type(obj).__name__}", file=file, video=video_id,
                                field=field)
            category = obj.get("category")
            if category is not None and not isinstance(category, str):
                raise DataError(f"category must be a string or null, got {category!r}", file=file,
                                video=video_id, field=f"{field}.category")
            meta: dict[str, Any] = {}
            if "frames" in obj:
                frames = obj["frames"]
                if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
                    raise DataError("frames must be a list of frame names", file=file, video=video_id,
                                    field=f"{field}.frames")
                meta["frames"] = list(frames)
            meta.update({k: v for k, v in obj.items() if k not in ("category", "frames")})
            if tid in tracks:
                raise DataError(f"object {tid} is listed twice", file=file, video=video_id, field=field)
            tracks[tid] = Track(tid, category or None, meta)
        return tracks

    def _load(self, video_id: str) -> Video:
        idx = self.index()
        file = self.files.meta_file
        check_id(video_id, file=file, video=video_id, field="video_id")
        entry = idx.videos[video_id]
        where = dict(file=file, video=video_id)
        if not isinstance(entry, dict):
            raise DataError(f"expected an object, got {type(entry).__name__}", field="videos", **where)

        raw_frames = require(entry, "frames", list, field="frames", **where)
        if not raw_frames:
            raise DataError("no frames are listed", field="frames", **where)
        for i, name in enumerate(raw_frames):
            if not isinstance(name, str):
                raise DataError(f"frame name must be a string, got {name!r}", field=f"frames[{i}]", **where)
            check_id(name, field=f"frames[{i}]", **where)
        names = sorted(raw_frames)          # the official loaders read frames in sorted order
        image_dir = self._image_dir(video_id)
        paths = match_frames(image_dir / video_id, names, video=video_id, meta_file=file, problems=self.problems)
        height, width = _masks.image_size(paths[0], video=video_id)

        annotated = idx.annotations is not None and (idx.annotations / video_id).is_dir()
        if idx.annotations is not None and not annotated:
            self.problems.warning(f"no {P.ANNOTATIONS}/{video_id} folder: the video is read without masks",
                                  field="masks", **where)
        listed = self._tracks_from_objects(idx, video_id)
        if annotated and idx.objects is not None and listed is None:
            self.problems.warning(f"{idx.objects_file.name} does not list this video: categories are unknown and "
                                  "expression targets are not checked", field="objects", **where)
        tracks: dict[str, Track] = dict(listed or {})

        raw_exps = require(entry, "expressions", dict, field="expressions", **where)
        expressions: list[Expression] = []
        for exp_id, exp in raw_exps.items():
            field = f"expressions.{exp_id}"
            check_id(exp_id, field=field, **where)
            text = require(exp, "exp", str, field=f"{field}.exp", **where)
            meta = {k: v for k, v in exp.items() if k not in ("exp", "obj_id", "kind")}
            if exp.get("obj_id") is not None:
                tid = _object_id(exp["obj_id"], field=f"{field}.obj_id", **where)
                if annotated and listed is not None and tid not in listed:
                    raise DataError(f"names object {tid}, which {idx.objects_file} does not list for this video "
                                    f"(objects: {sorted(listed, key=int)})", field=f"{field}.obj_id", **where)
                tracks.setdefault(tid, Track(tid))
                track_ids: tuple[str, ...] = (tid,)
            elif annotated:
                raise DataError("obj_id is missing in an annotated split", field=f"{field}.obj_id", **where)
            else:
                track_ids = ()
                meta["target_hidden"] = True
            kind, kind_raw = "referring", None
            if "kind" in exp:
                kind_raw = exp["kind"]
                if kind_raw not in KINDS or kind_raw == "no-target":
                    raise DataError(f"kind {kind_raw!r} is not one of {[k for k in KINDS if k != 'no-target']}",
                                    field=f"{field}.kind", **where)
                kind = kind_raw
            expressions.append(Expression(str(exp_id), text, track_ids, kind, kind_raw=kind_raw, meta=meta))

        ordered = [tracks[t] for t in sorted(tracks, key=int)]
        source = None
        if annotated:
            source = PaletteMaskSource(idx.annotations / video_id, names, [t.track_id for t in ordered],
                                       height=height, width=width, video=video_id)
        meta = {k: v for k, v in entry.items() if k not in ("frames", "expressions")}
        if image_dir != self.files.image_dirs[0]:
            meta["frames_folder"] = str(image_dir)
        return Video(dataset=NAME, split=self.split, video_id=video_id,
                     frames=[Frame(n, p) for n, p in zip(names, paths)], height=height, width=width,
                     tracks=ordered, expressions=expressions, fps=_fps(names), meta=meta,
                     mask_source=source, source_file=str(file))


def _empty_test(files: _SplitFiles) -> bool:
    """A test file listing no video: it only says that the valid file lists no test video."""
    if files.name != P.TEST:
        return False
    try:
        return _peek_videos(files.meta_file, 1) == []
    except Exception:  # noqa: BLE001 - a broken file is reported when the split is read
        return False


def _has_frames(files: _SplitFiles, problems: ProblemLog) -> bool:
    """Whether a split's frames are on disk (the expression files of all splits ship together)."""
    if files.image_dirs[0].is_dir():
        return True
    fallbacks = [d for d in files.image_dirs[1:] if d.is_dir()]
    if fallbacks:
        try:
            first = _peek_videos(files.meta_file, 1)
        except Exception:  # noqa: BLE001 - a broken file is reported when the split is read
            return True
        if not first or any((d / first[0][0]).is_dir() for d in fallbacks):
            return True
    problems.warning(f"split {files.name!r} is left out: no frame folder "
                     f"{' or '.join(str(d) for d in files.image_dirs)} for its videos",
                     file=files.meta_file, field="frames")
    return False


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open a Ref-YouTube-VOS root (or one split folder) lazily.

    A split whose expression file exists but whose frames are not on disk (the expression
    files of train, valid and test ship together) is left out with a warning in
    ``dataset.problems``, unless asked for by ``split``.

    Args:
        path: the root (``meta_expressions/``, ``train/``, ``valid/`` ...), a fork root
            (``<split>/meta_expressions.json``) or one split folder.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded and left out).

    Raises:
        DataError: no expression file under ``path``, or no such split.

    Example:
        >>> ds = load("data/ref-youtube-vos", split="train")
        >>> video = ds["train"].video("003234408d")
        >>> video.tracks[0].category, video.frame_masks(0).keys()
    """
    path = Path(path)
    problems = ProblemLog(on_error)
    layout = _find_layout(path) if path.is_dir() else None
    if layout is None:
        raise DataError("no Ref-YouTube-VOS expression file (meta_expressions/<split>/meta_expressions.json, "
                        "<split>/meta_expressions.json or meta_expressions.json)", file=path)
    if split is not None:
        if split not in layout.splits:
            raise DataError(f"no split {split!r}; found {sorted(layout.splits)}", file=path, field="split")
        chosen = {split: layout.splits[split]}
    else:
        chosen = {n: f for n, f in layout.splits.items() if not _empty_test(f) and _has_frames(f, problems)}
    readers: dict[str, SplitReader] = {n: RefYouTubeVOSSplit(f, problems=problems) for n, f in chosen.items()}
    return Dataset(NAME, path, readers, version=None, problems=problems)


__all__ = ["NAME", "PaletteMaskSource", "RefYouTubeVOSPaths", "RefYouTubeVOSSplit", "detect", "load"]
