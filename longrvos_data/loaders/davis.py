"""DAVIS-style palette PNG folders with a Ref-DAVIS-like expression file.

The layout `longrvos_data.converters.davis` writes::

    davis/
      ImageSets/<split>.txt                  video ids, one a line (DAVIS ImageSets/2017/*.txt style)
      <split>/JPEGImages/<vid>/<frame>.jpg
      <split>/Annotations/<vid>/<frame>.png  one palette PNG per frame: pixel = object value
                                             (1..254), 0 background, 255 void
      <split>/meta_davis.json                videos, frames, the object table, the expressions
      <split>/longrvos_sidecar.json          optional: what the format cannot hold

``meta_davis.json``::

    {"format": "longrvos-davis", "version": 1,
     "videos": {"<vid>": {
        "frames": ["00000", ...], "height": H, "width": W, "fps": 6.0 | null, "meta": {...},
        "objects": {"<value>": {"track_id": "<source id>", "category": str | null, "meta": {...}}},
        "expressions": {"<exp_id>": {"exp": str, "obj_id": "<value>", "kind": "referring",
                                    "kind_raw": ..., "meta": {...}}}}}}

``objects`` maps each palette value to the source's track id (values are the track ids
themselves when those are integers 1..254, else 1, 2, ... in track order); ``obj_id`` is a
palette value, as in Ref-DAVIS. A video without ``Annotations/<vid>/`` has no masks.
A path that is one split folder (holding ``meta_davis.json``) loads that split.

Canonical mapping: tracks in ``objects`` order (then the sidecar's, at their positions);
a track is present in a frame when its value is; expressions in file order (then the
sidecar's); every value but 0 and 255 that ``objects`` does not list is reported by
``validate`` (`MaskSource.check`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import masks as _masks
from ..errors import DataError, OnError, ProblemLog
from ..schema import KINDS, Expression, Frame, MaskSource, Track, Video, check_id
from .base import Dataset, Detection, SplitReader, match_frames, read_json

log = logging.getLogger("longrvos_data")

NAME = "davis"


class DAVISPaths:
    """File and folder names of the layout, and its constants."""

    META = "meta_davis.json"
    FORMAT_TAG = "longrvos-davis"
    VERSION = 1
    IMAGES = "JPEGImages"
    ANNOTATIONS = "Annotations"
    IMAGESETS = "ImageSets"
    BACKGROUND = 0
    VOID = 255
    MAX_VALUE = 254


P = DAVISPaths


@dataclass(frozen=True)
class _SplitFiles:
    name: str
    folder: Path

    @property
    def meta(self) -> Path:
        return self.folder / P.META


def _find_splits(path: Path) -> dict[str, _SplitFiles]:
    if (path / P.META).is_file():
        return {path.name: _SplitFiles(path.name, path)}
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return {}
    return {d.name: _SplitFiles(d.name, d) for d in children if (d / P.META).is_file()}


def detect(path: str | Path) -> Detection:
    """How well ``path`` matches this layout: probes ``meta_davis.json`` and one annotation PNG's mode.

    Example:
        >>> detect("out/davis").confidence
        1.0
    """
    path = Path(path)
    if not path.is_dir():
        return Detection(NAME, 0.0, (f"{path} is not a folder",))
    splits = _find_splits(path)
    if not splits:
        return Detection(NAME, 0.0, (f"no {P.META} in the folder or its split folders",))
    probe = next(iter(splits.values()))
    try:
        meta = read_json(probe.meta)
    except DataError as err:
        return Detection(NAME, 0.2, (f"{probe.meta} cannot be parsed ({err.message})",))
    reasons = [f"found {probe.meta}"]
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        return Detection(NAME, 0.0, tuple(reasons + ["it has no 'videos' object"]))
    confidence = 0.5
    if meta.get("format") == P.FORMAT_TAG:
        confidence += 0.3
        reasons.append(f"'format' is {P.FORMAT_TAG!r}")
    first = next(iter(meta["videos"].values()), None)
    if isinstance(first, dict) and isinstance(first.get("objects"), dict) and "frames" in first:
        confidence += 0.1
        reasons.append("videos carry 'objects' and 'frames'")
    ann = probe.folder / P.ANNOTATIONS
    if ann.is_dir():
        pngs = next((sorted(d.glob("*.png")) for d in sorted(ann.iterdir()) if d.is_dir()), [])
        if pngs:
            try:
                from PIL import Image
                with Image.open(pngs[0]) as im:
                    mode = im.mode
            except Exception:  # noqa: BLE001 - an unreadable PNG is a reason, not a crash
                mode = "unreadable"
            reasons.append(f"{pngs[0].name} is mode {mode}")
            if mode == "P":
                confidence += 0.1
    return Detection(NAME, round(min(confidence, 1.0), 3), tuple(reasons))


class DAVISMaskSource(MaskSource):
    """One palette PNG per frame; ``values`` maps pixel values to track ids.

    The last decoded frame is cached so `masks`, `areas` and `check` of one frame share a decode.
    """

    def __init__(self, folder: Path, frame_names: list[str], values: dict[int, str], *, height: int, width: int,
                 video: str) -> None:
        self.folder, self.frame_names, self.values = folder, frame_names, values
        self.height, self.width, self.video = height, width, video
        self._cache: tuple[int, np.ndarray] | None = None

    def _read(self, index: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        path = self.folder / f"{self.frame_names[index]}.png"
        field = f"{P.ANNOTATIONS}/{self.video}/{self.frame_names[index]}.png"
        arr = _masks.read_mask_png(path, video=self.video, field=field, shape=(self.height, self.width))
        self._cache = (index, arr)
        return arr

    def masks(self, index: int) -> dict[str, np.ndarray]:
        arr = self._read(index)
        present = set(np.unique(arr).tolist())
        return {tid: arr == v for v, tid in self.values.items() if v in present}

    def areas(self, index: int) -> dict[str, int]:
        counts = np.bincount(self._read(index).ravel(), minlength=256)
        return {tid: int(counts[v]) for v, tid in self.values.items() if v < len(counts) and counts[v]}

    def check(self, index: int) -> list[str]:
        arr = self._read(index)
        unknown = sorted(set(np.unique(arr).tolist()) - set(self.values) - {P.BACKGROUND, P.VOID})
        if unknown:
            return [f"{P.ANNOTATIONS}/{self.video}/{self.frame_names[index]}.png: pixel value(s) {unknown} "
                    "are no known object"]
        return []


class DAVISSplit(SplitReader):
    """One split of the layout, read a video at a time."""

    format = NAME

    def __init__(self, files: _SplitFiles, *, problems: ProblemLog) -> None:
        super().__init__(files.folder, files.name, problems=problems)
        from ..sidecar import Sidecar

        self.files = files
        meta = read_json(files.meta)
        if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
            raise DataError("expected an object with a 'videos' object", file=files.meta, field="videos")
        if meta.get("version", P.VERSION) != P.VERSION:
            raise DataError(f"version {meta.get('version')!r} is not {P.VERSION}", file=files.meta, field="version")
        self.videos: dict[str, Any] = meta["videos"]
        for vid in self.videos:
            check_id(vid, file=files.meta, video=None, field="videos")
        self.sidecar = Sidecar.read(files.folder, target=NAME)

    def video_ids(self) -> list[str]:
        return list(self.videos)

    def _load(self, video_id: str) -> Video:
        mf = self.files.meta
        entry = self.videos[video_id]
        where = dict(file=mf, video=video_id)
        if not isinstance(entry, dict):
            raise DataError("expected an object", field=f"videos.{video_id}", **where)
        names = entry.get("frames")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError("expected a list of frame names", field="frames", **where)
        paths = match_frames(self.files.folder / P.IMAGES / video_id, names, video=video_id, meta_file=mf,
                             problems=self.problems)
        frames = [Frame(n, p) for n, p in zip(names, paths)]
        height, width = entry.get("height"), entry.get("width")
        if not isinstance(height, int) or not isinstance(width, int):
            if not frames:
                raise DataError("no frames and no 'height'/'width'", field="height", **where)
            height, width = _masks.image_size(frames[0].path, video=video_id)

        objects = entry.get("objects", {})
        if not isinstance(objects, dict):
            raise DataError("expected an object", field="objects", **where)
        values: dict[int, str] = {}
        tracks: list[Track] = []
        for key, obj in objects.items():
            f = f"objects.{key}"
            if not str(key).isdigit() or not 1 <= int(key) <= P.MAX_VALUE:
                raise DataError(f"palette value {key!r} is not in 1..{P.MAX_VALUE}", field=f, **where)
            if not isinstance(obj, dict) or not isinstance(obj.get("track_id"), (str, int)):
                raise DataError("expected an object with a 'track_id'", field=f, **where)
            values[int(key)] = str(obj["track_id"])
            tracks.append(Track(str(obj["track_id"]), obj.get("category"), obj.get("meta") or {}))
        expressions: list[Expression] = []
        exps = entry.get("expressions", {})
        if not isinstance(exps, dict):
            raise DataError("expected an object", field="expressions", **where)
        for exp_id, e in exps.items():
            f = f"expressions.{exp_id}"
            if not isinstance(e, dict) or not isinstance(e.get("exp"), str):
                raise DataError("expected an object with an 'exp' string", field=f, **where)
            obj_id = e.get("obj_id")
            if obj_id is None or not str(obj_id).isdigit() or int(obj_id) not in values:
                raise DataError(f"obj_id {obj_id!r} is not a value of 'objects'", field=f"{f}.obj_id", **where)
            kind = e.get("kind", "referring")
            if kind not in KINDS:
                raise DataError(f"kind {kind!r} is not one of {KINDS}", field=f"{f}.kind", **where)
            expressions.append(Expression(str(exp_id), e["exp"], (values[int(obj_id)],), kind,
                                          e.get("kind_raw", kind), e.get("meta") or {}))

        ann_dir = self.files.folder / P.ANNOTATIONS / video_id
        source: MaskSource | None = None
        if ann_dir.is_dir():
            source = DAVISMaskSource(ann_dir, names, values, height=height, width=width, video=video_id)
        video = Video(dataset=NAME, split=self.split, video_id=video_id, frames=frames, height=height, width=width,
                      tracks=tracks, expressions=expressions, fps=entry.get("fps"), meta=entry.get("meta") or {},
                      mask_source=source, source_file=str(mf))
        return self.sidecar.apply(video)


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open a DAVIS-style root (or one split folder) lazily.

    Args:
        path: the root (``<split>/meta_davis.json``) or one split folder.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded and left out).

    Raises:
        DataError: no ``meta_davis.json`` under ``path``, no such split, or a malformed file.

    Example:
        >>> ds = load("out/davis", split="valid")
        >>> video = ds["valid"].video("bike-packing")
        >>> video.frame_masks(0).keys()
    """
    path = Path(path)
    problems = ProblemLog(on_error)
    splits = _find_splits(path) if path.is_dir() else {}
    if not splits:
        raise DataError(f"no {P.META} in the folder or its split folders", file=path)
    if split is not None:
        if split not in splits:
            raise DataError(f"no split {split!r}; found {sorted(splits)}", file=path, field="split")
        splits = {split: splits[split]}
    readers: dict[str, SplitReader] = {n: DAVISSplit(f, problems=problems) for n, f in splits.items()}
    return Dataset(NAME, path, readers, version=None, problems=problems)


__all__ = ["DAVISMaskSource", "DAVISPaths", "DAVISSplit", "NAME", "detect", "load"]
