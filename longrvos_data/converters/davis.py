"""Write canonical videos as DAVIS-style palette PNG folders with a Ref-DAVIS-like expression file.

Output (read back by `longrvos_data.loaders.davis`, whose docstring gives the JSON schema)::

    out/
      ImageSets/<split>.txt                  video ids, one a line
      <split>/JPEGImages/<vid>/<frame>.jpg   the source's frame files, linked or copied
      <split>/Annotations/<vid>/<frame>.png  palette PNG per frame (videos with masks), DAVIS palette
      <split>/meta_davis.json                frames, size, fps, the object table, expressions
      <split>/longrvos_sidecar.json          what the format cannot hold (not with lossy)

Palette values: a video whose track ids are all integers 1..254 keeps them as pixel
values; otherwise tracks get 1, 2, ... in order. ``meta_davis.json`` maps every value
back to the source's track id, so ids of any form survive.

What a palette PNG and a one-object expression cannot hold, and where it goes (sidecar,
or dropped and listed with ``lossy=True``, or refused with ``sidecar=False``):
- overlapping masks: each pixel shows the last track painted (track order); a track whose
  mask the PNG does not show exactly gets its exact mask in sidecar ``masks`` for that frame;
- a mask that is present but empty (the PNG shows it absent): sidecar ``masks`` (empty RLE);
- tracks beyond the 254th of one video (no palette value left): sidecar ``tracks`` and
  every frame's mask in ``masks``;
- expressions naming several tracks, none (no-target), or a track without palette value:
  sidecar ``expressions``.

Videos are written one at a time, resumable and in parallel (`converters.base.write_streaming`);
``meta_davis.json`` and the ImageSets list are written at the end of each split.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import masks as _masks
from ..errors import DataError, OnError
from ..fsutil import FrameMode, atomic_write_bytes
from ..loaders.davis import DAVISPaths as P
from ..schema import Video
from .base import (Keeper, SplitJob, WriteReport, cleaned_on_error, json_object_chunks, jsonable, write_json_chunks,
                   write_streaming)
from .ytvis import frame_options, copy_frames

NAME = "davis"
_NATURAL = re.compile(r"^[1-9][0-9]*$")


def palette_values(video: Video) -> dict[str, int]:
    """``{track_id: pixel value}`` for up to 254 tracks (the ids themselves when they are 1..254)."""
    ids = [t.track_id for t in video.tracks]
    if all(_NATURAL.match(t) and int(t) <= P.MAX_VALUE for t in ids):
        return {t: int(t) for t in ids}
    return {t: k + 1 for k, t in enumerate(ids[:P.MAX_VALUE])}


def _write_video(video: Video, *, out: str, split: str, lossy: bool, sidecar: bool,
                 frames: FrameMode = "hardlink") -> dict:
    """Write one video's frames and PNGs; return its marker with its ``meta_davis.json`` entry."""
    folder = Path(out) / split
    with cleaned_on_error(folder / P.IMAGES / video.video_id, folder / P.ANNOTATIONS / video.video_id):
        return _video_part(video, folder, split=split, lossy=lossy, sidecar=sidecar, mode=frames)


def _video_part(video: Video, folder: Path, *, split: str, lossy: bool, sidecar: bool, mode: FrameMode) -> dict:
    keep = Keeper(video, split=split, target=NAME, lossy=lossy, sidecar=sidecar)
    vid = video.video_id
    copy_frames(video, folder / P.IMAGES / vid, mode=mode)
    values = palette_values(video)

    objects: dict[str, Any] = {}
    for pos, t in enumerate(video.tracks):
        if t.track_id in values:
            objects[str(values[t.track_id])] = {"track_id": t.track_id, "category": t.category,
                                                "meta": jsonable(dict(t.meta))}
        else:
            keep.track(pos, t, f"no palette value left: more than {P.MAX_VALUE} objects in the video")
    expressions: dict[str, Any] = {}
    for pos, e in enumerate(video.expressions):
        if len(e.track_ids) != 1:
            what = "no object (no-target)" if not e.track_ids else f"{len(e.track_ids)} objects"
            keep.expression(pos, e, f"names {what}; the DAVIS expression file holds one object per expression")
        elif e.track_ids[0] not in values:
            keep.expression(pos, e, f"names track {e.track_ids[0]!r}, which has no palette value")
        else:
            expressions[e.exp_id] = {"exp": e.text, "obj_id": str(values[e.track_ids[0]]), "kind": e.kind,
                                     "kind_raw": jsonable(e.kind_raw), "meta": jsonable(dict(e.meta))}
    if video.has_masks:
        _write_masks(video, folder / P.ANNOTATIONS / vid, values, keep)
    entry = {"frames": video.frame_names, "height": video.height, "width": video.width, "fps": video.fps,
             "meta": jsonable(dict(video.meta)), "objects": objects, "expressions": expressions}
    return keep.part(entry=entry)


def _write_masks(video: Video, folder: Path, values: Mapping[str, int], keep: Keeper) -> None:
    """One palette PNG per frame; what a PNG cannot show exactly goes to ``keep``."""
    shape = (video.height, video.width)
    order = {t.track_id: k for k, t in enumerate(video.tracks)}
    for i, name in enumerate(video.frame_names):
        masks = video.frame_masks(i)
        labels = np.zeros(shape, dtype=np.uint8)
        for tid in sorted(masks, key=lambda t: order.get(t, len(order))):
            mask = masks[tid]
            where = dict(file=video.source_file, video=video.video_id, field=f"masks[{i}].{tid}")
            if tid not in order:
                raise DataError(f"mask of unknown track {tid!r}", **where)
            if mask.shape != shape:
                raise DataError(f"mask is {mask.shape[0]}x{mask.shape[1]}, the video is {shape[0]}x{shape[1]}",
                                **where)
            if tid in values:
                labels[mask] = values[tid]
        for tid, mask in masks.items():
            if tid not in values:
                keep.mask(tid, i, _masks.encode(mask), f"no palette value left: more than {P.MAX_VALUE} objects")
            elif not mask.any():
                keep.mask(tid, i, _masks.encode(mask), "present but empty: a palette PNG shows it absent")
            else:
                shown = labels == values[tid]
                if not np.array_equal(shown, mask):
                    lost = int(np.count_nonzero(mask & ~shown))
                    keep.mask(tid, i, _masks.encode(mask),
                              f"overlap: a palette PNG holds one object per pixel ({lost} pixel(s) covered)")
        _masks.write_palette_png(folder / f"{name}.png", labels)


def _finish_split(out: Path, split: str, job: SplitJob, order: list[str], *, lossy: bool, sidecar: bool,
                  report: WriteReport, frames: FrameMode = "hardlink") -> None:
    """Write ``<split>/meta_davis.json`` and ``ImageSets/<split>.txt`` from the markers."""
    head = f'{{"format": "{P.FORMAT_TAG}", "version": {P.VERSION}, "videos": '
    pairs = ((p["video_id"], p["data"]["entry"]) for p in job.parts(order))
    write_json_chunks(Path(out) / split / P.META, [head, *json_object_chunks(pairs), "}"])
    atomic_write_bytes(Path(out) / P.IMAGESETS / f"{split}.txt", "".join(f"{v}\n" for v in order).encode("utf-8"))


def write(by_split: Mapping[str, Any], out: str | Path, *, lossy: bool = False, sidecar: bool = True,
          workers: int = 1, progress: bool = False, on_error: OnError = "raise",
          frames: FrameMode = "hardlink") -> WriteReport:
    """Write videos as DAVIS-style palette PNG folders under ``out`` (layout in the module docstring).

    Args:
        by_split: ``{split: SplitReader or iterable of Video}``.
        out: the output root.
        lossy: leave out (and list in the report) what the format cannot hold instead of
            keeping it in ``<split>/longrvos_sidecar.json``.
        sidecar: False refuses what the format cannot hold (`DataError`) instead of keeping it.
        workers: processes per split (SplitReader sources).
        progress: show a progress bar.
        on_error: ``"skip"`` leaves bad videos out (listed in ``report.problems``).
        frames: how frame files get into the output: ``"hardlink"`` (default; a copy across
            file systems: editing such an output frame in place changes the source),
            ``"copy"`` or ``"symlink"``.

    Returns:
        The `WriteReport`.

    Raises:
        DataError: bad input (a mask of the wrong size, an unknown track), with ``on_error="raise"``.

    Example:
        >>> ds = longrvos_data.load("data/mevis", split="valid_u")
        >>> report = write(ds.splits, "out/mevis_davis")
        >>> [str(d) for d in report.dropped]
        []
    """
    return write_streaming(by_split, out, target=NAME, write_video=_write_video, finish_split=_finish_split,
                           lossy=lossy, sidecar=sidecar, workers=workers, progress=progress, on_error=on_error,
                           options=frame_options(frames))


__all__ = ["NAME", "palette_values", "write"]
