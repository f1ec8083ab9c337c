"""Run one function over a split's videos in worker processes, with progress.

Each worker opens the dataset once (metadata only) and then handles video ids, so
neither records nor masks are pickled between processes and memory stays per-video.
With ``part_frames`` a video is handed out in runs of frames instead, so that a few long
videos still keep every worker busy to the end.
"""
from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm.auto import tqdm

from .errors import DataError
from .loaders import SplitReader, load
from .schema import Video

T = TypeVar("T")

_worker: dict = {}


def _keep_freed_memory() -> None:
    """Let this worker's allocator reuse freed memory instead of returning it to the system.

    Every mask decode allocates a few frame-sized arrays; with glibc's defaults a fresh
    process hands them back and faults them in again: ~140 page faults per 720p mask, 2.3 s
    of kernel time in 26 s of converting 6,681 masks (`bench/bench_convert_hf.py`). The
    worker is ours, so it keeps up to 128 MB of freed heap. Elsewhere (musl, macOS)
    nothing changes.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)   # M_MMAP_THRESHOLD: frame-sized blocks from the heap
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: keep freed heap for the next frame
    except (OSError, AttributeError):
        pass


def _init(path: str, fmt: str, split: str, fn: Callable[..., T], errors: str = "raise") -> None:
    _keep_freed_memory()
    _worker["reader"] = load(Path(path), format=fmt, split=split, on_error="skip")[split]
    _worker["fn"] = fn
    _worker["errors"] = errors
    _worker["video"] = None


def _apply(open_video: Callable[[], Video], fn: Callable[..., T], errors: str, *args):
    """``fn(open_video(), *args)``; with ``errors="return"`` a `DataError` is the result."""
    if errors != "return":
        return fn(open_video(), *args)
    try:
        return fn(open_video(), *args)
    except DataError as err:
        return err


def _call(video_id: str):
    return video_id, _apply(functools.partial(_worker["reader"].video, video_id), _worker["fn"], _worker["errors"])


def _open_cached(video_id: str) -> Video:
    """The worker's last video again (its parts come one after another), else a fresh open."""
    cached = _worker["video"]
    if cached is None or cached.video_id != video_id:
        _worker["video"] = None
        cached = _worker["video"] = _worker["reader"].video(video_id)
    return cached


def _call_part(task: tuple[str, range | None, int]):
    video_id, frames, parts = task
    return video_id, parts, _apply(functools.partial(_open_cached, video_id), _worker["fn"], _worker["errors"], frames)


def _part_tasks(reader: SplitReader, video_ids: Sequence[str], part_frames: int) -> Iterator[tuple]:
    """``(video_id, frames, parts of this video)``: runs of ``part_frames`` frames. A video the
    parent cannot open is one task with no frames: the worker opens it and meets the error."""
    for vid in video_ids:
        try:
            n = reader.video(vid).num_frames
        except DataError:
            yield vid, None, 1
            continue
        starts = range(0, n, part_frames) or range(1)
        for lo in starts:
            yield vid, range(lo, min(lo + part_frames, n)), len(starts)


def map_videos(reader: SplitReader, video_ids: Sequence[str], fn: Callable[..., T], *, workers: int = 1,
               progress: bool = True, desc: str = "", errors: str = "raise",
               part_frames: int | None = None) -> Iterator[tuple[str, T]]:
    """Yield ``(video_id, fn(video))`` for each id of ``reader``, in order.

    With ``workers > 1`` each worker process re-opens the split from ``reader.root``.
    ``fn`` must be a module-level function (it is sent to the workers by reference).
    Errors raised by ``fn`` propagate; catch `DataError` inside ``fn`` to collect them.
    With ``errors="return"``, a `DataError` raised while loading a video or by ``fn`` is
    yielded as that video's result instead, and the run goes on.

    With ``part_frames``, ``fn(video, frames)`` is called on runs of at most that many
    frames (``frames`` a `range`; ``None`` for a video that cannot be opened) and each
    video's result is the list of its parts' results, in frame order: one part covering
    every frame when ``workers <= 1``, so that nothing is split without a gain.

    Example:
        >>> for vid, parts in map_videos(reader, reader.video_ids(), count_masks, workers=2, part_frames=32):
        ...     total = sum(parts)
    """
    bar = tqdm(total=len(video_ids), desc=desc or reader.split, unit="video", disable=not progress, leave=False)
    try:
        if workers <= 1:
            for vid in video_ids:
                if part_frames is None:
                    yield vid, _apply(functools.partial(reader.video, vid), fn, errors)
                else:
                    result = _apply(functools.partial(reader.video, vid), lambda v: fn(v, range(v.num_frames)), errors)
                    yield vid, result if isinstance(result, DataError) else [result]
                bar.update()
            return
        ctx = mp.get_context("spawn")
        init = (str(reader.opened_from), reader.format, reader.split, fn, errors)
        with ctx.Pool(workers, initializer=_init, initargs=init) as pool:
            if part_frames is None:
                for item in pool.imap(_call, video_ids, chunksize=1):
                    yield item
                    bar.update()
                return
            done: list = []
            for vid, parts, result in pool.imap(_call_part, _part_tasks(reader, video_ids, part_frames)):
                done.append(result)
                if len(done) == parts:
                    failed = next((r for r in done if isinstance(r, DataError)), None)
                    yield vid, failed if failed is not None else done
                    done = []
                    bar.update()
    finally:
        bar.close()
