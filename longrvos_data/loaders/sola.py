"""SOLA candidate tracks: one JSON per SAM2 masklet, RLE per frame (seed 003).

SOLA (``sam2_tracks/{gt,grid}_tracks/<dataset>/<split>/``) stores, per video, one
``sam2_masklets/<vid>/NNNNN.json`` per track::

    {"anno_id": 0, "rle": [RLE per frame, original resolution], "prompt_type": "GT MASK",
     "iou": {"<gt anno_id>": float}, "precision": {...}, "recall": {...}}      (labels optional)

and ``sam2_object_tokens/<vid>/NNNNN.npy`` (T, 256), which this package neither reads nor
writes. The frames are the dataset's own, listed in sorted order. The layout read here is
the one `longrvos_data.converters.sola` writes, self-contained::

    sola/
      <split>/sam2_masklets/<vid>/NNNNN.json
      <split>/JPEGImages/<vid>/<frame>.jpg
      <split>/longrvos_sidecar.json      optional: what the format cannot hold

A path that is one split folder (holding ``sam2_masklets/``) loads that split.
GroundingDINO tracks (``sam2_masklets/<vid>/<exp_id>/NNNNN.json``) are refused.

Canonical mapping:
- video ids: the folders of ``JPEGImages`` (sorted); frames: their image files, sorted;
  size from the first RLE (or the first frame when the video has no tracks).
- one track per masklet file, in file-name order; its id is ``longrvos.track_id`` (this
  package's extension) when present, else ``str(anno_id)``.
- an RLE of area 0 (or null) is an absent mask (SAM2 writes an RLE for every frame).
- a video without ``sam2_masklets/<vid>/`` has no masks; expressions come from the sidecar.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import masks as _masks
from ..errors import DataError, OnError, ProblemLog
from ..schema import Frame, RLEMaskSource, Track, Video, check_id
from .base import Dataset, Detection, SplitReader, check_rle_counts, list_images, read_json

log = logging.getLogger("longrvos_data")

NAME = "sola"


class SOLAPaths:
    """File and folder names of the layout."""

    MASKLETS = "sam2_masklets"
    TOKENS = "sam2_object_tokens"
    IMAGES = "JPEGImages"
    EXTENSION = "longrvos"
    KEYS = ("anno_id", "rle", "prompt_type")


P = SOLAPaths


@dataclass(frozen=True)
class _SplitFiles:
    name: str
    folder: Path


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _find_splits(path: Path) -> dict[str, _SplitFiles]:
    if (path / P.MASKLETS).is_dir():
        return {path.name: _SplitFiles(path.name, path)}
    return {d.name: _SplitFiles(d.name, d) for d in _subdirs(path) if (d / P.MASKLETS).is_dir()}


def _masklet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def detect(path: str | Path) -> Detection:
    """How well ``path`` matches SOLA tracks: probes one masklet JSON's keys.

    Example:
        >>> detect("out/sola").confidence
        1.0
    """
    path = Path(path)
    if not path.is_dir():
        return Detection(NAME, 0.0, (f"{path} is not a folder",))
    splits = _find_splits(path)
    if not splits:
        return Detection(NAME, 0.0, (f"no {P.MASKLETS}/ in the folder or its split folders",))
    reasons = [f"found {P.MASKLETS}/ in {', '.join(sorted(splits))}"]
    for files in splits.values():
        for vdir in _subdirs(files.folder / P.MASKLETS):
            jsons = _masklet_files(vdir)
            if not jsons:
                continue
            try:
                data = read_json(jsons[0])
            except DataError as err:
                return Detection(NAME, 0.2, tuple(reasons + [f"{jsons[0]} cannot be parsed ({err.message})"]))
            if not isinstance(data, dict) or not all(k in data for k in P.KEYS):
                return Detection(NAME, 0.0, tuple(reasons + [f"{jsons[0].name} lacks {', '.join(P.KEYS)}"]))
            return Detection(NAME, 1.0, tuple(reasons + [f"{jsons[0].name} has {', '.join(P.KEYS)}"]))
    return Detection(NAME, 0.5, tuple(reasons + ["no masklet file to probe"]))


class SOLASplit(SplitReader):
    """One split of SOLA tracks, read a video at a time."""

    format = NAME

    def __init__(self, files: _SplitFiles, *, problems: ProblemLog) -> None:
        super().__init__(files.folder, files.name, problems=problems)
        from ..sidecar import Sidecar

        self.files = files
        images = files.folder / P.IMAGES
        if not images.is_dir():
            raise DataError(f"no {P.IMAGES}/ beside {P.MASKLETS}/ (the frames are needed)", file=files.folder,
                            field=P.IMAGES)
        self._ids = [check_id(d.name, file=images, video=None, field="video_id") for d in _subdirs(images)]
        known = set(self._ids)
        for d in _subdirs(files.folder / P.MASKLETS):
            if d.name not in known:
                problems.warning(f"masklets of video {d.name!r}, which has no frame folder, are ignored",
                                 file=files.folder / P.MASKLETS, video=d.name, field=P.MASKLETS)
        self.sidecar = Sidecar.read(files.folder, target=NAME)

    def video_ids(self) -> list[str]:
        return list(self._ids)

    def _load(self, video_id: str) -> Video:
        images = list_images(self.files.folder / P.IMAGES / video_id, video=video_id)
        names = sorted(images)
        frames = [Frame(n, images[n]) for n in names]
        mdir = self.files.folder / P.MASKLETS / video_id
        masklets: list[tuple[Path, dict[str, Any]]] = []
        if mdir.is_dir():
            if any(_subdirs(mdir)):
                raise DataError("per-expression (GroundingDINO) track folders are not read", file=mdir,
                                video=video_id, field=P.MASKLETS)
            for path in _masklet_files(mdir):
                data = read_json(path, video=video_id)
                if not isinstance(data, dict) or not all(k in data for k in P.KEYS):
                    raise DataError(f"expected an object with {', '.join(P.KEYS)}", file=path, video=video_id,
                                    field="masklet")
                if not isinstance(data["rle"], list) or len(data["rle"]) != len(frames):
                    n = len(data["rle"]) if isinstance(data["rle"], list) else "no"
                    raise DataError(f"{n} RLEs for {len(frames)} frames", file=path, video=video_id, field="rle")
                masklets.append((path, data))
        first = next((r for _, d in masklets for r in d["rle"] if r is not None), None)
        if first is not None and _masks.is_rle(first):
            height, width = (int(v) for v in first["size"])
        elif frames:
            height, width = _masks.image_size(frames[0].path, video=video_id)
        else:
            raise DataError("no frames and no masks: the frame size is unknown", file=mdir, video=video_id,
                            field="frames")
        tracks = []
        for path, data in masklets:
            ext = data.get(P.EXTENSION) or {}
            tid = str(ext["track_id"]) if "track_id" in ext else str(data["anno_id"])
            tracks.append(Track(tid, ext.get("category"), ext.get("meta") or {"anno_id": data["anno_id"],
                                                                              "prompt_type": data["prompt_type"]}))
        track_ids = [t.track_id for t in tracks]
        source = None
        if mdir.is_dir():
            source = RLEMaskSource(lambda: _tracks(masklets, track_ids, height, width, video_id))
        video = Video(dataset=NAME, split=self.split, video_id=video_id, frames=frames, height=height, width=width,
                      tracks=tracks, expressions=(), mask_source=source, source_file=str(mdir))
        return self.sidecar.apply(video)


def _tracks(masklets: list[tuple[Path, dict]], track_ids: list[str], height: int, width: int,
            video: str) -> dict[str, list]:
    """``{track_id: [RLE | None per frame]}``; empty RLEs become None (absent). Each RLE is
    checked for shape, size and counts (`base.check_rle_counts`, one masklet file at once)."""
    out: dict[str, list] = {}
    for (path, data), tid in zip(masklets, track_ids):
        seq = data["rle"]
        for t, rle in enumerate(seq):
            if rle is None:
                continue
            if not _masks.is_rle(rle):
                raise DataError("expected an RLE {size, counts} or null", file=path, video=video, field=f"rle[{t}]")
            if [int(v) for v in rle["size"]] != [height, width]:
                raise DataError(f"RLE size {rle['size']} is not the video's [{height}, {width}]", file=path,
                                video=video, field=f"rle[{t}]")
        present = [t for t, r in enumerate(seq) if r is not None]
        check_rle_counts([seq[t] for t in present], [f"rle[{t}]" for t in present], file=path, video=video)
        areas = _masks.area([seq[t] for t in present])
        out[tid] = [None] * len(seq)
        for t, a in zip(present, areas):
            if a:
                out[tid][t] = seq[t]
    return out


def load(path: str | Path, *, split: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Open SOLA tracks (a root of split folders, or one split folder) lazily.

    Args:
        path: the root (``<split>/sam2_masklets/``) or one split folder.
        split: read only this split.
        on_error: ``"raise"`` or ``"skip"`` (bad videos are recorded and left out).

    Raises:
        DataError: no ``sam2_masklets/`` under ``path``, no frames, or no such split.

    Example:
        >>> ds = load("out/sola", split="valid_u")
        >>> video = next(iter(ds["valid_u"]))
        >>> [t.track_id for t in video.tracks]
    """
    path = Path(path)
    problems = ProblemLog(on_error)
    splits = _find_splits(path) if path.is_dir() else {}
    if not splits:
        raise DataError(f"no {P.MASKLETS}/ in the folder or its split folders", file=path)
    if split is not None:
        if split not in splits:
            raise DataError(f"no split {split!r}; found {sorted(splits)}", file=path, field="split")
        splits = {split: splits[split]}
    readers: dict[str, SplitReader] = {n: SOLASplit(f, problems=problems) for n, f in splits.items()}
    return Dataset(NAME, path, readers, version=None, problems=problems)


__all__ = ["NAME", "SOLAPaths", "SOLASplit", "detect", "load"]
