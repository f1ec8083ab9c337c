"""A mask engine working on a project's video: prompts and propagation written into the store.

The store is the truth and the engine a cache of it: before a prompt refines a mask the
engine has not seen, and before every propagation, the session hands the engine the
store's masks it needs (the start frame and each track's nearest human keyframe in the
direction of travel). Propagation

- stops each track at its next human keyframe (present or absent), so a correction
  re-propagates only the range up to the next frame a person fixed;
- never overwrites a human mask, nor the start frame;
- is one store operation (one undo step), written when the run ends, finished or cancelled,
  with the versions read when it began as bases (a cell someone changed meanwhile makes it
  a rejected attempt, kept with its masks).

Engine state is only ever a function of the store's human frames: a track whose
conditioning frames are anything else (an undo changed one) is rebuilt before it is used.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from .. import masks as _masks
from .engines import open_engine
from .engines.base import Engine, EngineError
from .store import ABSENT, NONE, PRESENT, Applied, Cell, Conflict, Store, StoreError, NotFound, VideoInfo, Write


class Busy(StoreError):
    """The video's engine is running a propagation; the prompt or run waits for its end."""


@dataclass(frozen=True)
class PropagateResult:
    """How a run ended: the operation written (None: nothing to write or refused), the cells
    written, whether it was cancelled, and the error that stopped it."""

    applied: Applied | None
    written: int
    cancelled: bool
    error: str | None = None


class VideoSession:
    """One engine session on one video of a project (see the module docstring)."""

    def __init__(self, engine: Engine, info: VideoInfo) -> None:
        self.engine = engine
        self.info = info
        self.key = (info.split, info.video_id)
        self.lock = threading.Lock()
        self._synced: dict[tuple[str, int], int] = {}   # (track, frame) -> store version the engine holds
        self.retired = False                             # closed by its last user (see Sessions.forget)
        engine.open(info.video())

    def close(self) -> None:
        self.engine.close()

    # -- keeping the engine in step with the store ----------------------------------------
    def _drop(self, track_id: str) -> None:
        self.engine.remove_track(track_id)
        for key in [k for k in self._synced if k[0] == track_id]:
            del self._synced[key]

    def _seed(self, track_id: str, frame: int, cell: Cell) -> None:
        """Give the engine the store's mask of one cell as a conditioning frame."""
        self.engine.add_mask(frame, track_id, _masks.decode(cell.rle))
        self._synced[(track_id, frame)] = cell.version

    def _check_track(self, store: Store, track_id: str) -> None:
        if track_id not in {t.track_id for t in store.tracks(*self.key)}:
            raise NotFound(f"{self.key[0]}/{self.key[1]}: no track {track_id!r}")

    # -- prompts -------------------------------------------------------------------------
    def prompt(self, store: Store, track_id: str, frame: int, *, base: int, user: str,
               points: Sequence[Sequence[float]] | None = None, labels: Sequence[int] | None = None,
               box: Sequence[float] | None = None) -> tuple[Applied, Cell]:
        """Clicks and/or a box on one frame; the engine's mask is written as a human edit based on
        version ``base``. Clicks on a mask the engine has not seen start from the store's mask."""
        if not points and box is None:
            raise EngineError("a prompt has points or a box")
        self._check_track(store, track_id)
        if not self.lock.acquire(blocking=False):
            raise Busy(f"{self.key[0]}/{self.key[1]}: a propagation is running on this video; cancel it or wait")
        try:
            try:
                current = store.cell(*self.key, track_id, frame)
                if points and self._synced.get((track_id, frame)) != current.version:
                    known = track_id in self.engine.track_ids()
                    if known and frame in self.engine.conditioning_frames(track_id):
                        self._drop(track_id)    # the engine's prompt there is not the store's mask any more
                    if current.state == PRESENT:
                        self._seed(track_id, frame, current)
                mask = None
                if box is not None:
                    mask = self.engine.add_box(frame, track_id, box)
                if points:
                    mask = self.engine.add_points(frame, track_id, points, labels if labels is not None else
                                                  [1] * len(points))
                write = (Write(track_id, frame, base=base, rle=_masks.encode(mask)) if mask.any()
                         else Write(track_id, frame, base=base, state=ABSENT))
                applied = store.write(*self.key, [write], user=user, label="box" if not points else "points")
            except BaseException:
                if track_id in self.engine.track_ids():
                    self._drop(track_id)        # rebuilt from the store at its next use
                raise
            self._synced[(track_id, frame)] = applied.versions[(track_id, frame)]
            return applied, store.cell(*self.key, track_id, frame)
        finally:
            if self.retired:
                self.close()
            self.lock.release()

    # -- propagation ---------------------------------------------------------------------
    def propagate(self, store: Store, track_ids: Iterable[str], *, start: int, direction: str, user: str,
                  on_step: Callable[[dict], None] = lambda step: None,
                  cancel: threading.Event | None = None) -> PropagateResult:
        """Track ``track_ids`` from ``start`` (see the module docstring); ``on_step`` receives
        each computed cell as ``{frame, track_id, state, rle, score}`` as soon as it exists."""
        if direction not in ("forward", "backward", "both"):
            raise EngineError(f"direction must be forward, backward or both, not {direction!r}")
        tracks = list(dict.fromkeys(str(t) for t in track_ids))
        if not tracks:
            raise EngineError("propagate needs at least one track")
        n = len(self.info.frames)
        if not 0 <= start < n:
            raise EngineError(f"{self.key[0]}/{self.key[1]}: frame {start} is not in 0..{n - 1}")
        for t in tracks:
            self._check_track(store, t)
        if not self.lock.acquire(blocking=False):
            raise Busy(f"{self.key[0]}/{self.key[1]}: a propagation is already running on this video")
        cancel = cancel or threading.Event()
        try:
            states = self._states(store, tracks)
            passes = {"forward": (1,), "backward": (-1,), "both": (1, -1)}[direction]
            stops = {d: self._prepare(store, tracks, states, start, d) for d in passes}
            writes: list[Write] = []
            cancelled = False
            for d in passes:
                cancelled = self._run(tracks, states, start, d, stops[d], writes, on_step, cancel)
                if cancelled:
                    break
            if not writes:
                return PropagateResult(None, 0, cancelled)
            label = f"propagate {direction} from {start}" + (" (cancelled)" if cancelled else "")
            try:
                applied = store.write(*self.key, writes, user=user, provenance="propagated", label=label)
            except Conflict as err:
                return PropagateResult(None, 0, cancelled, str(err))
            return PropagateResult(applied, len(writes), cancelled)
        finally:
            if self.retired:
                self.close()
            self.lock.release()

    def _states(self, store: Store, tracks: Sequence[str]) -> dict[str, dict[int, tuple[str, str | None, int]]]:
        """``{track: {frame: (state, provenance, version)}}`` of the written cells, read once."""
        wanted = set(tracks)
        out: dict[str, dict[int, tuple]] = {t: {} for t in tracks}
        for tid, f, state, prov, version in store.cell_states(*self.key):
            if tid in wanted:
                out[tid][f] = (state, prov, version)
        return out

    def _prepare(self, store: Store, tracks: Sequence[str], states: Mapping[str, Mapping[int, tuple]],
                 start: int, d: int) -> dict[str, int]:
        """Seed the engine for one direction; returns each track's last frame to write."""
        n = len(self.info.frames)
        stops: dict[str, int] = {}
        for t in tracks:
            cells = states[t]
            human = sorted(f for f, (state, prov, _) in cells.items() if prov == "human" and state != NONE)
            ahead = [f for f in human if (f > start if d > 0 else f < start)]
            key = (min(ahead) if d > 0 else max(ahead)) if ahead else None
            stops[t] = key if key is not None else (n - 1 if d > 0 else 0)
            valid = {f for f in human} | {start}
            if t in self.engine.track_ids() and not (set(self.engine.conditioning_frames(t)) <= valid and all(
                    cells.get(f, (NONE, None, 0))[2] == self._synced.get((t, f))
                    for f in self.engine.conditioning_frames(t))):
                self._drop(t)
            for f in (start, key):
                if f is None or (t in self.engine.track_ids()
                                 and self._synced.get((t, f)) == cells.get(f, (NONE, None, 0))[2]):
                    continue
                cell = store.cell(*self.key, t, f)
                if cell.state == PRESENT:
                    self._seed(t, f, cell)
                elif f == start:
                    raise EngineError(f"{self.key[0]}/{self.key[1]}: track {t!r} has no mask on frame {start} to "
                                      "propagate from")
        return stops

    def _run(self, tracks: Sequence[str], states: Mapping[str, Mapping[int, tuple]], start: int, d: int,
             stops: Mapping[str, int], writes: list[Write], on_step: Callable[[dict], None],
             cancel: threading.Event) -> bool:
        """One direction; appends the writes; returns whether it was cancelled."""
        far = max(stops.values()) if d > 0 else min(stops.values())
        steps = self.engine.propagate(tracks, start=start, direction="forward" if d > 0 else "backward")
        try:
            for step in steps:
                if cancel.is_set():
                    return True
                f, t = step.frame_index, step.track_id
                if (f > far) if d > 0 else (f < far):
                    break
                if f == start or ((f > stops[t]) if d > 0 else (f < stops[t])):
                    continue
                state, prov, version = states[t].get(f, (NONE, None, 0))
                if prov == "human":
                    continue
                if step.mask is not None and step.mask.any():
                    rle = _masks.encode(step.mask)
                    writes.append(Write(t, f, base=version, rle=rle))
                else:
                    rle = None
                    writes.append(Write(t, f, base=version, state=ABSENT))
                on_step({"frame": f, "track_id": t, "state": PRESENT if rle else ABSENT, "rle": rle,
                         "score": float(step.score)})
            return cancel.is_set()
        finally:
            steps.close()


class Sessions:
    """Open engine sessions by video, least recently used closed first (a SAM2 session holds a model)."""

    def __init__(self, engine: str, options: Mapping | None = None, *, max_open: int = 4) -> None:
        self.engine, self.options, self.max_open = engine, dict(options or {}), max_open
        self._open: OrderedDict[tuple[str, str], VideoSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, split: str, video_id: str) -> VideoSession:
        key = (split, video_id)
        with self._lock:
            session = self._open.get(key)
            if session is not None:
                self._open.move_to_end(key)
                return session
            while len(self._open) >= self.max_open:
                old_key, old = next(iter(self._open.items()))
                if old.lock.locked():
                    break                       # busy: allow one more than max_open for now
                del self._open[old_key]
                old.close()
            session = VideoSession(open_engine(self.engine, **self.options), store.video_info(split, video_id))
            self._open[key] = session
            return session

    def forget(self, split: str, video_id: str) -> None:
        """Close a video's session (an undo or a track edit changed what it was built from)."""
        with self._lock:
            session = self._open.pop((split, video_id), None)
        if session is None:
            return
        session.retired = True                  # a running propagation closes it when it ends
        if session.lock.acquire(blocking=False):
            try:
                session.close()
            finally:
                session.lock.release()

    def close(self) -> None:
        with self._lock:
            sessions, self._open = list(self._open.values()), OrderedDict()
        for session in sessions:
            session.close()
