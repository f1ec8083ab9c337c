"""Write canonical videos (from any source) in the LVOS layout.

Output, one folder per split::

    <out>/<split>/
      JPEGImages/<video_id>/<frame><ext>     the source's frame files, linked or copied
      Annotations/<video_id>/<frame>.png     one palette PNG per frame: pixel = object id
      <split>_meta.json                      objects and frame ranges
      <split>_expression_meta.json           when the split has captions
      <split>_meta_attribute.json            when LVOS v2 attributes are in Video.meta

Rules:

- Track ids must be plain integers 1..254 (a palette pixel holds one id; 0 is background,
  255 void) and masks must not overlap: anything else is refused with a `DataError`
  naming the video and field. A present-but-empty mask cannot be told from an absent one
  in a palette PNG; it is written as absent. The canonical schema has no void label, so
  LVOS void pixels (255) read from a source come back as background.
- ``frame_range`` is the track's own (``Track.meta["frame_range"]``, e.g. from an LVOS
  source); otherwise it is computed from the masks: first and last frame where the
  object is present and the number of such frames.
- Expressions must be captions, one per object (``kind="caption"``, one track); they go
  to ``<split>_expression_meta.json``. Other expressions are refused: LVOS holds none.
- An LVOS source's per-video v2 fields (``set``, ``attributes``, ``num_scribbles``,
  ``name``, ``image_size``) are written to the attribute file, whose top-level ``sets``
  and ``attributes`` are the sorted unions of the videos' values.
- A video without masks gets no ``Annotations/<video_id>`` and needs a ``frame_range`` on
  every track. Each split is written into a temporary folder that replaces
  ``<out>/<split>`` only when the whole split is written.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import DataError
from ..fsutil import atomic_write_json, link_or_copy, staged_dir
from ..loaders.lvos import ATTRIBUTE_KEYS, NAME, VOID, LVOSPaths
from ..masks import write_palette_png
from ..schema import Video, check_id

log = logging.getLogger("longrvos_data")

_PLAIN_INT = re.compile(r"^[1-9][0-9]*$")


def write(by_split: Mapping[str, Iterable[Video]], out: str | Path) -> None:
    """Write every split of ``by_split`` under ``out`` in the LVOS layout.

    Args:
        by_split: ``{split name: videos}``; videos may come from any loader or from `synth`.
        out: dataset root; ``out/<split>`` is created or replaced.

    Raises:
        DataError: a video holds something LVOS cannot (see the module docstring);
            nothing of that split is left behind.

    Example:
        >>> ds = longrvos_data.load("data/long_rvos", split="valid")
        >>> write({"valid": ds["valid"]}, Path("out/lvos"))    # refuses its expressions
    """
    out = Path(out)
    for split, videos in by_split.items():
        check_id(split, file=out, video=None, field="split")
        with staged_dir(out / split) as tmp:
            _write_split(split, videos, tmp)
        log.info("wrote LVOS split %s to %s", split, out / split)


def _write_split(split: str, videos: Iterable[Video], folder: Path) -> None:
    meta: dict[str, dict] = {}
    captions: dict[str, dict] = {}
    attributes: dict[str, dict] = {}
    any_caption = False
    for video in videos:
        vid = video.video_id
        if vid in meta:
            raise DataError("video id is used twice in this split", video=vid, field="video_id")
        ids = _track_values(video)
        texts = _caption_texts(video)
        _write_frames(video, folder / LVOSPaths.IMAGES / vid)
        ranges = _write_masks(video, folder / LVOSPaths.ANNOTATIONS / vid, ids) if video.mask_source else {}
        objects: dict[str, dict] = {}
        for t in video.tracks:
            fr = t.meta.get("frame_range")
            if not isinstance(fr, Mapping):
                fr = ranges.get(t.track_id)
            if fr is None:
                why = "the video has no masks" if video.mask_source is None else "the object is never present"
                raise DataError(f"LVOS needs a frame_range for every object and {why}", file=video.source_file,
                                video=vid, field=f"tracks.{t.track_id}.frame_range")
            kept = {k: v for k, v in t.meta.items() if k != "frame_range"} if video.dataset == NAME else {}
            objects[t.track_id] = {**kept, "frame_range": dict(fr)}
        extra = dict(video.meta) if video.dataset == NAME else {}
        attr = {k: extra.pop(k) for k in ATTRIBUTE_KEYS if k in extra}
        meta[vid] = {**extra, "objects": objects}
        captions[vid] = {"objects": {tid: ({**obj, "caption": texts[tid]} if tid in texts else dict(obj))
                                     for tid, obj in objects.items()}}
        any_caption |= bool(texts)
        if attr:
            attr["image_size"] = [video.height, video.width]
            attributes[vid] = {"objects": objects, **attr}
    atomic_write_json(folder / LVOSPaths.META.format(split=split), {"videos": meta})
    if any_caption:
        atomic_write_json(folder / LVOSPaths.EXPRESSION_META.format(split=split), {"videos": captions})
    if attributes:
        for vid, obj in meta.items():
            attributes.setdefault(vid, {"objects": obj["objects"]})
        sets = sorted({str(a["set"]) for a in attributes.values() if a.get("set") is not None})
        names = sorted({str(x) for a in attributes.values() for x in (a.get("attributes") or [])})
        atomic_write_json(folder / LVOSPaths.ATTRIBUTE_META.format(split=split),
                          {"sets": sets, "attributes": names, "videos": {v: attributes[v] for v in meta}})


def _track_values(video: Video) -> dict[str, int]:
    """``{track_id: pixel value}``; ids must be plain integers 1..254."""
    out: dict[str, int] = {}
    for t in video.tracks:
        tid = t.track_id
        if not _PLAIN_INT.match(tid) or int(tid) >= VOID:
            raise DataError(f"LVOS object ids are pixel values 1..254; track id {tid!r} is not one",
                            file=video.source_file, video=video.video_id, field=f"tracks.{tid}")
        out[tid] = int(tid)
    return out


def _caption_texts(video: Video) -> dict[str, str]:
    """``{track_id: caption}``; refuses expressions LVOS cannot hold."""
    out: dict[str, str] = {}
    for e in video.expressions:
        where = dict(file=video.source_file, video=video.video_id)
        field = f"expressions.{e.exp_id}"
        if e.kind != "caption":
            raise DataError(f"LVOS holds only captions (one per object); kind {e.kind!r} cannot be written",
                            field=f"{field}.kind", **where)
        if len(e.track_ids) != 1:
            raise DataError(f"an LVOS caption names exactly one object, this one names {len(e.track_ids)}",
                            field=f"{field}.track_ids", **where)
        tid = e.track_ids[0]
        if tid in out:
            raise DataError(f"object {tid!r} has a second caption; LVOS holds one per object",
                            field=f"{field}.track_ids", **where)
        if not e.text.strip():
            raise DataError("caption is empty", field=f"{field}.text", **where)
        out[tid] = e.text
    return out


def _write_frames(video: Video, folder: Path) -> None:
    """Link (or copy) each frame file to ``folder/<name><source extension>``; never re-encode."""
    for i, f in enumerate(video.frames):
        check_id(f.name, file=video.source_file, video=video.video_id, field=f"frames[{i}]")
        link_or_copy(f.path, folder / f"{f.name}{Path(f.path).suffix}")


def _write_masks(video: Video, folder: Path, ids: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """One palette PNG per frame; returns each present track's computed ``frame_range``."""
    first: dict[str, tuple[int, str]] = {}  # track -> (frame index, frame name)
    last: dict[str, tuple[int, str]] = {}
    where = dict(file=video.source_file, video=video.video_id)
    for i, name in enumerate(video.frame_names):
        canvas = np.zeros((video.height, video.width), dtype=np.uint8)
        for tid, mask in video.frame_masks(i).items():
            field = f"masks[{i}].{tid}"
            if tid not in ids:
                raise DataError(f"mask for unknown track {tid!r}", field=field, **where)
            if mask.shape != canvas.shape:
                raise DataError(f"mask is {mask.shape}, the video is {video.height}x{video.width}", field=field,
                                **where)
            if not mask.any():
                continue
            taken = canvas[mask]
            if taken.any():
                others = sorted({str(v) for v in np.unique(taken[taken > 0])})
                raise DataError(f"mask overlaps track(s) {others} at frame {name!r}; a palette PNG holds one "
                                "object per pixel", field=field, **where)
            canvas[mask] = ids[tid]
            first.setdefault(tid, (i, name))
            last[tid] = (i, name)
        write_palette_png(folder / f"{name}{LVOSPaths.MASK_EXT}", canvas)
    # frame_nums counts the frames from start to end inclusive, present or not (as the release
    # does: 00000001..00002296 gives 460); the official toolkit sizes its arrays with it.
    return {tid: {"start": first[tid][1], "end": last[tid][1], "frame_nums": last[tid][0] - first[tid][0] + 1}
            for tid in first}


__all__ = ["write"]
