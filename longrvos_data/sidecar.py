"""What this package leaves inside a dataset folder it wrote, read by loaders and writers alike.

Readers must not depend on writers, so the sidecar's schema and reader live here, below
both `loaders` and `converters` (which writes it: `converters.base.write_sidecar`).

Sidecar (``<out>/<split>/longrvos_sidecar.json``), written only when something needs it::

    {"format": "longrvos-sidecar", "version": 1, "target": "davis", "split": "valid",
     "videos": {
       "<video_id>": {
         "expressions": [{"position": 3, "exp_id": "3", "text": "...", "track_ids": ["1", "2"],
                          "kind": "referring", "kind_raw": null, "meta": {}}],
         "tracks": [{"position": 0, "track_id": "7", "category": null, "meta": {}}],
         "masks": {"<track_id>": {"<frame index>": <RLE>}},
         "values": {"<key>": <value>}
       }}}

Reading it back (`Sidecar.apply`, called by each loader on each video):
``values.track_ids`` (``{id in the format: canonical id}``) renames tracks first; an
``expressions`` or ``tracks`` item whose id the format also has replaces it, the others
are inserted at their ``position`` in the video's lists; a ``masks`` entry replaces what
the format gives for that track in that frame (an RLE of area 0 is a mask that is present
but empty); ``values.has_masks = false`` removes the masks, ``values.fps`` and
``values.meta`` set the video's fields. Other ``values`` are per-format, documented by
each writer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import masks as _masks
from .errors import DataError
from .fsutil import atomic_write_json
from .loaders.base import read_json  # loaders.base must never import this module at its top
from .schema import Expression, MaskSource, Track, Video

SIDECAR = "longrvos_sidecar.json"
SIDECAR_FORMAT = "longrvos-sidecar"
SIDECAR_VERSION = 1

# -- what a conversion leaves in its output, read by every reader ------------------------
COMPLETE = ".longrvos_complete.json"
"""``OUT/<split>/.longrvos_complete.json``: a split's last write (target, settings, video count)."""
COMPLETE_FORMAT = "longrvos-complete"
LOCK = ".longrvos.lock"
"""``OUT/.longrvos.lock``: held (``fcntl.flock``) by the one conversion writing into OUT; stays."""
PARTS_DIR = ".longrvos_parts"
"""``OUT/.longrvos_parts/<target>/<split>/``: a folder writer's resume markers."""
HF_STATE = ".longrvos_hf"
"""``OUT/.longrvos_hf/``: the hf writer's resume state, removed when the output is finished."""
NOT_SPLITS = ("ImageSets", "data")   # folders writers put beside the splits (davis, hf)
INCOMPLETE = "incomplete conversion, re-run to resume"

@dataclass(frozen=True)
class SidecarVideo:
    """One video's sidecar entry, parsed and checked."""

    expressions: tuple[tuple[int, Expression], ...] = ()
    tracks: tuple[tuple[int, Track], ...] = ()
    masks: Mapping[str, Mapping[int, dict]] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)

    def merge_expressions(self, official: Sequence[Expression]) -> list[Expression]:
        return _merge(official, self.expressions, lambda e: e.exp_id)

    def merge_tracks(self, official: Sequence[Track]) -> list[Track]:
        return _merge(official, self.tracks, lambda t: t.track_id)

    def wrap(self, source: MaskSource | None, *, track_ids: Sequence[str]) -> MaskSource | None:
        """``source`` with this entry's masks laid over it (``source`` itself when none)."""
        if not self.masks:
            return source
        return SidecarMaskSource(source, self.masks, track_ids)


EMPTY_SIDECAR_VIDEO = SidecarVideo()


def _merge(official: Sequence[Any], kept: Sequence[tuple[int, Any]], key: Callable[[Any], str]) -> list[Any]:
    """``official`` with ``kept`` items replacing those of the same id, the rest inserted at their positions."""
    out = list(official)
    index = {key(item): i for i, item in enumerate(out)}
    inserts = []
    for position, item in kept:
        if key(item) in index:
            out[index[key(item)]] = item
        else:
            inserts.append((position, item))
    for position, item in sorted(inserts, key=lambda p: p[0]):
        out.insert(min(position, len(out)), item)
    return out


class RenamedMaskSource(MaskSource):
    """A mask source whose track ids are renamed (``{id in the format: canonical id}``)."""

    def __init__(self, base: MaskSource, names: Mapping[str, str]) -> None:
        self.base, self.names = base, dict(names)

    def _rename(self, d: dict) -> dict:
        return {self.names.get(k, k): v for k, v in d.items()}

    def masks(self, index: int) -> dict[str, np.ndarray]:
        return self._rename(self.base.masks(index))

    def rles(self, index: int) -> dict[str, dict]:
        return self._rename(self.base.rles(index))

    def areas(self, index: int) -> dict[str, int]:
        return self._rename(self.base.areas(index))

    def check(self, index: int) -> list[str]:
        return self.base.check(index)

    def findings(self) -> list:
        return self.base.findings()


class SidecarMaskSource(MaskSource):
    """A format's masks with the sidecar's exact masks laid over them, frame by frame."""

    def __init__(self, base: MaskSource | None, overrides: Mapping[str, Mapping[int, dict]],
                 track_ids: Sequence[str]) -> None:
        self.base, self.overrides = base, overrides
        self.order = {tid: i for i, tid in enumerate(track_ids)}

    def _sorted(self, d: dict) -> dict:
        return dict(sorted(d.items(), key=lambda kv: self.order.get(kv[0], len(self.order))))

    def masks(self, index: int) -> dict[str, np.ndarray]:
        out = self.base.masks(index) if self.base is not None else {}
        for tid, frames in self.overrides.items():
            if index in frames:
                out[tid] = _masks.decode(frames[index])
        return self._sorted(out)

    def rles(self, index: int) -> dict[str, dict]:
        out = self.base.rles(index) if self.base is not None else {}
        for tid, frames in self.overrides.items():
            if index in frames:
                out[tid] = frames[index]
        return self._sorted(out)

    def areas(self, index: int) -> dict[str, int]:
        out = self.base.areas(index) if self.base is not None else {}
        for tid, frames in self.overrides.items():
            if index in frames:
                out[tid] = int(_masks.area([frames[index]])[0])
        return self._sorted(out)

    def check(self, index: int) -> list[str]:
        return self.base.check(index) if self.base is not None else []

    def findings(self) -> list:
        return self.base.findings() if self.base is not None else []


class Sidecar:
    """A split's sidecar file; `video` gives one video's entry (empty when it has none).

    Example:
        >>> side = Sidecar.read(Path("out/davis/valid"))
        >>> expressions = side.video("v1", ...).merge_expressions(official)
    """

    def __init__(self, path: Path | None, videos: Mapping[str, Any]) -> None:
        self.path, self._videos = path, videos

    @classmethod
    def read(cls, folder: str | Path, *, target: str | None = None) -> "Sidecar":
        path = Path(folder) / SIDECAR
        if not path.is_file():
            return cls(None, {})
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise DataError(f"not a sidecar: expected an object with \"format\": \"{SIDECAR_FORMAT}\"", file=path)
        if data.get("version") != SIDECAR_VERSION:
            raise DataError(f"sidecar version {data.get('version')!r} is not {SIDECAR_VERSION}", file=path,
                            field="version")
        if target is not None and data.get("target") != target:
            raise DataError(f"sidecar was written for {data.get('target')!r}, not {target!r}", file=path,
                            field="target")
        videos = data.get("videos")
        if not isinstance(videos, dict):
            raise DataError("expected an object", file=path, field="videos")
        return cls(path, videos)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._videos

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def apply(self, video: Video) -> Video:
        """``video`` as the format gave it, completed with its sidecar entry (module docstring).

        Example:
            >>> video = sidecar.apply(video)     # in a loader's ``_load``
        """
        if video.video_id not in self._videos:
            return video
        side = self.video(video.video_id, num_frames=video.num_frames, height=video.height, width=video.width)
        names = side.values.get("track_ids") or {}
        if not isinstance(names, dict):
            raise DataError("expected an object", file=self.path, video=video.video_id,
                            field=f"videos.{video.video_id}.values.track_ids")
        tracks = [dataclasses.replace(t, track_id=str(names.get(t.track_id, t.track_id))) for t in video.tracks]
        expressions = [dataclasses.replace(e, track_ids=tuple(str(names.get(t, t)) for t in e.track_ids))
                       for e in video.expressions]
        tracks = side.merge_tracks(tracks)
        source = video.mask_source
        if side.values.get("has_masks") is False:
            source = None
        if source is not None:
            if names:
                source = RenamedMaskSource(source, names)
            source = side.wrap(source, track_ids=[t.track_id for t in tracks])
        changes: dict[str, Any] = dict(tracks=tuple(tracks), expressions=tuple(side.merge_expressions(expressions)),
                                       mask_source=source)
        if "fps" in side.values:
            changes["fps"] = side.values["fps"]
        if "meta" in side.values:
            changes["meta"] = side.values["meta"] or {}
        return dataclasses.replace(video, **changes)

    def video(self, video_id: str, *, num_frames: int, height: int, width: int) -> SidecarVideo:
        """Video ``video_id``'s entry, checked against the video's frame count and size."""
        raw = self._videos.get(video_id)
        if raw is None:
            return EMPTY_SIDECAR_VIDEO
        where = dict(file=self.path, video=video_id)
        if not isinstance(raw, dict):
            raise DataError("expected an object", field=f"videos.{video_id}", **where)
        try:
            expressions = tuple((int(e["position"]), Expression(
                str(e["exp_id"]), str(e["text"]), tuple(str(t) for t in e["track_ids"]), e["kind"],
                e.get("kind_raw"), e.get("meta") or {})) for e in raw.get("expressions", ()))
            tracks = tuple((int(t["position"]), Track(str(t["track_id"]), t.get("category"), t.get("meta") or {}))
                           for t in raw.get("tracks", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed entry ({type(exc).__name__}: {exc})", field=f"videos.{video_id}",
                            **where) from None
        masks: dict[str, dict[int, dict]] = {}
        for tid, frames in (raw.get("masks") or {}).items():
            if not isinstance(frames, dict):
                raise DataError("expected an object", field=f"videos.{video_id}.masks.{tid}", **where)
            for key, rle in frames.items():
                f = f"videos.{video_id}.masks.{tid}.{key}"
                if not key.isdigit() or int(key) >= num_frames:
                    raise DataError(f"frame index {key!r} is not in 0..{num_frames - 1}", field=f, **where)
                if not _masks.is_rle(rle):
                    raise DataError("expected an RLE {size, counts}", field=f, **where)
                if list(rle["size"]) != [height, width]:
                    raise DataError(f"RLE size {rle['size']} is not the video's [{height}, {width}]", field=f,
                                    **where)
                masks.setdefault(str(tid), {})[int(key)] = rle
        values = raw.get("values") or {}
        if not isinstance(values, dict):
            raise DataError("expected an object", field=f"videos.{video_id}.values", **where)
        return SidecarVideo(expressions, tracks, masks, values)


def write_complete(folder: str | Path, *, target: str, split: str, settings: Mapping[str, Any], videos: int) -> Path:
    """Mark ``folder`` (one split) complete: the last file a writer writes there."""
    path = Path(folder) / COMPLETE
    atomic_write_json(path, {"format": COMPLETE_FORMAT, "version": 1, "target": target, "split": split,
                             "settings": json.loads(json.dumps(dict(settings), default=str)), "videos": videos})
    return path


def read_complete(folder: str | Path) -> dict | None:
    """The split's completion mark, None when it has none."""
    path = Path(folder) / COMPLETE
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != COMPLETE_FORMAT:
        raise DataError(f"not a completion mark: expected an object with \"format\": \"{COMPLETE_FORMAT}\"",
                        file=path)
    return data


def unmark_complete(folder: str | Path) -> None:
    """Remove a split's mark before anything of it is rewritten (a killed rewrite then reads as incomplete)."""
    (Path(folder) / COMPLETE).unlink(missing_ok=True)


def _staged_split(name: str) -> str:
    """``.valid.k3j2x1.partial`` (a `fsutil.staged_dir`) -> ``valid``."""
    return name[1:].rsplit(".", 2)[0]


def incomplete_splits(root: str | Path) -> dict[str, Path]:
    """``{split: evidence}`` for each split under ``root`` that a conversion started and did not finish.

    Evidence: this package's partial-run files (resume markers, ``.partial`` staging
    folders, temporary files beside a split's files, the hf resume state) or the
    output's lock file, in a split folder without completion mark. A folder with
    neither is not an output of this package and gives nothing.
    """
    root = Path(root)
    lock, parts, hf_state = root / LOCK, root / PARTS_DIR, root / HF_STATE / "progress.json"
    staged = sorted(root.glob(".*.partial"))
    if not (lock.exists() or parts.is_dir() or hf_state.exists() or staged):
        return {}
    found: dict[str, Path] = {}
    if parts.is_dir():
        for folder in sorted(parts.glob("*/*")):
            found.setdefault(folder.name, folder)
    for folder in staged:
        found.setdefault(_staged_split(folder.name), folder)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in NOT_SPLITS:
            continue
        tmp = next(iter(folder.glob(".*.tmp")), None)
        if tmp is not None:
            found.setdefault(folder.name, tmp)
        elif lock.exists():
            found.setdefault(folder.name, lock)
    out = {s: p for s, p in found.items() if not (root / s / COMPLETE).is_file()}
    if hf_state.exists():
        try:
            splits = json.loads(hf_state.read_text("utf-8")).get("splits") or {}
        except (OSError, ValueError, AttributeError):
            splits = {"*": {}}
        out.update({s: hf_state for s, rec in splits.items() if not (isinstance(rec, dict) and rec.get("done"))})
    return out


def check_complete(path: str | Path, *, split: str | None = None) -> None:
    """Refuse a conversion output whose split (``split``, or any) was started and not finished.

    ``path`` is a dataset root or one split folder, as `loaders.load` takes it.

    Raises:
        DataError: naming the split folder and the evidence, "incomplete conversion, re-run to resume".

    Example:
        >>> check_complete("out/ytvis")      # after a killed `longrvos convert ... out/ytvis`
        DataError: out/ytvis/valid: field 'split': incomplete conversion, re-run to resume (...)
    """
    path = Path(path)
    for root, only in ((path, split), (path.parent, path.name)):
        if not root.is_dir():
            continue
        bad = incomplete_splits(root)
        if "*" in bad:
            bad = {only or "*": bad["*"]}
        if only is not None:
            bad = {s: p for s, p in bad.items() if s == only}
        for name, evidence in bad.items():
            raise DataError(f"{INCOMPLETE} (the same `longrvos convert` command finishes it; found {evidence})",
                            file=root if name == "*" else root / name, field="split")


__all__ = ["EMPTY_SIDECAR_VIDEO", "RenamedMaskSource", "SIDECAR", "SIDECAR_FORMAT", "SIDECAR_VERSION", "Sidecar",
           "SidecarMaskSource", "SidecarVideo", "COMPLETE", "LOCK", "PARTS_DIR",
           "HF_STATE", "INCOMPLETE", "check_complete", "incomplete_splits", "read_complete", "unmark_complete",
           "write_complete"]
