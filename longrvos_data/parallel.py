"""Run one function over a split's videos in worker processes, with progress.

Each worker opens the dataset once (metadata only) and then handles video ids, so
neither records nor masks are pickled between processes and memory stays per-video.
With ``part_frames`` a video is handed out in runs of frames instead, so that a few long
videos still keep every worker busy to the end.

What a worker finds is the parent's to report: the problems its loader records come back
with each result (into the parent's `ProblemLog`, which logs each once), and its other log
records are forwarded to the parent's handlers, so that nothing a worker says is printed
twice or across a progress bar. Workers that cannot start, or die, stop the run at once
with a `LongRVOSError` instead of being respawned forever.
"""
from __future__ import annotations

import collections
import ctypes
import functools
import logging
import logging.handlers
import multiprocessing as mp
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from tqdm.auto import tqdm

from .errors import DataError, LongRVOSError, Problem
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


BROKEN = ("a worker process exited before finishing its work (killed, out of memory, or unable to start). "
          "A script that uses workers must start them under `if __name__ == \"__main__\":`, because each "
          "worker process first imports the script (the spawn start method)")


class _WorkerFilter(logging.Filter):
    """What a worker does not forward: `ProblemLog` records (those problems travel back with the
    results) and whatever opening the split logs (the parent logged it when it opened the split)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, "problem") and not _worker.get("opening")


class _Redispatch(logging.Handler):
    """In the parent: hands a worker's log record to the logger it was logged on."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _init(path: str, fmt: str, split: str, options: dict, fn: Callable[..., T], errors: str, log_queue,
          levels) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    handler = logging.handlers.QueueHandler(log_queue)
    handler.addFilter(_WorkerFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(levels[0])
    logging.getLogger("longrvos_data").setLevel(levels[1])
    _keep_freed_memory()
    _worker.clear()
    _worker.update(fn=fn, errors=errors, video=None, opening=True)
    try:
        _worker["reader"] = load(Path(path), format=fmt, split=split, on_error="skip", **options)[split]
    except Exception as exc:  # raised by every task, so that the parent stops with it
        _worker["failed"] = LongRVOSError(f"a worker process cannot open split {split!r} of {path}: {exc}")
    finally:
        _worker["opening"] = False


def _reader() -> SplitReader:
    failed = _worker.get("failed")
    if failed is not None:
        raise failed
    return _worker["reader"]


def _apply(open_video: Callable[[], Video], fn: Callable[..., T], errors: str, *args):
    """``fn(open_video(), *args)``; with ``errors="return"`` a `DataError` is the result."""
    if errors != "return":
        return fn(open_video(), *args)
    try:
        return fn(open_video(), *args)
    except DataError as err:
        return err


def _found_while(reader: SplitReader, work: Callable[[], T]) -> tuple[T, list[Problem]]:
    """``work()`` and the problems the worker's loader recorded meanwhile (new ones only)."""
    before = len(reader.problems.problems)
    result = work()
    return result, reader.problems.problems[before:]


def _call(video_id: str):
    reader = _reader()
    open_video = functools.partial(reader.video, video_id)
    result, found = _found_while(reader, lambda: _apply(open_video, _worker["fn"], _worker["errors"]))
    return video_id, result, found


def _open_cached(video_id: str) -> Video:
    """The worker's last video again (its parts come one after another), else a fresh open."""
    cached = _worker["video"]
    if cached is None or cached.video_id != video_id:
        _worker["video"] = None
        cached = _worker["video"] = _reader().video(video_id)
    return cached


def _call_part(task: tuple[str, range | None, int]):
    video_id, frames, parts = task
    reader = _reader()
    result, found = _found_while(reader, lambda: _apply(functools.partial(_open_cached, video_id), _worker["fn"],
                                                        _worker["errors"], frames))
    return video_id, parts, result, found


def _ordered(pool: ProcessPoolExecutor, call: Callable, tasks: Iterable, window: int) -> Iterator:
    """``call(task)`` for each task in the workers, in order, with at most ``window`` in flight
    (so neither the tasks nor finished results pile up in memory)."""
    pending: collections.deque[Future] = collections.deque()
    for task in tasks:
        pending.append(pool.submit(call, task))
        if len(pending) >= window:
            yield _result(pending.popleft())
    while pending:
        yield _result(pending.popleft())


def _result(future: Future):
    try:
        return future.result()
    except BrokenProcessPool:
        raise LongRVOSError(BROKEN) from None


def _stop(pool: ProcessPoolExecutor, finished: bool) -> None:
    """Shut the pool down; a run that did not finish (an error, Ctrl-C, a consumer that stopped
    early) terminates its workers rather than waiting for their current videos."""
    if not finished:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public way before 3.14
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


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
        if getattr(mp.current_process(), "_inheriting", False):
            raise LongRVOSError(BROKEN)  # we are a worker that is importing the parent's unguarded script
        ctx = mp.get_context("spawn")
        log_queue = ctx.Queue()
        levels = (logging.getLogger().getEffectiveLevel(), logging.getLogger("longrvos_data").getEffectiveLevel())
        init = (str(reader.opened_from), reader.format, reader.split, reader.load_options, fn, errors, log_queue,
                levels)
        listener = logging.handlers.QueueListener(log_queue, _Redispatch())
        listener.start()
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=init)
        finished = False
        try:
            if part_frames is None:
                for vid, result, found in _ordered(pool, _call, video_ids, 4 * workers):
                    _keep(reader, found)
                    yield vid, result
                    bar.update()
            else:
                done: list = []
                tasks = _part_tasks(reader, video_ids, part_frames)
                for vid, parts, result, found in _ordered(pool, _call_part, tasks, 4 * workers):
                    _keep(reader, found)
                    done.append(result)
                    if len(done) == parts:
                        failed = next((r for r in done if isinstance(r, DataError)), None)
                        yield vid, failed if failed is not None else done
                        done = []
                        bar.update()
            finished = True
        finally:
            _stop(pool, finished)
            if finished:
                listener.stop()  # every record the workers sent is handled first
            else:  # a worker stopped mid-record must not hang the exit: a bounded wait (the thread is a
                # daemon), so that the listener is not left reading a queue the interpreter is closing
                # (it would print a traceback after the run's own error)
                listener.enqueue_sentinel()
                if listener._thread is not None:
                    listener._thread.join(timeout=5)
    finally:
        bar.close()


def _keep(reader: SplitReader, found: list[Problem]) -> None:
    """Problems a worker's loader met: recorded (and logged, once) in the parent's log."""
    for problem in found:
        reader.problems.record(problem)
