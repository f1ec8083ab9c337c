"""Semi-supervised propagation of a dataset's masks with a mask engine (``longrvos propagate``).

Each track starts from its FIRST annotated frame, as the LVOS protocol prescribes: the
engine opens the video, takes that frame's mask of every track as a prompt (`Engine.add_mask`)
and propagates forward to the end of the video; a track takes part only from its own first
frame on (the engine's range rules). Nothing but those first masks is read from the ground
truth, so the output can be scored against it with ``longrvos eval``.

Predictions are written in the layout ``longrvos eval`` reads for the dataset
(`longrvos_data.predictions`): LVOS gets one palette PNG per frame (overlaps to the higher
score); referring datasets get a folder per expression holding the union of its tracks
(all-empty for a no-target expression). Only the tracks some expression names are
propagated there.

Each video is written into a hidden ``.partial`` folder and renamed into place when done,
so an error, Ctrl-C or a killed worker leaves no half-written video; a re-run skips the
finished videos and redoes the rest. With ``workers > 1`` videos run in processes
(`longrvos_data.parallel.map_videos`), each opening its own engine once.

Example:
    >>> report = propagate_dataset("data/lvos", "out/pred", split="valid", engine="classical")
    >>> report.written, report.skipped
    (50, 0)
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import DataError, LongRVOSError, OnError, ProblemLog
from ..fsutil import exclusive_lock
from ..predictions import PARTIAL, VideoWriter, check_prediction_folder, is_written, video_writer
from ..schema import Video
from ..sidecar import LOCK
from .engines import DEFAULT_ENGINE, Engine, Step, engine_class, open_engine

log = logging.getLogger("longrvos_data")

_ENGINES: dict[tuple, Engine] = {}
"""One engine per (name, options) in this process: a worker builds its model once, not per video."""


@dataclass
class PropagateReport:
    """What `propagate_dataset` did.

    Attributes:
        written: videos propagated and written. skipped: videos already finished (resume).
        frames: frames written. tracks: tracks propagated.
        unannotated: tracks with no annotated frame (nothing to start from: predicted absent).
        layout: ``lvos`` or ``referring``. problems: videos skipped with ``on_error="skip"``.
    """

    split: str = ""
    layout: str = ""
    written: int = 0
    skipped: int = 0
    frames: int = 0
    tracks: int = 0
    unannotated: int = 0
    problems: list = dataclasses.field(default_factory=list)


def check_engine_options(engine: str, options: Mapping[str, Any]) -> None:
    """Refuse, before any video is read, an engine that does not exist or lacks what it needs
    (each engine says what it needs: `Engine.check_options`)."""
    engine_class(engine).check_options(**options)


def _engine(name: str, options: Mapping[str, Any]) -> Engine:
    key = (name, tuple(sorted((k, str(v)) for k, v in options.items())))
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = open_engine(name, **dict(options))
    return engine


def first_masks(video: Video, track_ids: Iterable[str]) -> dict[str, tuple[int, np.ndarray]]:
    """``{track_id: (frame index, mask)}`` at each track's first frame with a non-empty mask;
    tracks never annotated are left out. Reads frames only until every track is found."""
    wanted = set(track_ids)
    out: dict[str, tuple[int, np.ndarray]] = {}
    for i in range(video.num_frames):
        if len(out) == len(wanted):
            break
        new = [t for t, a in video.frame_areas(i).items() if a > 0 and t in wanted and t not in out]
        if new:
            masks = video.frame_masks(i)
            for t in new:
                out[t] = (i, masks[t])
    return out


def _tracks_to_propagate(video: Video, layout: str) -> list[str]:
    """Every track for LVOS; for referring layouts only the tracks an expression names."""
    if layout == "lvos":
        return [t.track_id for t in video.tracks]
    named = {t for e in video.expressions for t in e.track_ids}
    return [t.track_id for t in video.tracks if t.track_id in named]


def propagate_video(video: Video, engine: Engine, writer: VideoWriter, *, image_size: int | None = None) -> dict:
    """Propagate ``video``'s first masks with ``engine`` (opened on the video here) into ``writer``.

    Returns ``{"frames", "tracks", "unannotated", "layout"}``. The writer is neither committed nor
    aborted: that is the caller's (a ``with`` block around the writer).
    """
    if not video.has_masks:
        raise DataError("the video has no masks: propagate starts every track from its first annotated frame",
                        file=video.source_file, video=video.video_id, field="masks")
    wanted = _tracks_to_propagate(video, writer.layout)
    firsts = first_masks(video, wanted)
    stats = {"frames": video.num_frames, "tracks": len(firsts), "unannotated": len(wanted) - len(firsts),
             "layout": writer.layout}
    if not firsts:
        return stats  # nothing to start from: the writer writes every frame empty
    engine.open(video, image_size=image_size)
    try:
        for tid, (frame, mask) in sorted(firsts.items(), key=lambda kv: kv[1][0]):
            engine.add_mask(frame, tid, mask)
        start = min(frame for frame, _ in firsts.values())
        steps = engine.propagate(list(firsts), start=start, end=video.num_frames)
        try:
            write_steps(steps, writer.write_frame, video)
        finally:
            steps.close()
    finally:
        engine.close()
    return stats


def write_steps(steps: Iterable[Step], write: Callable[[int, dict], None], video: Video) -> None:
    """Group the engine's steps by frame and ``write(frame, {track_id: (mask | None, score)})`` each frame
    once all of its tracks are in (forward propagation moves frame by frame, so a frame is whole when a
    later one starts)."""
    pending: dict[int, dict[str, tuple[np.ndarray | None, float]]] = {}
    last_flushed = -1
    for step in steps:
        f = step.frame_index
        if f <= last_flushed:
            raise LongRVOSError(f"video {video.video_id!r}: the engine went back to frame {f} after frame "
                                f"{last_flushed} in a forward propagation")
        for done in sorted(k for k in pending if k < f):
            write(done, pending.pop(done))
            last_flushed = done
        pending.setdefault(f, {})[step.track_id] = (step.mask, float(step.score))
    for done in sorted(pending):
        write(done, pending[done])


def _propagate_to(video: Video, *, out: str, engine: str, options: Mapping[str, Any],
                  image_size: int | None) -> dict:
    """One video, start to finish, atomically (a worker's task)."""
    with video_writer(out, video) as writer:
        stats = propagate_video(video, _engine(engine, options), writer, image_size=image_size)
    return stats


def propagate_dataset(src: str | Path, out: str | Path, *, split: str | None = None, format: str | None = None,
                      engine: str = DEFAULT_ENGINE, engine_options: Mapping[str, Any] | None = None,
                      workers: int = 1, image_size: int | None = None, progress: bool = False,
                      on_error: OnError = "raise", load_options: Mapping[str, Any] | None = None) -> PropagateReport:
    """Propagate every video of one split of ``src`` from each track's first annotated frame.

    Args:
        src: dataset root or split folder in any readable format (with masks).
        out: the prediction folder (``longrvos eval --pred``); created if missing.
        split: the split (needed when ``src`` has several).
        engine: ``classical`` (OpenCV, the default) or ``sam2``.
        engine_options: the engine's constructor options (sam2: ``config``, ``checkpoint``, ``device``).
        workers: processes, one video each; each opens its own engine.
        image_size: the engine's working resolution (None: the engine's default).
        on_error: ``skip`` records a bad video in ``problems`` and goes on.

    Raises:
        LongRVOSError: a bad engine choice, ``out`` inside ``src``, another run writing into ``out``.

    Example:
        >>> propagate_dataset("samples/lvos", "out/pred", split="valid").written
        3
    """
    from ..loaders import load
    from ..parallel import map_videos

    options = dict(engine_options or {})
    check_engine_options(engine, options)
    if workers < 1:
        raise LongRVOSError("workers must be at least 1")
    src, out = Path(src), Path(out)
    check_prediction_folder(src, out)
    dataset = load(src, format=format, split=split, on_error=on_error, **dict(load_options or {}))
    split = dataset.split_name(split)
    reader = dataset[split]
    out.mkdir(parents=True, exist_ok=True)
    report = PropagateReport(split=split)
    problems = ProblemLog(on_error)
    with exclusive_lock(out / LOCK) as mine:
        if not mine:
            raise LongRVOSError(f"another run is writing into {out} (it holds {out / LOCK}); wait until it ends")
        ids = reader.video_ids()
        todo = [v for v in ids if not is_written(out, v)]
        report.skipped = len(ids) - len(todo)
        fn = functools.partial(_propagate_to, out=str(out), engine=engine, options=options, image_size=image_size)
        results = map_videos(reader, todo, fn, workers=workers, progress=progress, desc=f"propagate {split}",
                             errors="return")
        try:
            for vid, result in results:
                if isinstance(result, DataError):
                    problems.add(result)
                    continue
                report.written += 1
                report.frames += result["frames"]
                report.tracks += result["tracks"]
                report.unannotated += result["unannotated"]
                report.layout = result["layout"]
        finally:
            results.close()  # stops the workers first, so that no one writes while we clean up
            for vid in todo:  # a worker killed midway leaves its .partial: never a finished video
                shutil.rmtree(out / PARTIAL.format(video_id=vid), ignore_errors=True)
            if workers <= 1:
                _ENGINES.clear()  # this process's engines (and models) are not kept after the run
    report.problems = dataset.problems.problems + problems.problems
    if report.unannotated:
        log.warning("%d track(s) have no annotated frame to start from; predicted absent", report.unannotated)
    return report


__all__ = ["PropagateReport", "check_engine_options", "first_masks", "propagate_dataset", "propagate_video",
           "write_steps"]
