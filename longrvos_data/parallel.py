"""Run one function over a split's videos in worker processes, with progress.

Each worker opens the dataset once (metadata only) and then handles video ids, so
neither records nor masks are pickled between processes and memory stays per-video.
"""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm.auto import tqdm

from .errors import DataError
from .loaders import SplitReader, load
from .schema import Video

T = TypeVar("T")

_worker: dict = {}


def _init(path: str, fmt: str, split: str, fn: Callable[[Video], T], errors: str = "raise") -> None:
    _worker["reader"] = load(Path(path), format=fmt, split=split, on_error="skip")[split]
    _worker["fn"] = fn
    _worker["errors"] = errors


def _apply(reader: SplitReader, video_id: str, fn: Callable[[Video], T], errors: str):
    """``fn(reader.video(video_id))``; with ``errors="return"`` a `DataError` is the result."""
    if errors != "return":
        return fn(reader.video(video_id))
    try:
        return fn(reader.video(video_id))
    except DataError as err:
        return err


def _call(video_id: str):
    return video_id, _apply(_worker["reader"], video_id, _worker["fn"], _worker["errors"])


def map_videos(reader: SplitReader, video_ids: Sequence[str], fn: Callable[[Video], T], *, workers: int = 1,
               progress: bool = True, desc: str = "", errors: str = "raise") -> Iterator[tuple[str, T]]:
    """Yield ``(video_id, fn(video))`` for each id of ``reader``, in order.

    With ``workers > 1`` each worker process re-opens the split from ``reader.root``.
    ``fn`` must be a module-level function (it is sent to the workers by reference).
    Errors raised by ``fn`` propagate; catch `DataError` inside ``fn`` to collect them.
    With ``errors="return"``, a `DataError` raised while loading a video or by ``fn`` is
    yielded as that video's result instead, and the run goes on.
    """
    bar = tqdm(total=len(video_ids), desc=desc or reader.split, unit="video", disable=not progress, leave=False)
    try:
        if workers <= 1:
            for vid in video_ids:
                yield vid, _apply(reader, vid, fn, errors)
                bar.update()
            return
        ctx = mp.get_context("spawn")
        init = (str(reader.opened_from), reader.format, reader.split, fn, errors)
        with ctx.Pool(workers, initializer=_init, initargs=init) as pool:
            for item in pool.imap(_call, video_ids, chunksize=1):
                yield item
                bar.update()
    finally:
        bar.close()
