"""Write canonical videos (from any source) in the Long-RVOS layout.

Output, one folder per split::

    <out>/<split>/
      JPEGImages/<video_id>/<frame><ext>              the source's frame files, linked or copied
      Annotations/<video_id>/<obj_id>/<frame>.png     0/255 PNG per present object per frame
      meta_expressions.json

What the format cannot hold: an expression naming no object or several objects, or of a
kind other than static / dynamic / hybrid; a track's category; a track of a video without
masks that no writable expression names (the reader knows such a video's objects from
its expressions only). By default each is refused with a `DataError` naming the video
and field; with ``sidecar=True`` (what ``longrvos convert`` does) it is kept in
``<split>/longrvos_sidecar.json`` (schema in `longrvos_data.sidecar`; the
expression or track entry is whole and replaces or joins the format's on reading), and
with ``lossy=True`` it is left out and listed in the returned report. A split that mixes
videos with and without masks is always refused. A video without masks gets
no ``Annotations/<video_id>`` (a split whose videos all lack masks gets no ``Annotations/``).
Every track gets its object folder, even one that is never present, so that the reader
knows the object. Each split is written into a temporary folder that replaces
``<out>/<split>`` only when the whole split is written.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import DataError
from ..fsutil import FrameMode, atomic_write_json, link_or_copy, staged_dir
from ..loaders.long_rvos import KIND_TO_TYPE, NAME, LongRVOSPaths
from ..masks import write_binary_png
from ..schema import Video, check_id
from ..sidecar import write_complete
from .base import SIDECAR, Keeper, WriteReport, write_sidecar

log = logging.getLogger("longrvos_data")


def write(by_split: Mapping[str, Iterable[Video]], out: str | Path, *, lossy: bool = False,
          sidecar: bool = False, frames: FrameMode = "hardlink") -> WriteReport:
    """Write every split of ``by_split`` under ``out`` in the Long-RVOS layout.

    Args:
        by_split: ``{split name: videos}``; videos may come from any loader or from `synth`.
        out: dataset root; ``out/<split>`` is created or replaced.
        lossy: leave out what Long-RVOS cannot hold and list it in the report.
        sidecar: keep what Long-RVOS cannot hold in ``<split>/longrvos_sidecar.json``.
        frames: ``"hardlink"`` (default; a copy across file systems: editing such an output
            frame in place changes the source), ``"copy"`` or ``"symlink"``.

    Returns:
        The `WriteReport` (videos per split, sidecars, what was dropped).

    Raises:
        DataError: a video holds something Long-RVOS cannot (see the module docstring) and
            neither ``lossy`` nor ``sidecar`` is set; nothing of that split is left behind.

    Example:
        >>> ds = longrvos_data.load("data/mevis_subset")
        >>> write({"train": ds["train"]}, Path("out/long_rvos"), sidecar=True)
    """
    out = Path(out)
    report = WriteReport(target=NAME, out=out, lossy=lossy)
    for split, videos in by_split.items():
        check_id(split, file=out, video=None, field="split")
        with staged_dir(out / split) as tmp:
            kept = _write_split(videos, tmp, split=split, lossy=lossy, sidecar=sidecar, report=report, mode=frames)
            write_complete(tmp, target=NAME, split=split, settings={"lossy": lossy, "sidecar": sidecar, "frames": frames},
                           videos=report.videos[split])
        if kept:
            report.sidecars.append(out / split / SIDECAR)
        log.info("wrote Long-RVOS split %s to %s", split, out / split)
    return report


def _write_split(videos: Iterable[Video], folder: Path, *, split: str, lossy: bool, sidecar: bool,
                 report: WriteReport, mode: FrameMode) -> bool:
    """Write one split into ``folder``; True when a sidecar was written."""
    meta: dict[str, dict] = {}
    kept: dict[str, dict | None] = {}
    annotated: bool | None = None
    for video in videos:
        vid = video.video_id
        if vid in meta:
            raise DataError("video id is used twice in this split", video=vid, field="video_id")
        keep = Keeper(video, split=split, target=NAME, lossy=lossy, sidecar=sidecar)
        entry = _video_entry(video, keep)
        has_masks = video.mask_source is not None
        if annotated is None:
            annotated = has_masks
        elif annotated != has_masks:
            raise DataError("Long-RVOS splits are annotated as a whole, but this video "
                            + ("has masks and earlier ones do not" if has_masks else "has no masks and earlier ones do"),
                            file=video.source_file, video=vid, field="masks")
        _write_frames(video, folder / LongRVOSPaths.IMAGES / vid, mode)
        if has_masks:
            _write_masks(video, folder / LongRVOSPaths.ANNOTATIONS / vid)
        meta[vid] = entry
        kept[vid] = keep.entry()
        report.dropped.extend(keep.dropped())
    atomic_write_json(folder / LongRVOSPaths.META, {"videos": meta})
    report.videos[split] = len(meta)
    return write_sidecar(folder, target=NAME, split=split, entries=lambda: kept.items()) is not None


def _obj_id(track_id: str) -> int | str:
    """The JSON ``obj_id`` of a track: an int when the id is a plain decimal number."""
    return int(track_id) if track_id.isdigit() and str(int(track_id)) == track_id else track_id


def _video_entry(video: Video, keep: Keeper) -> dict:
    """The ``meta_expressions.json`` entry of one video; what the format cannot hold goes to ``keep``.

    Extra fields of a Long-RVOS source (``Video.meta``, ``Expression.meta``) are written
    back; those of other formats are not theirs to add.
    """
    where = dict(file=video.source_file, video=video.video_id)
    for t in video.tracks:
        check_id(t.track_id, field=f"tracks.{t.track_id}", **where)
    same = video.dataset == NAME
    exps: dict[str, dict] = {}
    for pos, e in enumerate(video.expressions):
        field = f"expressions.{e.exp_id}"
        check_id(e.exp_id, field=field, **where)
        if len(e.track_ids) != 1:
            what = "no object (no-target)" if not e.track_ids else f"{len(e.track_ids)} objects {list(e.track_ids)}"
            keep.expression(pos, e, f"Long-RVOS expressions name exactly one object; this one names {what}",
                            field="track_ids")
            continue
        if e.kind not in KIND_TO_TYPE:
            keep.expression(pos, e, f"kind {e.kind!r} has no Long-RVOS type (static, dynamic, hybrid)",
                            field="kind")
            continue
        if not e.text.strip():
            raise DataError("expression text is empty", field=f"{field}.text", **where)
        item = {"exp": e.text, "obj_id": _obj_id(e.track_ids[0]), "type": KIND_TO_TYPE[e.kind]}
        if same:
            item.update({k: v for k, v in e.meta.items() if k not in item})
        exps[e.exp_id] = item
    named = {item["obj_id"] if isinstance(item["obj_id"], str) else str(item["obj_id"]) for item in exps.values()}
    for pos, t in enumerate(video.tracks):
        if not video.has_masks and t.track_id not in named:
            keep.track(pos, t, "the video has no masks and no Long-RVOS expression names this object, so the "
                       "reader cannot know it")
        elif t.category:
            keep.track(pos, t, f"Long-RVOS has no categories (category {t.category!r})", field="category",
                       lost="category")
    for i, f in enumerate(video.frames):
        check_id(f.name, field=f"frames[{i}]", **where)
    entry: dict = {"frames": video.frame_names, "expressions": exps}
    if same:
        entry.update({k: v for k, v in video.meta.items() if k not in entry})
    return entry


def _write_frames(video: Video, folder: Path, mode: FrameMode) -> None:
    """Link, copy or symlink each frame file to ``folder/<name><source extension>``; never re-encode."""
    for f in video.frames:
        ext = Path(f.path).suffix
        if ext.lower() not in (".jpg", ".jpeg"):
            log.warning("video %r frame %r is %s, not JPEG; kept as is (the official loader reads .jpg)",
                        video.video_id, f.name, ext)
        link_or_copy(f.path, folder / f"{f.name}{ext}", mode)


def _write_masks(video: Video, folder: Path) -> None:
    """One 0/255 PNG per present track per frame; present-but-empty masks stay (all-zero PNG)."""
    known = {t.track_id for t in video.tracks}
    for tid in known:
        (folder / tid).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(video.frame_names):
        for tid, mask in video.frame_masks(i).items():
            field = f"masks[{i}].{tid}"
            if tid not in known:
                raise DataError(f"mask for unknown track {tid!r}", file=video.source_file, video=video.video_id,
                                field=field)
            if mask.shape != (video.height, video.width):
                raise DataError(f"mask is {mask.shape}, the video is {video.height}x{video.width}",
                                file=video.source_file, video=video.video_id, field=field)
            write_binary_png(folder / tid / f"{name}{LongRVOSPaths.MASK_EXT}", mask)


__all__ = ["write"]
