"""Edits an annotator makes beyond prompts: brush strokes, absence, and track surgery over a range.

Each function is one store operation (one undo step). A brush stroke names the version it
was drawn on (a stale one is a `Conflict`); range edits apply to the cells as they are when
the operation runs, inside its transaction, so that they never lose a concurrent write:
the store refuses the whole operation if any cell moved between the read and the write.

Moved content keeps its provenance (a propagated mask moved to another track is still
propagated, so the next propagation may replace it); what a person decides here (a stroke,
an absence, the union of a merge) is ``human``.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .. import masks as _masks
from ..schema import Track
from .store import ABSENT, NONE, PRESENT, Applied, Cell, Store, StoreError, NotFound, Write


def next_track_id(store: Store, split: str, video_id: str) -> str:
    """The smallest integer id above every integer track id of the video, as a string."""
    numbers = [int(t.track_id) for t in store.tracks(split, video_id) if t.track_id.isdigit()]
    return str(max(numbers, default=0) + 1)


def add_track(store: Store, split: str, video_id: str, *, category: str | None = None,
              track_id: str | None = None) -> str:
    """A new, empty track; returns its id (`next_track_id` unless given)."""
    track_id = track_id or next_track_id(store, split, video_id)
    store.add_track(split, video_id, Track(track_id, category))
    return track_id


def stroke_mask(height: int, width: int, points: Sequence[Sequence[float]], radius: float) -> np.ndarray:
    """``(H, W)`` bool: disks of ``radius`` px at the points, joined by segments as wide."""
    if not points:
        raise StoreError("a brush stroke needs at least one point")
    r = max(1, int(round(radius)))
    canvas = np.zeros((height, width), np.uint8)
    pts = [(int(round(x)), int(round(y))) for x, y in points]
    for p, q in zip(pts, pts[1:]):
        cv2.line(canvas, p, q, 1, thickness=2 * r + 1)
    for p in pts:
        cv2.circle(canvas, p, r, 1, thickness=-1)
    return canvas.astype(bool)


def _mask(cell: Cell, height: int, width: int) -> np.ndarray:
    if cell.state == PRESENT and cell.rle is not None:
        return _masks.decode(cell.rle)
    return np.zeros((height, width), bool)


def _present_or_absent(mask: np.ndarray, track_id: str, frame: int, base: int, provenance: str) -> Write:
    """A present write of ``mask``, or an absent one when it is empty (an erased object is gone)."""
    if mask.any():
        return Write(track_id, frame, base=base, rle=_masks.encode(mask), provenance=provenance)
    return Write(track_id, frame, base=base, state=ABSENT, provenance=provenance)


def brush(store: Store, split: str, video_id: str, track_id: str, frame: int, *, base: int,
          points: Sequence[Sequence[float]], radius: float, erase: bool = False, user: str) -> Applied:
    """Paint (or, with ``erase``, clear) a stroke on one cell drawn on version ``base``."""
    height, width, _ = store.video_size(split, video_id)
    if track_id not in {t.track_id for t in store.tracks(split, video_id)}:
        raise NotFound(f"{split}/{video_id}: no track {track_id!r}")
    cell = store.cell(split, video_id, track_id, frame)
    mask = _mask(cell, height, width)
    stroke = stroke_mask(height, width, points, radius)
    mask = mask & ~stroke if erase else mask | stroke
    write = _present_or_absent(mask, track_id, frame, base, "human")
    return store.write(split, video_id, [write], user=user, label="eraser" if erase else "brush")


def _range(store: Store, split: str, video_id: str, start: int, end: int) -> range:
    """Frames ``start..end`` (inclusive), checked against the video."""
    n = store.video_size(split, video_id)[2]
    if not 0 <= start <= end < n:
        raise StoreError(f"{split}/{video_id}: frames {start}..{end} are not within 0..{n - 1}")
    return range(start, end + 1)


def _by_frame(cells: list[Cell], track_id: str) -> dict[int, Cell]:
    return {c.frame: c for c in cells if c.track_id == track_id}


def mark_absent(store: Store, split: str, video_id: str, track_id: str, start: int, end: int, *,
                user: str) -> Applied:
    """The track is not in frames ``start..end``: one operation."""
    frames = _range(store, split, video_id, start, end)
    current = store.versions(split, video_id, [(track_id, f) for f in frames])
    writes = [Write(track_id, f, base=current.get((track_id, f), (NONE, None, 0))[2], state=ABSENT)
              for f in frames]
    return store.write(split, video_id, writes, user=user, label="absent")


def _moved(cell: Cell | None, track_id: str, frame: int, base: int) -> Write | None:
    """A write giving ``track_id`` the content of ``cell`` (None: it was never annotated)."""
    if cell is None or cell.state == NONE:
        return None if base == 0 else Write(track_id, frame, base=base, state=NONE, provenance=None)
    return Write(track_id, frame, base=base, state=cell.state, rle=cell.rle, provenance=cell.provenance)


def swap_tracks(store: Store, split: str, video_id: str, a: str, b: str, start: int, end: int, *,
                user: str) -> Applied:
    """Exchange two tracks' cells on frames ``start..end`` (an identity switch fixed)."""
    if a == b:
        raise StoreError(f"{split}/{video_id}: swap needs two different tracks, got {a!r} twice")
    frames = _range(store, split, video_id, start, end)
    cells = store.cells(split, video_id, frames=frames, track_ids=[a, b])
    ca, cb = _by_frame(cells, a), _by_frame(cells, b)
    writes = []
    for f in frames:
        for dst, src, own in ((a, cb.get(f), ca.get(f)), (b, ca.get(f), cb.get(f))):
            w = _moved(src, dst, f, own.version if own else 0)
            if w is not None:
                writes.append(w)
    return _write(store, split, video_id, writes, user=user, label=f"swap {a} {b}")


def merge_tracks(store: Store, split: str, video_id: str, source: str, target: str, start: int, end: int, *,
                 user: str) -> Applied:
    """Frames ``start..end``: ``target`` becomes the union of both tracks, ``source`` absent
    (one object annotated as two)."""
    if source == target:
        raise StoreError(f"{split}/{video_id}: merge needs two different tracks, got {source!r} twice")
    height, width, _ = store.video_size(split, video_id)
    frames = _range(store, split, video_id, start, end)
    cells = store.cells(split, video_id, frames=frames, track_ids=[source, target])
    cs, ct = _by_frame(cells, source), _by_frame(cells, target)
    writes = []
    for f in frames:
        s, t = cs.get(f), ct.get(f)
        if s is None or s.state == NONE:
            continue
        if s.state == PRESENT:
            if t is not None and t.state == PRESENT:
                union = _mask(s, height, width) | _mask(t, height, width)
                writes.append(_present_or_absent(union, target, f, t.version, "human"))
            else:
                writes.append(_moved(s, target, f, t.version if t else 0))
        writes.append(Write(source, f, base=s.version, state=ABSENT, provenance="human"))
    return _write(store, split, video_id, writes, user=user, label=f"merge {source} into {target}")


def split_track(store: Store, split: str, video_id: str, track_id: str, start: int, end: int, *, user: str,
                new_track_id: str | None = None) -> tuple[Applied, str]:
    """Frames ``start..end`` of ``track_id`` become a new track (two objects annotated as one);
    returns the operation and the new track's id. The new track is made in the same transaction,
    so a refused operation leaves no empty track behind (nor its rejected attempt)."""
    frames = _range(store, split, video_id, start, end)
    cells = _by_frame(store.cells(split, video_id, frames=frames, track_ids=[track_id]), track_id)
    if not any(c.state != NONE for c in cells.values()):
        raise StoreError(f"{split}/{video_id}: track {track_id!r} has no annotation on frames {start}..{end}")
    with store.transaction():
        new = add_track(store, split, video_id, track_id=new_track_id)
        writes = []
        for f, c in cells.items():
            if c.state == NONE:
                continue
            writes.append(_moved(c, new, f, 0))
            writes.append(Write(track_id, f, base=c.version, state=ABSENT, provenance="human"))
        applied = store.write(split, video_id, writes, user=user, label=f"split {track_id} into {new}")
    return applied, new


def _write(store: Store, split: str, video_id: str, writes: list[Write], *, user: str, label: str) -> Applied:
    if not writes:
        raise StoreError(f"{split}/{video_id}: {label}: nothing is annotated on those frames")
    return store.write(split, video_id, writes, user=user, label=label)
