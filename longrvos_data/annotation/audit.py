"""The audit: find the masks and expressions that need a human, without looking at all of them.

Every check looks at one track over three consecutive frames (the frame and its two
neighbours), so a video streams through in one pass holding three frames of crops per
track; what it keeps of the rest is a few numbers per mask. A defect is judged against the
track's own neighbourhood, not a global rule, which is what separates it from the things a
real video does:

- per frame: ``empty_in_span`` (the object vanishes for one or two frames between visible
  ones), ``tiny_area`` (a speck where the neighbours hold an object), ``fragmented`` (more
  pieces than the neighbours have), ``holes`` (a hole the neighbours do not have: real
  holes persist), ``border`` (touches the frame edge while the neighbours keep away from
  it: objects leaving the frame approach it), ``overlap`` (two tracks claim the same pixels);
- over time: ``low_iou`` (the shape differs from both neighbours, which agree; compared
  after aligning centroids, so fast motion is not a defect), ``area_jump`` and
  ``centre_jump`` (area or centre off what both neighbours say), ``flicker`` (visibility
  toggling within a short window: one occlusion is two toggles), ``identity_swap`` (two
  tracks exchange their objects, from the switch to the switch back);
- against a mask engine (``engine_disagrees``, ``fb_disagreement``) or a model's predictions
  (``model_disagrees``), see `audit`;
- expressions: ``target_empty``, ``no_target_names_tracks``, ``duplicate_expression``.

One finding explains a frame: flags of the most specific check win (`PRIORITY`), each
temporal check keeps its strongest frame among adjacent ones, and a swap's boundaries
silence the temporal checks around them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from .. import masks as _masks
from ..errors import LongRVOSError, ProblemLog
from ..fsutil import atomic_write_bytes, atomic_write_json, report_paths
from ..schema import Video
from .store import SEVERITY_RANK

log = logging.getLogger("longrvos_data")

MASK_CHECKS = ("identity_swap", "flicker", "empty_in_span", "tiny_area", "overlap", "fragmented", "holes", "border",
               "area_jump", "centre_jump", "low_iou")
MODEL_CHECKS = ("engine_disagrees", "fb_disagreement", "model_disagrees")
EXPRESSION_CHECKS = ("target_empty", "no_target_names_tracks", "duplicate_expression")
CHECKS: tuple[str, ...] = MASK_CHECKS + MODEL_CHECKS + EXPRESSION_CHECKS
PRIORITY = {c: i for i, c in enumerate(MASK_CHECKS)}   # earlier = more specific, wins a frame
TEMPORAL = ("area_jump", "centre_jump", "low_iou")
SOURCE = "audit"    # the store's flag source for audit flags


@dataclass(frozen=True)
class AuditConfig:
    """Every threshold (all in the report's ``config``). Pixel sizes are at the video's size."""

    gap_max: int = 2                 # empty_in_span: longest gap (frames) still a defect; longer is an occlusion
    tiny_px: int = 16                # tiny_area: at most this many pixels...
    tiny_ratio: float = 0.2          # ...and under this fraction of both neighbours' areas
    fragment_min_px: int = 8         # fragmented: pieces smaller than this are ignored
    fragments_max: int = 2           # fragmented: more pieces than this, and more than both neighbours
    hole_min_px: int = 8             # holes: enclosed background smaller than this is ignored
    hole_ratio: float = 0.02         # holes: new hole area over mask area
    border_margin: int = 6           # border: the neighbours keep at least this far from the edge
    overlap_ratio: float = 0.2       # overlap: shared pixels over the smaller mask
    area_ratio: float = 1.6          # area_jump: off both neighbours by this factor...
    area_agree: float = 1.3          # ...while they agree within this factor
    centre_ratio: float = 0.5        # centre_jump: off the neighbours' midpoint by this x sqrt(area)...
    centre_px: float = 6.0           # ...and by at least this many pixels
    low_iou: float = 0.6             # low_iou: aligned IoU with both neighbours below this...
    low_iou_agree: float = 0.75      # ...while they reach this with each other
    flicker_toggles: int = 5         # flicker: this many visibility changes...
    flicker_window: int = 10         # ...within this many frames
    swap_ratio: float = 0.5          # identity_swap: crossed cost under this fraction of the straight one
    swap_min_cost: float = 1.0       # identity_swap: the straight cost must reach this
    engine_j: float = 0.5            # engine_disagrees / fb_disagreement / model_disagrees: J below this
    keyframe_every: int = 10         # engine checks on sources without human keyframes: every Nth frame
    high_at: float = 2.5             # severity: high from this far past the threshold (score), medium from
    medium_at: float = 1.5

    def severity(self, score: float) -> str:
        return "high" if score >= self.high_at else "medium" if score >= self.medium_at else "low"


@dataclass(frozen=True)
class AuditFlag:
    """One finding: a row of REPORT.json's ``flags`` (``frame_end`` inclusive; ``score`` >= 1
    says how far past its threshold the value is, and orders flags within a severity)."""

    flag_id: str
    check: str
    severity: str
    split: str
    video_id: str
    track_ids: tuple[str, ...]
    exp_id: str | None
    frame_start: int
    frame_end: int
    value: float
    threshold: float
    score: float
    message: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["track_ids"] = list(self.track_ids)
        return d


def flag_id(check: str, split: str, video_id: str, track_ids: Sequence[str], exp_id: str | None,
            frame_start: int, frame_end: int) -> str:
    """Stable across runs (a dismissal names it): a hash of what the flag is about, not of its value."""
    key = json.dumps([check, split, video_id, sorted(track_ids), exp_id, frame_start, frame_end])
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def make_flag(config: AuditConfig, check: str, video: Video, track_ids: Sequence[str], frames: tuple[int, int],
              value: float, threshold: float, score: float, message: str, exp_id: str | None = None) -> AuditFlag:
    score = float(max(score, 1.0))
    return AuditFlag(flag_id(check, video.split, video.video_id, track_ids, exp_id, *frames), check,
                     config.severity(score), video.split, video.video_id, tuple(track_ids), exp_id, int(frames[0]),
                     int(frames[1]), round(float(value), 6), float(threshold), round(score, 4), message)


# -- per-mask features ------------------------------------------------------------------------
@dataclass
class Shape:
    """What the checks know of one present mask: its crop (only while within the window)."""

    area: int
    cx: float
    cy: float
    x0: int
    y0: int
    x1: int
    y1: int
    pieces: int
    hole_area: int
    border_px: int
    crop: np.ndarray | None
    centres: tuple[tuple[float, float], ...] = ()   # of the pieces that count
    holes: np.ndarray | None = None                  # the crop's enclosed background, when there is some

    def edge_distance(self, width: int, height: int) -> int:
        return int(min(self.x0, self.y0, width - 1 - self.x1, height - 1 - self.y1))


def shape_of(mask: np.ndarray, config: AuditConfig) -> Shape | None:
    """The features of a mask; None when it is empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if not len(ys):
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
    crop = np.ascontiguousarray(mask[y0:y1 + 1, x0:x1 + 1])
    u8 = crop.view(np.uint8)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(u8, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    area = int(sizes.sum())
    cy_, cx_ = np.average(centroids[1:, ::-1], axis=0, weights=sizes) if n > 1 else (0.0, 0.0)
    big = np.flatnonzero(sizes >= config.fragment_min_px) + 1
    centres = tuple((float(centroids[k, 0]) + x0, float(centroids[k, 1]) + y0) for k in big)
    # holes: background pieces of the padded crop that do not reach its border
    padded = np.pad(1 - u8, 1, constant_values=1)
    m, labels, bstats, _ = cv2.connectedComponentsWithStats(padded, connectivity=4)
    outside = labels[0, 0]
    inside = [k for k in range(1, m) if k != outside and bstats[k, cv2.CC_STAT_AREA] >= config.hole_min_px]
    holes = np.isin(labels[1:-1, 1:-1], inside) if inside else None
    hole_area = int(holes.sum()) if holes is not None else 0
    border = int(mask[0].sum() + mask[-1].sum() + mask[1:-1, 0].sum() + mask[1:-1, -1].sum())
    return Shape(area, float(cx_) + x0, float(cy_) + y0, x0, y0, x1, y1, len(big), hole_area, border, crop, centres,
                 holes)


def _overlap(a: np.ndarray, ax0: int, ay0: int, b: np.ndarray, bx0: int, by0: int) -> int:
    """Pixels set in both of two crops placed at their origins."""
    x0, y0 = max(ax0, bx0), max(ay0, by0)
    x1, y1 = min(ax0 + a.shape[1], bx0 + b.shape[1]), min(ay0 + a.shape[0], by0 + b.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0
    return int(np.count_nonzero(a[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0] & b[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]))


def shared(a: Shape, b: Shape, *, align: bool = False) -> int:
    """Pixels two masks share; with ``align``, after moving ``a``'s centroid onto ``b``'s."""
    dx = int(round(b.cx - a.cx)) if align else 0
    dy = int(round(b.cy - a.cy)) if align else 0
    return _overlap(a.crop, a.x0 + dx, a.y0 + dy, b.crop, b.x0, b.y0)


def iou(a: Shape, b: Shape, *, align: bool = False) -> float:
    inter = shared(a, b, align=align)
    return inter / max(1, a.area + b.area - inter)


def _occluded(tid: str, s: Shape, shapes: Mapping[str, Shape], expected: int) -> bool:
    """Whether another track touches the mask in this frame while the mask is smaller than the
    neighbouring frames' (an object passing in front)."""
    if s.area >= 0.9 * expected:
        return False
    for other, o in shapes.items():
        if other != tid and o.x0 <= s.x1 + 3 and s.x0 <= o.x1 + 3 and o.y0 <= s.y1 + 3 and s.y0 <= o.y1 + 3:
            return True
    return False


def _stray(s: Shape, p: Shape, q: Shape) -> int:
    """Pieces of ``s`` whose centre lies away from where the neighbouring frames have the object
    (their boxes, widened by a quarter of its size): an occluder's cut stays inside."""
    m = max(4.0, 0.25 * math.sqrt(s.area))
    x0, y0 = min(p.x0, q.x0) - m, min(p.y0, q.y0) - m
    x1, y1 = max(p.x1, q.x1) + m, max(p.y1, q.y1) + m
    return sum(1 for cx, cy in s.centres if not (x0 <= cx <= x1 and y0 <= cy <= y1))


def _cost(a: Shape, b: Shape) -> float:
    """How unlike the same object two masks in consecutive frames are: centre distance in
    object sizes plus the log area ratio."""
    size = math.sqrt(max(1.0, (a.area + b.area) / 2))
    return math.hypot(a.cx - b.cx, a.cy - b.cy) / size + abs(math.log(max(a.area, 1) / max(b.area, 1)))


# -- one video ---------------------------------------------------------------------------------
@dataclass
class _Candidate:
    check: str
    tracks: tuple[str, ...]
    start: int
    end: int
    value: float
    threshold: float
    score: float
    message: str


class _VideoAudit:
    """The streaming pass over one video's masks (see the module docstring)."""

    def __init__(self, video: Video, config: AuditConfig) -> None:
        self.video, self.config = video, config
        self.tracks = [t.track_id for t in video.tracks]
        self.window: list[dict[str, Shape]] = []      # the last three frames' shapes, by track
        self.visible: dict[str, list[bool]] = {t: [] for t in self.tracks}
        self.areas: dict[str, list[int]] = {t: [] for t in self.tracks}
        self.found: list[_Candidate] = []
        self.switches: list[tuple[int, str, str, float]] = []   # (frame, a, b, cost ratio)

    def run(self, also=None) -> list[_Candidate]:
        """The pass; ``also(t, masks)`` sees each frame's masks too (the prediction check)."""
        n = self.video.num_frames
        for t in range(n):
            masks = self.video.frame_masks(t)
            if also is not None:
                also(t, masks)
            shapes = {}
            for tid in self.tracks:
                m = masks.get(tid)
                s = shape_of(m, self.config) if m is not None else None
                if s is not None:
                    shapes[tid] = s
                self.visible[tid].append(s is not None)
                self.areas[tid].append(s.area if s else 0)
            self._overlaps(t, shapes)
            self.window.append(shapes)
            if len(self.window) > 3:
                self.window.pop(0)
            if len(self.window) >= 2:
                self._switch(t)
            if len(self.window) == 3:
                self._middle(t - 1)
        for tid in self.tracks:
            self._visibility(tid)
        self._swaps()
        return self.found

    def _add(self, *args) -> None:
        self.found.append(_Candidate(*args))

    # per frame, two tracks
    def _overlaps(self, t: int, shapes: Mapping[str, Shape]) -> None:
        c = self.config
        ids = list(shapes)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                sa, sb = shapes[a], shapes[b]
                ratio = shared(sa, sb) / max(1, min(sa.area, sb.area))
                if ratio >= c.overlap_ratio:
                    self._add("overlap", (a, b), t, t, ratio, c.overlap_ratio, ratio / c.overlap_ratio,
                              f"tracks {a} and {b} share {ratio:.0%} of the smaller mask")

    # the middle frame of the window, one track
    def _middle(self, t: int) -> None:
        c = self.config
        prev, cur, nxt = self.window
        h, w = self.video.height, self.video.width
        for tid, s in cur.items():
            p, q = prev.get(tid), nxt.get(tid)
            if p is None or q is None:
                continue
            small = min(p.area, q.area)
            if s.area <= c.tiny_px and s.area < c.tiny_ratio * small:
                self._add("tiny_area", (tid,), t, t, s.area, c.tiny_px, small / max(1, s.area) * c.tiny_ratio * 2,
                          f"{s.area} px where the neighbouring frames hold {p.area} and {q.area}")
            stray = _stray(s, p, q)
            if s.pieces > c.fragments_max and stray and s.pieces > max(p.pieces, q.pieces):
                self._add("fragmented", (tid,), t, t, s.pieces, c.fragments_max, 1.0 + stray,
                          f"{s.pieces} pieces ({stray} away from the object) where the neighbouring frames have "
                          f"{p.pieces} and {q.pieces}")
            covered = sum(_overlap(s.holes, s.x0, s.y0, o.crop, o.x0, o.y0)
                          for other, o in cur.items() if other != tid) if s.holes is not None else 0
            # as a fraction of the mask, so that a ring scaled up is not a new hole; what another
            # object in front fills is no defect
            ratio = (s.hole_area - covered) / s.area - max(p.hole_area / p.area, q.hole_area / q.area)
            new_hole = int(ratio * s.area)
            if new_hole >= c.hole_min_px and ratio >= c.hole_ratio:
                self._add("holes", (tid,), t, t, ratio, c.hole_ratio, ratio / c.hole_ratio,
                          f"a {new_hole} px hole the neighbouring frames do not have")
            if s.border_px and min(p.edge_distance(w, h), q.edge_distance(w, h)) >= c.border_margin:
                self._add("border", (tid,), t, t, s.border_px, 1, 1 + math.log2(1 + s.border_px),
                          f"touches the frame edge ({s.border_px} px) while the neighbouring frames keep "
                          f"{min(p.edge_distance(w, h), q.edge_distance(w, h))} px away")
            if _occluded(tid, s, cur, max(p.area, q.area)):
                continue        # another object in front explains a smaller, shifted, reshaped mask
            r1, r2, rn = s.area / p.area, s.area / q.area, p.area / q.area
            if (min(r1, r2) > c.area_ratio or max(r1, r2) < 1 / c.area_ratio) and \
                    max(rn, 1 / rn) < c.area_agree:
                jump = math.sqrt(r1 * r2)
                jump = max(jump, 1 / jump)
                self._add("area_jump", (tid,), t, t, jump, c.area_ratio, (jump - 1) / (c.area_ratio - 1),
                          f"area {s.area} px against {p.area} and {q.area} in the neighbouring frames")
            mx, my = (p.cx + q.cx) / 2, (p.cy + q.cy) / 2
            off = math.hypot(s.cx - mx, s.cy - my)
            size = math.sqrt(s.area)
            if off > c.centre_px and off > c.centre_ratio * size:
                rel = off / size
                self._add("centre_jump", (tid,), t, t, rel, c.centre_ratio, rel / c.centre_ratio,
                          f"centre {off:.0f} px off the neighbouring frames' midpoint")
            a, b, ab = iou(p, s, align=True), iou(s, q, align=True), iou(p, q, align=True)
            if max(a, b) < c.low_iou and ab >= c.low_iou_agree:
                self._add("low_iou", (tid,), t, t, max(a, b), c.low_iou,
                          (1 - max(a, b)) / (1 - c.low_iou),
                          f"shape IoU {max(a, b):.2f} with the neighbouring frames, which agree at {ab:.2f}")

    # consecutive frames, two tracks
    def _switch(self, t: int) -> None:
        c = self.config
        before, now = self.window[-2], self.window[-1]
        ids = [tid for tid in now if tid in before]
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                straight = _cost(before[a], now[a]) + _cost(before[b], now[b])
                crossed = _cost(before[a], now[b]) + _cost(before[b], now[a])
                if straight >= c.swap_min_cost and crossed < c.swap_ratio * straight:
                    self.switches.append((t, a, b, crossed / straight))

    def _swaps(self) -> None:
        """Pair each switch of two tracks with the next switch of the same pair (the way back)."""
        c = self.config
        by_pair: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for t, a, b, ratio in self.switches:
            by_pair.setdefault((a, b), []).append((t, ratio))
        n = self.video.num_frames
        for (a, b), events in by_pair.items():
            for k in range(0, len(events), 2):
                start, ratio = events[k]
                end = events[k + 1][0] - 1 if k + 1 < len(events) else n - 1
                if k + 1 >= len(events):
                    both = [f for f in range(start, n) if self.visible[a][f] and self.visible[b][f]]
                    end = both[-1] if both else start
                self._add("identity_swap", (a, b), start, end, ratio, c.swap_ratio, c.swap_ratio / max(ratio, 1e-3),
                          f"tracks {a} and {b} exchange their objects on frames {start}..{end}")

    def _visibility(self, tid: str) -> None:
        c = self.config
        vis = self.visible[tid]
        toggles = [i for i in range(1, len(vis)) if vis[i] != vis[i - 1]]
        in_flicker: set[int] = set()
        i = 0
        while i < len(toggles):   # clusters of toggles with at least flicker_toggles within the window
            j = i
            while j + 1 < len(toggles) and toggles[j + 1] - toggles[i] < c.flicker_window:
                j += 1
            if j - i + 1 >= c.flicker_toggles:
                while j + 1 < len(toggles) and toggles[j + 1] - toggles[j] < c.flicker_window // 2:
                    j += 1
                gaps = [f for f in range(toggles[i] - 1, toggles[j] + 1) if 0 <= f < len(vis) and not vis[f]]
                start, end = gaps[0], gaps[-1]
                count = j - i + 1
                self._add("flicker", (tid,), start, end, count, c.flicker_toggles, count / c.flicker_toggles * 1.5,
                          f"visibility changes {count} times on frames {start}..{end}")
                in_flicker.update(range(start, end + 1))
                i = j + 1
            else:
                i += 1
        areas = self.areas[tid]
        f = 0
        while f < len(vis):
            if vis[f]:
                f += 1
                continue
            g = f
            while g < len(vis) and not vis[g]:
                g += 1
            if 0 < f and g < len(vis) and g - f <= c.gap_max and f not in in_flicker:
                around = min(areas[f - 1], areas[g])
                if around > c.tiny_px:
                    self._add("empty_in_span", (tid,), f, g - 1, g - f, c.gap_max,
                              (c.gap_max + 1 - (g - f)) * (1.5 if around > 4 * c.tiny_px else 1.0),
                              f"no mask on {g - f} frame(s) between frames where it has "
                              f"{areas[f - 1]} and {areas[g]} px")
            f = g


def _resolve(found: list[_Candidate]) -> list[_Candidate]:
    """One finding per frame: the most specific check wins; a temporal check keeps its strongest
    of adjacent frames; a swap's boundaries and a per-frame defect silence temporal checks
    around them (their neighbours see the defect too)."""
    quiet: set[tuple[str, int]] = set()      # (track, frame) where temporal checks are explained
    for c in found:
        if c.check in TEMPORAL or c.check == "overlap":
            continue
        frames = (c.start, c.end + 1) if c.check == "identity_swap" else range(c.start, c.end + 1)
        for f in frames:
            for tid in c.tracks:
                quiet.update((tid, g) for g in (f - 1, f, f + 1))
    kept = [c for c in found if not (c.check in TEMPORAL and (c.tracks[0], c.start) in quiet)]
    # non-maximum suppression of each temporal check over adjacent frames
    best: dict[tuple[str, str, int], _Candidate] = {}
    out: list[_Candidate] = []
    for c in sorted(kept, key=lambda c: -c.score):
        if c.check in TEMPORAL:
            key = c.check, c.tracks[0]
            if any((key[0], key[1], f) in best for f in (c.start - 1, c.start + 1)):
                continue
            best[(key[0], key[1], c.start)] = c
        out.append(c)
    # the most specific per-frame check explains a (track, frame)
    owner: dict[tuple[str, int], int] = {}
    final: list[_Candidate] = []
    for c in sorted(out, key=lambda c: (PRIORITY.get(c.check, 99), -c.score)):
        if c.check in ("identity_swap", "flicker"):
            final.append(c)
            for f in range(c.start, c.end + 1):
                for tid in c.tracks:
                    owner.setdefault((tid, f), PRIORITY[c.check])
            continue
        cells = [(tid, f) for tid in c.tracks for f in range(c.start, c.end + 1)]
        if any(owner.get(cell, 99) < PRIORITY[c.check] for cell in cells):
            continue
        for cell in cells:
            owner.setdefault(cell, PRIORITY[c.check])
        final.append(c)
    return final


def check_masks(video: Video, config: AuditConfig = AuditConfig()) -> list[AuditFlag]:
    """The mask checks of one video (one streaming pass over its frames)."""
    found = _resolve(_VideoAudit(video, config).run())
    return [make_flag(config, c.check, video, c.tracks, (c.start, c.end), c.value, c.threshold, c.score, c.message)
            for c in found]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def check_expressions(video: Video, config: AuditConfig = AuditConfig(),
                      visible: Mapping[str, bool] | None = None) -> list[AuditFlag]:
    """The expression checks; ``visible``: whether each track has a mask in some frame (read
    from the video when None)."""
    if visible is None:
        seen: set[str] = set()
        for t in range(video.num_frames):
            seen.update(tid for tid, a in video.frame_areas(t).items() if a > 0)
        visible = {t.track_id: t.track_id in seen for t in video.tracks}
    last = video.num_frames - 1
    flags: list[AuditFlag] = []
    texts: dict[str, str] = {}
    for e in video.expressions:
        if e.kind == "no-target" and e.track_ids:
            flags.append(make_flag(config, "no_target_names_tracks", video, e.track_ids, (0, last), len(e.track_ids),
                                   0, 3.0, f"expression {e.exp_id} is no-target but names {list(e.track_ids)}",
                                   e.exp_id))
        elif e.kind not in ("no-target", "caption") and e.track_ids and \
                not any(visible.get(t, False) for t in e.track_ids):
            flags.append(make_flag(config, "target_empty", video, e.track_ids, (0, last), 0, 1, 3.0,
                                   f"expression {e.exp_id} ({e.text!r}): its target has no mask in any frame",
                                   e.exp_id))
        key = _normalise(e.text)
        if key and key in texts:
            flags.append(make_flag(config, "duplicate_expression", video, e.track_ids, (0, last), 1, 1, 1.6,
                                   f"expression {e.exp_id} repeats expression {texts[key]} ({e.text!r})", e.exp_id))
        texts.setdefault(key, e.exp_id)
    return flags


# -- against predictions and a mask engine ---------------------------------------------------------
def _spans(frames: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Runs of consecutive frame indices as ``(first, last)``."""
    start = prev = None
    for f in frames:
        if prev is not None and f == prev + 1:
            prev = f
            continue
        if start is not None:
            yield start, prev
        start = prev = f
    if start is not None:
        yield start, prev


def _j(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Region similarity J, 1 when both are empty (the official convention)."""
    a_any = a is not None and a.any()
    b_any = b is not None and b.any()
    if not a_any and not b_any:
        return 1.0
    if not a_any or not b_any:
        return 0.0
    return float(np.count_nonzero(a & b) / np.count_nonzero(a | b))


def _disagreement_flags(video: Video, config: AuditConfig, check: str, bad: Mapping[tuple, list[tuple[int, float]]],
                        what: str) -> list[AuditFlag]:
    """One flag per run of frames where J fell below the threshold; its value is the run's mean J."""
    flags = []
    for (tracks, exp_id), rows in bad.items():
        js = dict(rows)
        for start, end in _spans(sorted(js)):
            mean = float(np.mean([js[f] for f in range(start, end + 1)]))
            flags.append(make_flag(config, check, video, tracks, (start, end), mean, config.engine_j,
                                   (1 - mean) / (1 - config.engine_j) if config.engine_j < 1 else 1.0,
                                   f"{what} on frames {start}..{end} (mean J {mean:.2f})", exp_id))
    return flags


class _PredictionCheck:
    """``model_disagrees``, fed each frame's masks by the streaming pass: LVOS predictions per
    object, referring ones per expression (against the union of its tracks)."""

    def __init__(self, video: Video, pred: str | Path, config: AuditConfig) -> None:
        from ..predictions import IssueLog, open_predictions
        self.video, self.config = video, config
        lvos = video.dataset == "lvos"
        self.preds = open_predictions(pred, protocol="lvos" if lvos else "mevis").open(video, IssueLog(video.video_id))
        if lvos:
            self.units = [(t.track_id, (t.track_id,), None) for t in video.tracks]
        else:
            self.units = [(e.exp_id, tuple(e.track_ids), e.exp_id) for e in video.expressions
                          if e.track_ids and self.preds.has_unit(e.exp_id)]
        self.bad: dict[tuple, list[tuple[int, float]]] = {}

    def frame(self, t: int, masks: Mapping[str, np.ndarray]) -> None:
        if not self.preds.present:
            return
        name = self.video.frames[t].name
        for unit, tracks, exp_id in self.units:
            read = self.preds.read(unit, t, name)
            if read.defect:
                continue
            pred = None if read.mask is None else np.asarray(read.mask) != 0
            parts = [masks[k] for k in tracks if k in masks]
            stored = np.logical_or.reduce(parts) if parts else None
            j = _j(stored, pred)
            if j < self.config.engine_j:
                self.bad.setdefault((tracks, exp_id), []).append((t, j))

    def flags(self) -> list[AuditFlag]:
        return _disagreement_flags(self.video, self.config, "model_disagrees", self.bad,
                                   "the model's prediction disagrees with the mask")


def keyframes(video: Video, config: AuditConfig, visible: Mapping[str, Sequence[bool]]) -> dict[str, list[int]]:
    """Where the engine checks start from, per track: a project's human-edited masks (and the
    track's first mask), or, for tracks no one edited and other sources, every
    ``keyframe_every``-th frame the track is visible on; the track's last visible frame ends the
    last run. ``visible``: per track, per frame, from the streaming pass."""
    from .store import DB_NAME, Store

    human: dict[str, set[int]] = {}
    if video.source_file and Path(video.source_file).name == DB_NAME:
        with Store.open(video.source_file) as store:
            for tid, f, state, prov, _ in store.cell_states(video.split, video.video_id):
                if prov == "human" and state == "present":
                    human.setdefault(tid, set()).add(f)
    out = {}
    for tid, vis in visible.items():
        frames = [f for f, v in enumerate(vis) if v]
        if frames:
            keys = set(human.get(tid, ())) or set(frames[::max(1, config.keyframe_every)])
            out[tid] = sorted(keys | {frames[0], frames[-1]})
    return out


def check_with_engine(video: Video, engine, config: AuditConfig = AuditConfig(),
                      visible: Mapping[str, Sequence[bool]] | None = None) -> list[AuditFlag]:
    """Re-propagate each track between consecutive keyframes (`keyframes`), forward and backward:
    ``engine_disagrees`` where the stored mask agrees with neither direction, ``fb_disagreement``
    where the two directions disagree with each other (the frames are ambiguous to the engine).

    The forward run is kept as RLE and the backward run compared as it comes, so memory does
    not grow with the distance between keyframes. ``visible`` (per track, per frame) is the
    streaming pass's; read from the video when None."""
    if visible is None:
        visible = {t.track_id: [] for t in video.tracks}
        for f in range(video.num_frames):
            areas = video.frame_areas(f)
            for tid, vis in visible.items():
                vis.append(areas.get(tid, 0) > 0)
    keys = keyframes(video, config, visible)
    engine.open(video)
    bad_store: dict[tuple, list[tuple[int, float]]] = {}
    bad_fb: dict[tuple, list[tuple[int, float]]] = {}

    def run(tid: str, start: int, stop: int, direction: str):
        engine.remove_track(tid)
        engine.add_mask(start, tid, video.frame_masks(start)[tid])
        for step in engine.propagate([tid], start=start, end=stop, direction=direction):
            if step.frame_index != start:
                yield step.frame_index, step.mask

    try:
        for tid, frames in keys.items():
            for a, b in zip(frames, frames[1:]):
                if b - a < 2:
                    continue
                forward = {f: None if m is None else _masks.encode(m) for f, m in run(tid, a, b, "forward")}
                for f, bwd in run(tid, b, a, "backward"):
                    stored = video.frame_masks(f).get(tid)
                    rle = forward.get(f)
                    fwd = None if rle is None else _masks.decode(rle)
                    best = max(_j(stored, fwd), _j(stored, bwd))
                    if best < config.engine_j:
                        bad_store.setdefault(((tid,), None), []).append((f, best))
                    fb = _j(fwd, bwd)
                    if fb < config.engine_j:
                        bad_fb.setdefault(((tid,), None), []).append((f, fb))
            engine.remove_track(tid)
    finally:
        engine.close()
    return (_disagreement_flags(video, config, "engine_disagrees", bad_store,
                                f"the {engine.name} engine, run from the keyframes both ways, disagrees with the mask")
            + _disagreement_flags(video, config, "fb_disagreement", bad_fb,
                                  f"the {engine.name} engine's forward and backward runs disagree"))


# -- a dataset ----------------------------------------------------------------------------------
@dataclass
class VideoResult:
    flags: list[AuditFlag]
    frames: int
    masks: int
    annotated: bool = True


_ENGINE = None


def audit_video(video: Video, config: AuditConfig = AuditConfig(), *, engine: str | None = None,
                engine_options: Mapping | None = None, pred: str | None = None) -> VideoResult:
    """Every check on one video: one streaming pass (masks, predictions), the expressions, and
    with ``engine`` the re-propagation (the engine is made once per process)."""
    global _ENGINE
    if video.mask_source is None:       # a split released without masks (a test split): nothing to audit
        return VideoResult([], video.num_frames, 0, annotated=False)
    passed = _VideoAudit(video, config)
    compare = _PredictionCheck(video, pred, config) if pred else None
    found = passed.run(compare.frame if compare else None)
    masks = sum(sum(v) for v in passed.visible.values())
    flags = [make_flag(config, c.check, video, c.tracks, (c.start, c.end), c.value, c.threshold, c.score, c.message)
             for c in _resolve(found)]
    visible = {tid: any(v) for tid, v in passed.visible.items()}
    flags += check_expressions(video, config, visible)
    if compare:
        flags += compare.flags()
    if engine:
        from .engines import open_engine
        if _ENGINE is None or _ENGINE[0] != engine:
            _ENGINE = (engine, open_engine(engine, **dict(engine_options or {})))
        flags += check_with_engine(video, _ENGINE[1], config, passed.visible)
    return VideoResult(flags, video.num_frames, masks)


def sort_flags(flags: Iterable[AuditFlag]) -> list[AuditFlag]:
    """Most severe first, then the furthest past its threshold."""
    return sorted(flags, key=lambda f: (SEVERITY_RANK[f.severity], -f.score, f.split, f.video_id, f.frame_start,
                                        f.check, f.flag_id))


@dataclass
class AuditReport:
    """What `audit` found; `write` puts REPORT.json, .csv and .md side by side."""

    source: str
    format: str
    config: AuditConfig
    flags: list[AuditFlag] = field(default_factory=list)
    videos: int = 0
    frames: int = 0
    masks: int = 0
    seconds: float = 0.0
    workers: int = 1
    engine: str | None = None
    pred: str | None = None
    dismissed: int = 0
    unannotated: int = 0
    problems: list = field(default_factory=list)

    @property
    def summary(self) -> dict:
        by_check = {c: {"low": 0, "medium": 0, "high": 0} for c in CHECKS}
        for f in self.flags:
            by_check[f.check][f.severity] += 1
        return {"videos": self.videos, "frames": self.frames, "masks": self.masks, "flags": len(self.flags),
                "by_severity": {s: sum(1 for f in self.flags if f.severity == s) for s in ("high", "medium", "low")},
                "by_check": {c: v for c, v in by_check.items() if sum(v.values())},
                "dismissed": self.dismissed, "unannotated_videos": self.unannotated, "seconds": round(self.seconds, 3),
                "masks_per_second": round(self.masks / self.seconds, 1) if self.seconds else None,
                "workers": self.workers, "engine": self.engine, "pred": self.pred,
                "problems": [str(p) for p in self.problems]}

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "checks": list(CHECKS), "config": asdict(self.config),
                "summary": self.summary, "flags": [f.as_dict() for f in self.flags]}

    def to_csv(self) -> str:
        buf = io.StringIO()
        names = [f.name for f in fields(AuditFlag)]
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        for flag in self.flags:
            row = flag.as_dict()
            writer.writerow([" ".join(row[n]) if n == "track_ids" else "" if row[n] is None else row[n]
                             for n in names])
        return buf.getvalue()

    def to_markdown(self, *, limit: int = 200) -> str:
        s = self.summary
        lines = [f"# Audit of {self.source} ({self.format})", "",
                 f"{s['videos']} video(s), {s['frames']} frame(s), {s['masks']} mask(s) in {s['seconds']} s; "
                 f"{s['flags']} flag(s): high {s['by_severity']['high']}, medium {s['by_severity']['medium']}, "
                 f"low {s['by_severity']['low']}" + (f"; {s['dismissed']} dismissed earlier" if s["dismissed"] else ""),
                 "", "| check | high | medium | low |", "|---|---:|---:|---:|"]
        lines += [f"| {c} | {v['high']} | {v['medium']} | {v['low']} |" for c, v in s["by_check"].items()]
        lines += ["", "| severity | check | video | tracks | expression | frames | value | threshold | message |",
                  "|---|---|---|---|---|---|---:|---:|---|"]
        for f in self.flags[:limit]:
            lines.append(f"| {f.severity} | {f.check} | {f.split}/{f.video_id} | {' '.join(f.track_ids)} | "
                         f"{f.exp_id or ''} | {f.frame_start}..{f.frame_end} | {f.value:g} | {f.threshold:g} | "
                         f"{f.message.replace('|', '/')} |")
        if len(self.flags) > limit:
            lines.append(f"\n{len(self.flags) - limit} more in the JSON and CSV.")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> dict[str, Path]:
        paths = report_paths(out)
        atomic_write_json(paths["json"], self.to_dict(), indent=1)
        atomic_write_bytes(paths["csv"], self.to_csv().encode())
        atomic_write_bytes(paths["md"], self.to_markdown().encode())
        return paths


def config_with(overrides: Mapping[str, str]) -> AuditConfig:
    """`AuditConfig` with ``{name: value}`` (strings, from the command line) set; unknown names
    and values of the wrong type are refused."""
    known = {f.name: f.type for f in fields(AuditConfig)}
    values: dict[str, Any] = {}
    for name, text in overrides.items():
        if name not in known:
            raise LongRVOSError(f"unknown audit threshold {name!r}; known: {', '.join(known)}")
        kind = int if known[name] in (int, "int") else float
        try:
            values[name] = kind(text)
        except ValueError:
            raise LongRVOSError(f"audit threshold {name}: {text!r} is not a{'n integer' if kind is int else ' number'}"
                                ) from None
    return replace(AuditConfig(), **values)


def audit(src: str | Path, *, split: str | None = None, format: str | None = None,
          config: AuditConfig = AuditConfig(), engine: str | None = None, engine_options: Mapping | None = None,
          pred: str | Path | None = None, workers: int = 1, progress: bool = False, on_error: str = "raise",
          load_options: Mapping | None = None, record: bool = True) -> AuditReport:
    """Audit a dataset (any readable format, or a project).

    Args:
        src: dataset root, one split folder, or a project.
        split: only this split.
        config: the thresholds.
        engine, engine_options: re-propagate from keyframes with this mask engine.
        pred: predictions (as ``eval`` reads them) to compare with (``model_disagrees``).
        workers: processes, one video each.
        record: for a project, replace its earlier audit flags with these (the app's review
            queue); flags dismissed there stay out of the report (counted in ``dismissed``).

    Example:
        >>> report = audit("data/lvos", split="valid", workers=2)
        >>> report.write("audit/REPORT.json")
    """
    import functools
    import time

    from ..loaders import load
    from ..parallel import map_videos

    if workers < 1:
        raise LongRVOSError("--workers must be at least 1")
    if engine:
        from .propagate import check_engine_options
        check_engine_options(engine, dict(engine_options or {}))
    started = time.perf_counter()
    ds = load(src, format=format, split=split, on_error=on_error, **dict(load_options or {}))
    report = AuditReport(str(src), ds.format, config, workers=workers, engine=engine,
                         pred=str(pred) if pred else None)
    fn = functools.partial(audit_video, config=config, engine=engine, engine_options=dict(engine_options or {}),
                           pred=str(pred) if pred else None)
    flags: list[AuditFlag] = []
    problems = ProblemLog(on_error)
    for reader in ds:
        for _, result in map_videos(reader, reader.video_ids(), fn, workers=workers, progress=progress,
                                    desc=f"audit {reader.split}", errors="return"):
            if not isinstance(result, VideoResult):
                problems.add(result)
                continue
            if not result.annotated:
                report.unannotated += 1
                continue
            flags += result.flags
            report.videos += 1
            report.frames += result.frames
            report.masks += result.masks
    report.problems = ds.problems.problems + problems.problems
    report.seconds = time.perf_counter() - started
    if ds.format == "project" and record:
        flags, report.dismissed = _record(Path(ds.root), flags)
    report.flags = sort_flags(flags)
    return report


def _record(project: Path, flags: list[AuditFlag]) -> tuple[list[AuditFlag], int]:
    """Replace the project's audit flags with ``flags``; returns those not dismissed and how many were."""
    from .store import Store

    with Store.open(project) as store, store.transaction():
        dismissed = {r[0] for r in store.con.execute("SELECT flag_id FROM dismissals")}
        store.clear_flags(SOURCE)
        for f in flags:
            store.add_flag(f.split, f.video_id, flag_id=f.flag_id, source=SOURCE, check=f.check, severity=f.severity,
                           track_ids=f.track_ids, frame_start=f.frame_start, frame_end=f.frame_end,
                           message=f.message, exp_id=f.exp_id, value=f.value, threshold=f.threshold)
    kept = [f for f in flags if f.flag_id not in dismissed]
    return kept, len(flags) - len(kept)
