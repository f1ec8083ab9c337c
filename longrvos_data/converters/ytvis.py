"""Write canonical videos as YouTube-VIS / COCO-video JSON with RLE masks.

Output (the YouTube-VIS 2021 layout; read back by `longrvos_data.loaders.ytvis`)::

    out/
      <split>/instances.json            {"info", "licenses", "categories", "videos", "annotations"}
      <split>/JPEGImages/<vid>/<frame>.jpg   the source's frame files, linked or copied
      <split>/longrvos_sidecar.json     what the format cannot hold (see below; not with lossy)

- ``videos[k]``: ``id`` = k + 1, ``width``, ``height``, ``length``, ``file_names``
  (``"<vid>/<frame><ext>"``, relative to ``<split>/JPEGImages``); the extension object
  ``"longrvos": {"fps", "meta"}`` when the video has them.
- one ``annotations`` entry per track of a video with masks: ``id`` (1, 2, ... over the
  split), ``video_id``, ``category_id``, ``iscrowd`` 0, ``width``/``height``/``length``,
  ``segmentations`` (RLE with str counts, or null where the track is absent), ``areas``
  and ``bboxes`` (``[x, y, w, h]``, pycocotools) per frame, null where absent; and the
  extension ``"longrvos": {"track_id", "category", "meta"}`` (source ids are kept; other
  tools ignore the key).
- ``categories``: one per category name in order of first use; a track without category
  is written under ``"object"`` (``longrvos.category`` keeps the null).
- a split in which no video has masks is written without ``annotations`` (as the
  official valid and test files).

What YouTube-VIS cannot hold, and where it goes (sidecar, or dropped and listed with
``lossy=True``, or refused with ``sidecar=False``):
- expressions (the format has none): sidecar ``expressions``;
- a mask that is present but empty: YouTube-VIS writes null, which reads as absent;
  sidecar ``masks`` keeps the empty RLE;
- the tracks of a video without masks (annotations exist only with segmentations):
  sidecar ``tracks``, and ``values.has_masks = false``.

Videos are written one at a time, resumable and in parallel (`converters.base.write_streaming`);
``instances.json`` is assembled at the end of each split, streaming, and renamed into place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from .. import masks as _masks
from ..errors import DataError, OnError
from ..fsutil import FrameMode, link_or_copy
from ..loaders.ytvis import YTVISPaths as P
from ..schema import Video
from .base import (Dropped, Keeper, SplitJob, WriteReport, cleaned_on_error, json_array_chunks, jsonable,
                   write_json_chunks, write_streaming)

NAME = "ytvis"
DEFAULT_CATEGORY = "object"
_FRAME_EXTS = (".jpg", ".jpeg", ".png")


def frame_files(video: Video) -> list[str]:
    """Each frame's file name ``<name><ext>`` (the source's extension; JPEG or PNG)."""
    out = []
    for i, f in enumerate(video.frames):
        suffix = Path(f.path).suffix.lower() or ".jpg"
        if suffix not in _FRAME_EXTS:
            raise DataError(f"frame file {f.path} is not a JPEG or PNG", file=video.source_file,
                            video=video.video_id, field=f"frames[{i}]")
        out.append(f"{f.name}{suffix}")
    return out


def copy_frames(video: Video, folder: Path, names: list[str] | None = None, mode: FrameMode = "hardlink") -> list[str]:
    """Put the video's frames into ``folder`` as ``names`` (default `frame_files`), hard-linked,
    copied or symlinked (``mode``, `fsutil.link_or_copy`); returns the file names."""
    names = frame_files(video) if names is None else names
    for f, name in zip(video.frames, names):
        link_or_copy(f.path, folder / name, mode)
    return names


def checked_rle(video: Video, rle: Any, *, frame: int, track_id: str) -> dict:
    """An RLE of the video's size with str counts; `DataError` naming video, frame and track otherwise."""
    where = dict(file=video.source_file, video=video.video_id, field=f"masks[{frame}].{track_id}")
    if not _masks.is_rle(rle):
        raise DataError("mask is not an RLE", **where)
    if [int(v) for v in rle["size"]] != [video.height, video.width]:
        raise DataError(f"RLE size {list(rle['size'])} is not the video's [{video.height}, {video.width}]", **where)
    counts = rle["counts"]
    if isinstance(counts, bytes):
        return {"size": [video.height, video.width], "counts": counts.decode("ascii")}
    if isinstance(counts, list):
        return _masks.encode(_masks.decode(rle))
    return {"size": [video.height, video.width], "counts": counts}


def _write_video(video: Video, *, out: str, split: str, lossy: bool, sidecar: bool,
                 frames: FrameMode = "hardlink") -> dict:
    """Write one video's frames; return its marker with its video entry and annotations."""
    folder = Path(out) / split / P.IMAGES / video.video_id
    with cleaned_on_error(folder):
        return _video_part(video, folder, split=split, lossy=lossy, sidecar=sidecar, mode=frames)


def _video_part(video: Video, frames: Path, *, split: str, lossy: bool, sidecar: bool, mode: FrameMode) -> dict:
    keep = Keeper(video, split=split, target=NAME, lossy=lossy, sidecar=sidecar)
    vid = video.video_id
    names = copy_frames(video, frames, mode=mode)
    for pos, e in enumerate(video.expressions):
        keep.expression(pos, e, "YouTube-VIS has no expressions")
    entry: dict[str, Any] = {"width": video.width, "height": video.height, "length": video.num_frames,
                             "file_names": [f"{vid}/{n}" for n in names]}
    ext: dict[str, Any] = {}
    if video.fps is not None:
        ext["fps"] = video.fps
    if video.meta:
        ext["meta"] = jsonable(dict(video.meta))
    if ext:
        entry[P.EXTENSION] = ext
    if not video.has_masks:
        for pos, t in enumerate(video.tracks):
            keep.track(pos, t, "the video has no masks and YouTube-VIS lists objects only with their masks")
        keep.note("has_masks", False)   # needed when other videos of the split have masks (_finish_split)
        return keep.part(video=entry, annotations=[], has_masks=False)

    n = video.num_frames
    segs: dict[str, list] = {t.track_id: [None] * n for t in video.tracks}
    for i in range(n):
        for tid, rle in video.frame_rles(i).items():
            if tid not in segs:
                raise DataError(f"mask of unknown track {tid!r}", file=video.source_file, video=vid,
                                field=f"masks[{i}]")
            segs[tid][i] = checked_rle(video, rle, frame=i, track_id=tid)
    annotations = []
    for t in video.tracks:
        seq = segs[t.track_id]
        present = [i for i, r in enumerate(seq) if r is not None]
        rles = [seq[i] for i in present]
        areas, boxes = _masks.area(rles), _masks.bbox(rles)
        area_list: list = [None] * n
        box_list: list = [None] * n
        for i, a, b in zip(present, areas, boxes):
            if a == 0:
                keep.mask(t.track_id, i, seq[i], "present but empty: YouTube-VIS writes null, which reads as absent")
                seq[i] = None
            else:
                area_list[i] = int(a)
                box_list[i] = [float(x) for x in b]
        annotations.append({"category": t.category, "segmentations": seq, "areas": area_list, "bboxes": box_list,
                            P.EXTENSION: {"track_id": t.track_id, "category": t.category,
                                          "meta": jsonable(dict(t.meta))}})
    return keep.part(video=entry, annotations=annotations, has_masks=True)


def _finish_split(out: Path, split: str, job: SplitJob, order: list[str], *, lossy: bool, sidecar: bool,
                  report: WriteReport, frames: FrameMode = "hardlink") -> None:
    """Assemble ``<split>/instances.json`` from the markers, streaming."""
    categories: dict[str, int] = {}
    annotated = False
    for part in job.parts(order):
        data = part["data"]
        annotated = annotated or data["has_masks"]
        for ann in data["annotations"]:
            categories.setdefault(ann["category"] or DEFAULT_CATEGORY, len(categories) + 1)
    if annotated and (lossy or not sidecar):
        reason = "the video has no masks but its split has; it would read back with masks, all absent"
        for part in job.parts(order):
            if part["data"]["has_masks"]:
                continue
            if not lossy:
                raise DataError(f"{reason} (pass lossy=True / --lossy, or keep a sidecar)",
                                video=part["video_id"], field="masks")
            report.dropped.append(Dropped(split, part["video_id"], "value", reason, key="has_masks"))

    def videos() -> Iterator[dict]:
        for k, part in enumerate(job.parts(order)):
            yield {"id": k + 1, **part["data"]["video"]}

    def annotations() -> Iterator[dict]:
        ann_id = 0
        for k, part in enumerate(job.parts(order)):
            video = part["data"]["video"]
            for ann in part["data"]["annotations"]:
                ann_id += 1
                yield {"id": ann_id, "video_id": k + 1,
                       "category_id": categories[ann["category"] or DEFAULT_CATEGORY], "iscrowd": 0,
                       "width": video["width"], "height": video["height"], "length": video["length"],
                       "segmentations": ann["segmentations"], "areas": ann["areas"], "bboxes": ann["bboxes"],
                       P.EXTENSION: ann[P.EXTENSION]}

    cats = [{"id": i, "name": name, "supercategory": DEFAULT_CATEGORY} for name, i in categories.items()]
    chunks = ['{"info": {"description": "written by longrvos-data", "version": "1.0"}, "licenses": [], ',
              '"categories": ', *json_array_chunks(cats), ', "videos": ', *json_array_chunks(videos())]
    if annotated:
        chunks += [', "annotations": ', *json_array_chunks(annotations())]
    chunks.append("}")
    write_json_chunks(Path(out) / split / P.INSTANCES, chunks)


def write(by_split: Mapping[str, Any], out: str | Path, *, lossy: bool = False, sidecar: bool = True,
          workers: int = 1, progress: bool = False, on_error: OnError = "raise",
          frames: FrameMode = "hardlink") -> WriteReport:
    """Write videos as YouTube-VIS JSON under ``out`` (layout in the module docstring).

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
        >>> report = write(ds.splits, "out/mevis_ytvis", workers=2)
    """
    return write_streaming(by_split, out, target=NAME, write_video=_write_video, finish_split=_finish_split,
                           lossy=lossy, sidecar=sidecar, workers=workers, progress=progress, on_error=on_error,
                           options=frame_options(frames))


def frame_options(frames: FrameMode) -> dict:
    """``{"frames": mode}`` unless the default (so that resume settings of earlier runs still match)."""
    return {} if frames == "hardlink" else {"frames": frames}


__all__ = ["NAME", "checked_rle", "copy_frames", "frame_files", "frame_options", "write"]
