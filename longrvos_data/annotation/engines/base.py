"""The mask-engine interface: prompts make conditioning frames, `propagate` tracks from them.

An engine holds one video session at a time. Prompts (`add_points`, `add_box`, `add_mask`)
make their frame a *conditioning frame* of the track and return the new mask at once;
`propagate` then carries every asked track across a frame range in the direction of
travel, yielding one `Step` per (frame, track) as it goes. Closing the iterator cancels the
run; everything yielded so far stays part of the session.

Range rules, shared by every engine:

- ``[start, end)`` in the direction of travel: forward covers ``start, start+1, ..., end-1``;
  backward covers ``start, start-1, ..., end+1`` (``end=-1`` includes frame 0).
- ``end=None`` stops each track at its nearest *other* conditioning frame in that direction
  (included, its prompt mask is yielded as is) or at the video's end, so that a correction
  re-propagates only up to the next frame a person fixed.
- A track takes part at a frame only once one of its conditioning frames lies at or behind
  that frame in the direction of travel, or where it was tracked before: an object that
  first appears at frame 40 is never invented on frames 0-39.

Masks are ``(H, W)`` bool at the video's size; points are ``(x, y)`` pixels of that size.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal, NamedTuple, Sequence

import numpy as np

from ...errors import LongRVOSError
from ...schema import Video

Direction = Literal["forward", "backward", "both"]
DIRECTIONS: tuple[str, ...] = ("forward", "backward", "both")


class EngineError(LongRVOSError):
    """A prompt or a call the session cannot take (no video open, unknown track, bad mask size...)."""


class Step(NamedTuple):
    """One propagated (frame, track): ``mask`` None when the engine finds the object absent."""

    frame_index: int
    track_id: str
    mask: np.ndarray | None
    score: float


class StepWithLogits(NamedTuple):
    """A `Step` plus the ``(H, W)`` float32 logits at video resolution (``propagate(logits=True)``)."""

    frame_index: int
    track_id: str
    mask: np.ndarray | None
    score: float
    logits: np.ndarray


@dataclass(frozen=True)
class Held:
    """Frame indices whose state the engine holds now, over all tracks of the session."""

    features: frozenset[int] = frozenset()
    memories: frozenset[int] = frozenset()
    pointers: frozenset[int] = frozenset()

    @property
    def frames(self) -> frozenset[int]:
        return self.features | self.memories | self.pointers


@dataclass
class TrackState:
    """What every engine knows of a track: its conditioning frames and where it was tracked.

    ``tracked`` maps a frame to the direction it was last tracked in (True = backward).
    """

    track_id: str
    cond: set[int] = field(default_factory=set)
    tracked: dict[int, bool] = field(default_factory=dict)

    def started(self, frame: int, reverse: bool) -> bool:
        """Whether the track takes part at ``frame`` travelling in this direction."""
        if frame in self.tracked:
            return True
        return any(c >= frame for c in self.cond) if reverse else any(c <= frame for c in self.cond)

    def stop(self, start: int, reverse: bool, num_frames: int) -> int:
        """The last frame ``end=None`` covers from ``start``: the nearest other conditioning frame
        in the direction of travel, else the video's end."""
        if reverse:
            return max((c for c in self.cond if c < start), default=0)
        return min((c for c in self.cond if c > start), default=num_frames - 1)


class Engine(abc.ABC):
    """One interface for every mask engine; subclasses implement the ``_`` hooks.

    Example:
        >>> engine = open_engine("classical")
        >>> engine.open(video)
        >>> first = engine.add_points(0, "1", [(320, 180)], [1])
        >>> for step in engine.propagate(["1"], start=0):
        ...     save(step.frame_index, step.track_id, step.mask)
        >>> engine.close()
    """

    name: str = ""

    def __init__(self) -> None:
        self.video: Video | None = None
        self._tracks: dict[str, TrackState] = {}

    # -- session ---------------------------------------------------------------------
    def open(self, video: Video, *, image_size: int | None = None) -> None:
        """Start a session on ``video`` (closing any previous one). ``image_size`` is the
        engine's working resolution where it has one (None: the engine's default)."""
        if not video.frames:
            raise EngineError(f"video {video.video_id!r} has no frames")
        self.close()
        self.video = video
        self._tracks = {}
        self._open(video, image_size)

    def reset(self) -> None:
        """Forget every track and prompt; the video stays open."""
        self._video()
        for track_id in list(self._tracks):
            self.remove_track(track_id)

    def close(self) -> None:
        """End the session and release everything it holds; idempotent."""
        if self.video is not None:
            self._close()
        self.video = None
        self._tracks = {}

    def remove_track(self, track_id: str) -> None:
        """Drop a track, its prompts and its state; unknown ids are ignored."""
        self._video()
        if self._tracks.pop(str(track_id), None) is not None:
            self._remove(str(track_id))

    @staticmethod
    def check_options(**options) -> None:
        """Refuse options that cannot work, cheaply, before a dataset is read (engines with model
        files check them here); the constructor still validates everything."""

    def held(self) -> Held:
        """Frame indices whose features, memories and pointers the session holds now."""
        return Held()

    def track_ids(self) -> list[str]:
        return list(self._tracks)

    def conditioning_frames(self, track_id: str) -> list[int]:
        return sorted(self._track(track_id).cond)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- prompts ---------------------------------------------------------------------
    def add_points(self, frame: int, track_id: str, points, labels) -> np.ndarray:
        """Clicks on ``frame``: ``points`` ``(N, 2)`` as ``(x, y)`` pixels, ``labels`` 1 positive,
        0 negative. Pass all of the frame's clicks: they replace the frame's earlier ones (the
        previous mask still guides the model). Returns the track's new ``(H, W)`` bool mask."""
        video = self._video()
        frame = self._frame(frame)
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        lab = np.asarray(labels, dtype=np.int32).reshape(-1)
        if len(pts) == 0 or len(pts) != len(lab):
            raise EngineError(f"video {video.video_id!r} frame {frame}: {len(pts)} points with {len(lab)} labels")
        if not np.isin(lab, (0, 1)).all():
            raise EngineError(f"video {video.video_id!r} frame {frame}: point labels must be 1 (positive) or 0 "
                              f"(negative), got {sorted(set(lab.tolist()))}")
        self._check_inside(pts, frame)
        return self._prompt(frame, track_id, lambda t: self._add_points(frame, t, pts, lab))

    def add_box(self, frame: int, track_id: str, box) -> np.ndarray:
        """A box ``(x0, y0, x1, y1)`` in pixels on ``frame``; returns the new mask."""
        video = self._video()
        frame = self._frame(frame)
        b = np.asarray(box, dtype=np.float32).reshape(-1)
        if b.shape != (4,) or not (b[2] > b[0] and b[3] > b[1]):
            raise EngineError(f"video {video.video_id!r} frame {frame}: a box is (x0, y0, x1, y1) with "
                              f"x1 > x0 and y1 > y0, got {b.tolist()}")
        self._check_inside(b.reshape(2, 2), frame)
        return self._prompt(frame, track_id, lambda t: self._add_box(frame, t, b))

    def add_mask(self, frame: int, track_id: str, mask) -> np.ndarray:
        """A whole ``(H, W)`` mask on ``frame`` (e.g. a human keyframe); returns the engine's mask."""
        video = self._video()
        frame = self._frame(frame)
        m = np.asarray(mask)
        if m.shape != (video.height, video.width):
            raise EngineError(f"video {video.video_id!r} frame {frame}: mask is {m.shape[1] if m.ndim == 2 else '?'}x"
                              f"{m.shape[0] if m.ndim == 2 else '?'}, the video is {video.width}x{video.height}")
        return self._prompt(frame, track_id, lambda t: self._add_mask(frame, t, m.astype(bool)))

    # -- propagation -----------------------------------------------------------------
    def propagate(self, track_ids: Iterable[str], *, start: int, end: int | None = None,
                  direction: Direction = "forward", logits: bool = False) -> Iterator[Step | StepWithLogits]:
        """Track ``track_ids`` over ``[start, end)`` in the direction of travel (see the module
        docstring for ``end=None``); yields `Step` (`StepWithLogits` with ``logits=True``).
        ``direction="both"`` runs forward, then backward from ``start`` (yielded once)."""
        video = self._video()
        if direction not in DIRECTIONS:
            raise EngineError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if direction == "both" and end is not None:
            raise EngineError("direction='both' takes no end: each way stops at the next conditioning frame")
        start = self._frame(start)
        tracks = [self._track(t) for t in dict.fromkeys(str(t) for t in track_ids)]
        if not tracks:
            raise EngineError("propagate needs at least one track")
        passes = {"forward": (False,), "backward": (True,), "both": (False, True)}[direction]
        return self._run(tracks, start, end, passes, logits, video)

    def _run(self, tracks: list[TrackState], start: int, end: int | None, passes: Sequence[bool],
             logits: bool, video: Video) -> Iterator[Step | StepWithLogits]:
        n = video.num_frames
        for pass_no, reverse in enumerate(passes):
            d = -1 if reverse else 1
            if end is None:
                last = {t.track_id: t.stop(start, reverse, n) for t in tracks}
            else:
                bound = min(max(end - d, 0), n - 1)
                last = {t.track_id: bound for t in tracks}
            first = start + d if pass_no else start
            far = min(last.values()) if reverse else max(last.values())
            self._begin_pass(tracks, first, reverse)
            for f in range(first, far + d, d):
                for t in tracks:
                    if (f < last[t.track_id]) if reverse else (f > last[t.track_id]):
                        continue
                    if not t.started(f, reverse):
                        continue
                    out = self._step(f, t, reverse, logits)
                    t.tracked[f] = reverse
                    yield out

    # -- helpers for subclasses ---------------------------------------------------------
    def _video(self) -> Video:
        if self.video is None:
            raise EngineError(f"no video is open in the {self.name} engine: call open(video) first")
        return self.video

    def _frame(self, frame: int) -> int:
        video = self._video()
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < video.num_frames:
            raise EngineError(f"video {video.video_id!r}: frame {frame!r} is not in 0..{video.num_frames - 1}")
        return int(frame)

    def _track(self, track_id: str) -> TrackState:
        try:
            return self._tracks[str(track_id)]
        except KeyError:
            raise EngineError(f"video {self._video().video_id!r}: track {track_id!r} has no prompt yet "
                              f"(known: {sorted(self._tracks)})") from None

    def _check_inside(self, xy: np.ndarray, frame: int) -> None:
        video = self._video()
        if not np.isfinite(xy).all() or (xy < 0).any() or (xy[:, 0] > video.width).any() \
                or (xy[:, 1] > video.height).any():
            raise EngineError(f"video {video.video_id!r} frame {frame}: coordinates {xy.tolist()} fall outside "
                              f"the {video.width}x{video.height} frame")

    def _prompt(self, frame: int, track_id: str, run) -> np.ndarray:
        track_id = str(track_id)
        track = self._tracks.get(track_id)
        new = track is None
        if new:
            track = self._tracks[track_id] = TrackState(track_id)
        try:
            mask = run(track)
        except BaseException:
            if new:
                self._tracks.pop(track_id, None)
                self._remove(track_id)
            raise
        track.cond.add(frame)
        return mask

    # -- hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self, video: Video, image_size: int | None) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _remove(self, track_id: str) -> None:
        """Release a track's state (the base class has already forgotten it)."""

    @abc.abstractmethod
    def _add_points(self, frame: int, track: TrackState, points: np.ndarray, labels: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _add_box(self, frame: int, track: TrackState, box: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _add_mask(self, frame: int, track: TrackState, mask: np.ndarray) -> np.ndarray: ...

    def _begin_pass(self, tracks: list[TrackState], start: int, reverse: bool) -> None:
        """Called before each pass of `propagate` from ``start`` (SAM2 encodes the new prompts'
        memories here and releases what the pass will not read)."""

    @abc.abstractmethod
    def _step(self, frame: int, track: TrackState, reverse: bool, logits: bool) -> Step | StepWithLogits:
        """Track ``track`` into ``frame`` (a conditioning frame yields its prompt mask)."""
