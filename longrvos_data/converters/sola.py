"""Write canonical tracks as SOLA ground-truth masklets (without SAM2 object tokens).

Output (SOLA's ``gt_tracks`` layout, self-contained; read back by `longrvos_data.loaders.sola`)::

    out/
      <split>/sam2_masklets/<vid>/NNNNN.json   one per track, NNNNN = its index in the video
      <split>/JPEGImages/<vid>/<frame>.jpg     the source's frame files, linked or copied
      <split>/longrvos_sidecar.json            what the format cannot hold (not with lossy)

Each masklet: ``{"anno_id": k, "rle": [RLE per frame], "prompt_type": "GT MASK",
"iou": {"<track_id>": 1.0}, "precision": {...: 1.0}, "recall": {...: 1.0},
"longrvos": {"track_id", "category", "meta"}}``. As SAM2 does, every frame gets an RLE
(all-zero where the track is absent); ``"GT MASK"`` is the prompt type of SOLA's own
ground-truth tracks, and the ``iou``/``precision``/``recall`` labels name the ground-truth
track, which is how SOLA's training reads a track's target. Object tokens
(``sam2_object_tokens/``) need SAM2 and are not written.

What SOLA tracks cannot hold, and where it goes (sidecar, or dropped and listed with
``lossy=True``, or refused with ``sidecar=False``):
- expressions (SOLA takes them from the dataset's own file): sidecar ``expressions``;
- a mask that is present but empty (an all-zero RLE reads as absent): sidecar ``masks``;
- the tracks of a video without masks (no masklet folder is written): sidecar ``tracks``;
- the video's ``fps`` and ``meta``: sidecar ``values``.

Refused (`DataError`, also with ``lossy``): frame names whose sorted order is not the
video's order, since SOLA orders frames by name and the masks would be misaligned.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .. import masks as _masks
from ..errors import DataError, OnError
from ..fsutil import FrameMode, atomic_write_json
from ..loaders.sola import SOLAPaths as P
from ..schema import Video
from .base import Keeper, SplitJob, WriteReport, cleaned_on_error, jsonable, write_streaming
from .ytvis import frame_options, checked_rle, copy_frames

NAME = "sola"
PROMPT_TYPE = "GT MASK"


def _write_video(video: Video, *, out: str, split: str, lossy: bool, sidecar: bool,
                 frames: FrameMode = "hardlink") -> dict:
    """Write one video's frames and masklet files; return its marker."""
    folder = Path(out) / split
    with cleaned_on_error(folder / P.IMAGES / video.video_id, folder / P.MASKLETS / video.video_id):
        return _video_part(video, folder, split=split, lossy=lossy, sidecar=sidecar, mode=frames)


def _video_part(video: Video, folder: Path, *, split: str, lossy: bool, sidecar: bool, mode: FrameMode) -> dict:
    keep = Keeper(video, split=split, target=NAME, lossy=lossy, sidecar=sidecar)
    vid = video.video_id
    if sorted(video.frame_names) != video.frame_names:
        raise DataError("frame names do not sort in frame order; SOLA orders frames by name (rename them, "
                        "e.g. zero-padded)", file=video.source_file, video=vid, field="frames")
    (folder / P.MASKLETS).mkdir(parents=True, exist_ok=True)
    copy_frames(video, folder / P.IMAGES / vid, mode=mode)
    for pos, e in enumerate(video.expressions):
        keep.expression(pos, e, "SOLA tracks hold no expressions")
    if video.fps is not None:
        keep.value("fps", video.fps, "SOLA tracks hold no frame rate")
    if video.meta:
        keep.value("meta", dict(video.meta), "SOLA tracks hold no video fields")
    if not video.has_masks:
        for pos, t in enumerate(video.tracks):
            keep.track(pos, t, "the video has no masks and SOLA holds tracks only as masklets")
        return keep.part()

    n = video.num_frames
    empty = _masks.empty(video.height, video.width)
    segs: dict[str, list] = {t.track_id: [empty] * n for t in video.tracks}
    for i in range(n):
        for tid, rle in video.frame_rles(i).items():
            if tid not in segs:
                raise DataError(f"mask of unknown track {tid!r}", file=video.source_file, video=vid,
                                field=f"masks[{i}]")
            rle = checked_rle(video, rle, frame=i, track_id=tid)
            segs[tid][i] = rle
            if not _masks.area([rle])[0]:
                keep.mask(tid, i, rle, "present but empty: an all-zero RLE reads as absent")
    mdir = folder / P.MASKLETS / vid
    mdir.mkdir(parents=True, exist_ok=True)
    written = set()
    for k, t in enumerate(video.tracks):
        name = f"{k:05d}.json"
        label = {t.track_id: 1.0}
        atomic_write_json(mdir / name, {
            "anno_id": k, "rle": segs[t.track_id], "prompt_type": PROMPT_TYPE,
            "iou": label, "precision": label, "recall": label,
            P.EXTENSION: {"track_id": t.track_id, "category": t.category, "meta": jsonable(dict(t.meta))}})
        written.add(name)
    for stale in mdir.glob("*.json"):
        if stale.name not in written:
            stale.unlink()
    return keep.part()


def _finish_split(out: Path, split: str, job: SplitJob, order: list[str], *, lossy: bool, sidecar: bool,
                  report: WriteReport, frames: FrameMode = "hardlink") -> None:
    """SOLA has no split-level file; the sidecar is written by `write_streaming`."""
    (Path(out) / split / P.MASKLETS).mkdir(parents=True, exist_ok=True)


def write(by_split: Mapping[str, Any], out: str | Path, *, lossy: bool = False, sidecar: bool = True,
          workers: int = 1, progress: bool = False, on_error: OnError = "raise",
          frames: FrameMode = "hardlink") -> WriteReport:
    """Write videos as SOLA ground-truth masklets under ``out`` (layout in the module docstring).

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
        DataError: bad input, or frame names that do not sort in frame order.

    Example:
        >>> ds = longrvos_data.load("data/mevis", split="train")
        >>> report = write(ds.splits, "out/sola_gt/mevis")
    """
    return write_streaming(by_split, out, target=NAME, write_video=_write_video, finish_split=_finish_split,
                           lossy=lossy, sidecar=sidecar, workers=workers, progress=progress, on_error=on_error,
                           options=frame_options(frames))


__all__ = ["NAME", "PROMPT_TYPE", "write"]
