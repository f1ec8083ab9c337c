"""Known defects of fixed sizes, injected into clean videos, to measure the audit against.

`DEFECTS` is the table: one kind per mask check of `audit.MASK_CHECKS`, each with fixed
sizes and the span (relative to its first changed frame) that the audit should report.
`place` picks where each defect goes in a clean video (only where the objects are visible
and the result stays inside the frame and off the other objects, >= `SPACING` frames apart
per track, deterministically from a seed); `inject` returns the video with a `MaskSource`
that applies them per frame on demand, so a long 720p video costs no memory; `match` scores
the audit's flags against them.

`textured_videos` gives clean videos to inject into; `hard_negative_videos` renders clean
videos of what real footage does and a defect-finder must not flag: fast motion, occlusion
gaps, objects entering and leaving at the border, real holes, objects crossing (one in
front of the other).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..schema import Frame, MaskSource, Track, Video

SPACING = 8          # frames between two defects of one track (last changed frame to first)
MIN_AREA = 100       # a defect goes only where the objects it touches have at least this many pixels
EDGE_MARGIN = 8      # what a defect adds stays this far from the frame edge (the audit's border margin is 6)
_NOWHERE = Path("/nonexistent/defects")   # frames of the generated videos are never written


@dataclass(frozen=True)
class DefectKind:
    """One row of the table.

    Args:
        tracks: how many tracks the defect involves.
        frames: the frames it changes, relative to its first.
        span: the ``(start, end)`` (inclusive) the audit should report, relative to its first frame.
        guard: frames before the first and after the last changed frame where the objects
            must be visible (and unchanged), so the defect is judged against real neighbours.
        size: its fixed sizes.
    """

    tracks: int
    frames: tuple[int, ...]
    span: tuple[int, int]
    guard: int
    size: Mapping[str, float]


DEFECTS: dict[str, DefectKind] = {
    # the two tracks' masks exchanged on 6 consecutive frames
    "identity_swap": DefectKind(2, (0, 1, 2, 3, 4, 5), (0, 5), 2, {"frames": 6, "min_distance": 1.5}),
    # the object gone on frames t, t+2, t+4 (six visibility changes)
    "flicker": DefectKind(1, (0, 2, 4), (0, 4), 6, {}),
    # the object gone on one frame
    "empty_in_span": DefectKind(1, (0,), (0, 0), 6, {"frames": 1}),
    # the mask replaced by a 3x3 blob at its centroid
    "tiny_area": DefectKind(1, (0,), (0, 0), 2, {"side": 3}),
    # three 5x5 blobs added 1.5, 1.75 and 2 object radii from the centroid, 120 degrees apart (radius:
    # sqrt(area / pi), or half the larger side of the object's box when that is more)
    "fragmented": DefectKind(1, (0,), (0, 0), 2, {"blobs": 3, "side": 5, "near": 1.5, "far": 2.0}),
    # a disk of radius 0.25 x sqrt(area) cleared where the mask is solid around it (2 px of mask left outside)
    "holes": DefectKind(1, (0,), (0, 0), 2, {"radius": 0.25, "rim": 2}),
    # a 6x6 blob against the frame edge nearest the object, connected to it by nothing
    "border": DefectKind(1, (0,), (0, 0), 2, {"side": 6}),
    # track B dilated within track A (A's pixels nearest B) until they share 45% of the smaller mask
    "overlap": DefectKind(2, (0,), (0, 0), 2, {"share": 0.45}),
    # the mask scaled about its centroid to 2.5x its area
    "area_jump": DefectKind(1, (0,), (0, 0), 2, {"factor": 2.5}),
    # the mask translated by max(25 px, 0.8 x sqrt(area))
    "centre_jump": DefectKind(1, (0,), (0, 0), 2, {"min_px": 25, "per_size": 0.8}),
    # the mask replaced by an ellipse of the same area and centroid, aspect 1:4, its long axis
    # turned 90 degrees from the object's main axis
    "low_iou": DefectKind(1, (0,), (0, 0), 2, {"aspect": 4.0, "turn_deg": 90}),
}


@dataclass(frozen=True)
class Defect:
    """One injected defect: what the audit should report (``frame_start``..``frame_end``,
    inclusive, on ``track_ids``) and where it was put (``params``, in frame pixels)."""

    kind: str
    split: str
    video_id: str
    track_ids: tuple[str, ...]
    frame_start: int
    frame_end: int
    first: int                                   # its first changed frame
    params: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def frames(self) -> tuple[int, ...]:
        return tuple(self.first + k for k in DEFECTS[self.kind].frames)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["track_ids"] = list(self.track_ids)
        d["params"] = dict(self.params)
        return d


# -- what the placement needs to know of the clean video -----------------------------------
@dataclass
class TrackStats:
    """A few numbers per frame of one track of the clean video (area 0: absent)."""

    area: np.ndarray
    centre: np.ndarray      # (n, 2) x, y
    box: np.ndarray         # (n, 4) x0, y0, x1, y1 inclusive
    depth: np.ndarray       # (n, 3) largest inscribed radius (px) and where (x, y)
    theta: np.ndarray       # main axis angle (radians, image coordinates)


def track_stats(video: Video) -> dict[str, TrackStats]:
    """One streaming pass over ``video``'s masks (a few numbers per mask are kept)."""
    n = video.num_frames
    out = {t.track_id: TrackStats(np.zeros(n, np.int64), np.zeros((n, 2)), np.zeros((n, 4), np.int64),
                                  np.zeros((n, 3)), np.zeros(n)) for t in video.tracks}
    for i in range(n):
        for tid, m in video.frame_masks(i).items():
            if tid not in out:
                continue
            ys = np.flatnonzero(m.any(axis=1))
            if not len(ys):
                continue
            xs = np.flatnonzero(m.any(axis=0))
            y0, y1, x0, x1 = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
            crop = np.ascontiguousarray(m[y0:y1 + 1, x0:x1 + 1]).view(np.uint8)
            mo = cv2.moments(crop, binaryImage=True)
            s = out[tid]
            s.area[i] = int(mo["m00"])
            s.centre[i] = (x0 + mo["m10"] / mo["m00"], y0 + mo["m01"] / mo["m00"])
            s.box[i] = (x0, y0, x1, y1)
            s.theta[i] = 0.5 * math.atan2(2 * mo["mu11"], mo["mu20"] - mo["mu02"])
            dist = cv2.distanceTransform(np.pad(crop, 1), cv2.DIST_L2, 5)
            k = int(np.argmax(dist))
            dy, dx = divmod(k, dist.shape[1])
            s.depth[i] = (float(dist[dy, dx]), x0 + dx - 1, y0 + dy - 1)
    return out


# -- placement -------------------------------------------------------------------------------
def _inside(box: Sequence[float], width: int, height: int, margin: int = EDGE_MARGIN) -> bool:
    x0, y0, x1, y1 = box
    return x0 >= margin and y0 >= margin and x1 <= width - 1 - margin and y1 <= height - 1 - margin


def _clear_of(box: Sequence[float], stats: Mapping[str, TrackStats], t: int, skip: Iterable[str], pad: int = 3) -> bool:
    """Whether ``box`` keeps ``pad`` px away from the boxes of the other tracks at frame ``t``."""
    x0, y0, x1, y1 = box
    skip = set(skip)
    for tid, s in stats.items():
        if tid in skip or s.area[t] == 0:
            continue
        bx0, by0, bx1, by1 = s.box[t]
        if x0 <= bx1 + pad and bx0 <= x1 + pad and y0 <= by1 + pad and by0 <= y1 + pad:
            return False
    return True


def _geometry(kind: str, tracks: tuple[str, ...], t: int, stats: Mapping[str, TrackStats], width: int, height: int,
              rng: np.random.Generator) -> dict | None:
    """Where the defect's pixels go at frame ``t`` (its ``params``), or None when it does not fit."""
    size = DEFECTS[kind].size
    s = stats[tracks[0]]
    area = float(s.area[t])
    cx, cy = s.centre[t]
    if kind in ("flicker", "empty_in_span", "tiny_area"):
        return {}
    if kind == "identity_swap":
        a, b = stats[tracks[0]], stats[tracks[1]]
        for f in range(t - 1, t + int(size["frames"]) + 1):
            far = math.hypot(*(a.centre[f] - b.centre[f])) / math.sqrt((a.area[f] + b.area[f]) / 2)
            if far < size["min_distance"]:
                return None
        return {}
    if kind == "overlap":
        return {}
    if kind == "fragmented":
        x0, y0, x1, y1 = s.box[t]     # the object's radius: of its area, or of its box when that is larger
        radius = max(math.sqrt(area / math.pi), max(x1 - x0, y1 - y0) / 2)   # (an occluder may cut it in two)
        half = int(size["side"]) // 2
        start = float(rng.uniform(0, 2 * math.pi))
        dists = np.linspace(size["near"], size["far"], int(size["blobs"])) * radius
        for turn in range(12):
            spots = []
            for k, d in enumerate(dists):
                ang = start + turn * math.pi / 6 + 2 * math.pi * k / len(dists)
                spots.append((round(cx + d * math.cos(ang)), round(cy + d * math.sin(ang))))
            if all(_inside((x - half, y - half, x + half, y + half), width, height) and
                   _clear_of((x - half, y - half, x + half, y + half), stats, t, ()) for x, y in spots):
                return {"blobs": spots}
        return None
    if kind == "holes":
        r = size["radius"] * math.sqrt(area)
        depth, dx, dy = s.depth[t]
        if depth < r + size["rim"] or r < 2:
            return None
        return {"centre": (int(dx), int(dy)), "radius": r}
    if kind == "border":
        side = int(size["side"])
        if not all(_inside(stats[tracks[0]].box[f], width, height, EDGE_MARGIN) for f in (t - 1, t, t + 1)):
            return None
        gaps = {"left": cx, "right": width - 1 - cx, "top": cy, "bottom": height - 1 - cy}
        edge = min(gaps, key=gaps.get)
        x = int(np.clip(round(cx) - side // 2, 0, width - side))
        y = int(np.clip(round(cy) - side // 2, 0, height - side))
        x = 0 if edge == "left" else width - side if edge == "right" else x
        y = 0 if edge == "top" else height - side if edge == "bottom" else y
        box = (x, y, x + side - 1, y + side - 1)
        if not _clear_of(box, stats, t, ()):
            return None
        return {"box": box}
    if kind == "area_jump":
        k = math.sqrt(size["factor"])
        x0, y0, x1, y1 = s.box[t]
        box = (cx + (x0 - cx) * k - 1, cy + (y0 - cy) * k - 1, cx + (x1 - cx) * k + 1, cy + (y1 - cy) * k + 1)
        if not _inside(box, width, height) or not _clear_of(box, stats, t, tracks):
            return None
        return {"scale": k}
    if kind == "centre_jump":
        d = max(size["min_px"], size["per_size"] * math.sqrt(area))
        x0, y0, x1, y1 = s.box[t]
        start = float(rng.uniform(0, 2 * math.pi))
        for turn in range(12):
            ang = start + turn * math.pi / 6
            dx, dy = round(d * math.cos(ang)), round(d * math.sin(ang))
            box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
            if _inside(box, width, height) and _clear_of(box, stats, t, tracks):
                return {"shift": (dx, dy)}
        return None
    if kind == "low_iou":
        minor = math.sqrt(area / (math.pi * size["aspect"]))
        major = minor * size["aspect"]
        ang = float(s.theta[t]) + math.radians(size["turn_deg"])
        ex = math.hypot(major * math.cos(ang), minor * math.sin(ang))
        ey = math.hypot(major * math.sin(ang), minor * math.cos(ang))
        box = (cx - ex - 1, cy - ey - 1, cx + ex + 1, cy + ey + 1)
        if not _inside(box, width, height) or not _clear_of(box, stats, t, tracks):
            return None
        return {"centre": (float(cx), float(cy)), "axes": (major, minor), "angle": ang}
    raise ValueError(f"unknown defect kind {kind!r}")


def place(video: Video, kinds: Sequence[str], *, seed: int = 0, stats: Mapping[str, TrackStats] | None = None,
          taken: Sequence[Defect] = ()) -> list[Defect]:
    """Defects of ``kinds`` (one each, left out where none fits) for ``video``: those of two
    tracks first (they need both free), the others in the order given.

    Each goes on a track (a pair, for swaps and overlaps) and first frame drawn from all the
    places where it fits: the objects visible (``MIN_AREA`` px) on its frames and ``guard``
    frames around them, what it adds inside the frame and off the other objects, and
    ``SPACING`` frames from every other defect of its tracks (``taken`` and those placed
    before it). Deterministic from ``seed``.
    """
    stats = stats if stats is not None else track_stats(video)
    rng = np.random.default_rng(seed)
    ids = [t.track_id for t in video.tracks]
    n = video.num_frames
    busy: dict[str, list[tuple[int, int]]] = {tid: [] for tid in ids}
    for d in taken:
        for tid in d.track_ids:
            busy.setdefault(tid, []).append((min(d.frames), max(d.frames)))
    placed: list[Defect] = []
    for kind in sorted(kinds, key=lambda k: -DEFECTS[k].tracks):
        spec = DEFECTS[kind]
        last = max(spec.frames)
        groups = [(a,) for a in ids] if spec.tracks == 1 else \
            [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
        options = []
        for tracks in groups:
            for t in range(spec.guard, n - last - spec.guard):
                lo, hi = t - spec.guard, t + last + spec.guard
                if any(stats[tid].area[lo:hi + 1].min() < MIN_AREA for tid in tracks):
                    continue
                if any(not (t - e >= SPACING or s - (t + last) >= SPACING) for tid in tracks for s, e in busy[tid]):
                    continue
                options.append((tracks, t))
        order = rng.permutation(len(options))
        for k in order[:64]:   # the first few candidates that fit; most fit
            tracks, t = options[int(k)]
            if spec.tracks == 2 and rng.random() < 0.5:
                tracks = tracks[::-1]       # which of the pair grows (overlap) is drawn too
            params = _geometry(kind, tracks, t, stats, video.width, video.height, rng)
            if params is None:
                continue
            d = Defect(kind, video.split, video.video_id, tracks, t + spec.span[0], t + spec.span[1], t, params)
            placed.append(d)
            for tid in tracks:
                busy[tid].append((t, t + last))
            break
    return placed


# -- applying them -------------------------------------------------------------------------
def _blob(shape: tuple[int, int], x0: int, y0: int, side: int) -> tuple[slice, slice]:
    h, w = shape
    return slice(max(y0, 0), min(y0 + side, h)), slice(max(x0, 0), min(x0 + side, w))


def _warp(mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``mask`` moved by the affine ``matrix`` (source to destination), drawing only its new box."""
    h, w = mask.shape
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    out = np.zeros_like(mask)
    if not len(ys):
        return out
    corners = np.array([[xs[0], ys[0], 1], [xs[-1] + 1, ys[0], 1], [xs[0], ys[-1] + 1, 1], [xs[-1] + 1, ys[-1] + 1, 1]],
                       dtype=np.float64) @ matrix.T
    x0, y0 = max(int(np.floor(corners[:, 0].min())) - 1, 0), max(int(np.floor(corners[:, 1].min())) - 1, 0)
    x1, y1 = min(int(np.ceil(corners[:, 0].max())) + 2, w), min(int(np.ceil(corners[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return out
    shifted = matrix.copy()
    shifted[:, 2] -= (x0, y0)
    part = cv2.warpAffine(mask.view(np.uint8), shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST, borderValue=0)
    out[y0:y1, x0:x1] = part.astype(bool)
    return out


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float],
             angle: float) -> np.ndarray:
    """The pixels whose centres lie in the ellipse (its area within a pixel's worth of pi*a*b,
    which cv2.ellipse's filled outline overshoots by 5% at small sizes)."""
    h, w = shape
    (cx, cy), (a, b) = centre, axes
    reach = max(a, b) + 1
    x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
    x1, y1 = min(int(cx + reach) + 2, w), min(int(cy + reach) + 2, h)
    out = np.zeros(shape, dtype=bool)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    out[y0:y1, x0:x1] = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return out


def _grow_into(b: np.ndarray, a: np.ndarray, share: float) -> np.ndarray:
    """``b`` plus the pixels of ``a`` nearest to it, as many as make them share ``share`` of the
    smaller mask: B dilated within A."""
    area_a, area_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    already = int(np.count_nonzero(a & b))
    # s / min(A, B + s) >= share: s = share x A when B + s reaches A, else share / (1 - share) x B
    want = math.ceil(min(share * area_a, share / (1 - share) * area_b)) - already
    if want <= 0:
        return b
    ys, xs = np.nonzero(a | b)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dist = cv2.distanceTransform((~b[y0:y1, x0:x1]).view(np.uint8), cv2.DIST_L2, 3)
    cand = a[y0:y1, x0:x1] & ~b[y0:y1, x0:x1]
    values = dist[cand]
    order = np.argsort(values, kind="stable")[:want]
    cy, cx = np.nonzero(cand)
    out = b.copy()
    out[cy[order] + y0, cx[order] + x0] = True
    return out


def apply(defect: Defect, masks: dict[str, np.ndarray]) -> None:
    """Change one of the defect's frames' ``masks`` (in place)."""
    kind, params, tracks = defect.kind, defect.params, defect.track_ids
    tid = tracks[0]
    size = DEFECTS[kind].size
    m = masks.get(tid)
    if m is None:
        return
    if kind in ("flicker", "empty_in_span"):
        del masks[tid]
    elif kind == "identity_swap":
        other = tracks[1]
        if other in masks:
            masks[tid], masks[other] = masks[other], m
    elif kind == "tiny_area":
        ys, xs = np.nonzero(m)
        side = int(size["side"])
        out = np.zeros_like(m)
        out[_blob(m.shape, round(xs.mean()) - side // 2, round(ys.mean()) - side // 2, side)] = True
        masks[tid] = out
    elif kind == "fragmented":
        out = m.copy()
        side = int(size["side"])
        for x, y in params["blobs"]:
            out[_blob(m.shape, x - side // 2, y - side // 2, side)] = True
        masks[tid] = out
    elif kind == "holes":
        out = m.copy()
        cx, cy = params["centre"]
        r = params["radius"]
        cv2.circle(out.view(np.uint8), (int(cx), int(cy)), round(r), 0, thickness=-1)
        masks[tid] = out
    elif kind == "border":
        out = m.copy()
        x0, y0, x1, y1 = params["box"]
        out[y0:y1 + 1, x0:x1 + 1] = True
        masks[tid] = out
    elif kind == "overlap":
        other = tracks[1]
        if other in masks:
            masks[tid] = _grow_into(m, masks[other], size["share"])
    elif kind == "area_jump":
        ys, xs = np.nonzero(m)
        cx, cy, k = xs.mean(), ys.mean(), params["scale"]
        masks[tid] = _warp(m, np.array([[k, 0, cx * (1 - k)], [0, k, cy * (1 - k)]]))
    elif kind == "centre_jump":
        dx, dy = params["shift"]
        masks[tid] = _warp(m, np.array([[1.0, 0, dx], [0, 1.0, dy]]))
    elif kind == "low_iou":
        masks[tid] = _ellipse(m.shape, params["centre"], params["axes"], params["angle"])
    else:
        raise ValueError(f"unknown defect kind {kind!r}")


class InjectedMasks(MaskSource):
    """A clean video's masks with defects applied to the frames they change, on demand."""

    def __init__(self, base: MaskSource, defects: Sequence[Defect]) -> None:
        self.base = base
        self.by_frame: dict[int, list[Defect]] = {}
        for d in defects:
            for f in d.frames:
                self.by_frame.setdefault(f, []).append(d)

    def masks(self, index: int) -> dict[str, np.ndarray]:
        masks = dict(self.base.masks(index))
        for d in self.by_frame.get(index, ()):
            apply(d, masks)
        return masks


def inject(video: Video, defects: Sequence[Defect]) -> Video:
    """``video`` with ``defects`` applied (lazily, per frame); its other fields unchanged."""
    if video.mask_source is None:
        raise ValueError(f"video {video.video_id!r} has no masks to inject defects into")
    return replace(video, mask_source=InjectedMasks(video.mask_source, defects))


def inject_many(videos: Iterable[Video], *, per_kind: int, seed: int = 0,
                rounds: int = 2) -> Iterable[tuple[Video, list[Defect]]]:
    """``(injected video, its defects)`` for each of ``videos`` until every kind has
    ``per_kind`` defects: each video is asked for ``rounds`` of every kind, the kinds placed
    least so far first (two-track kinds still go first, see `place`)."""
    counts = {k: 0 for k in DEFECTS}
    for i, video in enumerate(videos):
        if min(counts.values()) >= per_kind:
            return
        kinds = sorted(DEFECTS, key=lambda k: counts[k]) * rounds
        found = place(video, kinds, seed=seed * 1000 + i)
        for d in found:
            counts[d.kind] += 1
        yield inject(video, found), found


def textured_videos(*, width: int = 1280, height: int = 720, num_frames: int = 150, num_videos: int = 1,
                    seed: int = 0, split: str = "valid") -> Iterable[Video]:
    """`synth.textured_lvos`'s videos (two textured objects, one passing in front of the
    other, an occluding bar) as records whose masks are drawn on demand; no frame is written
    (their paths do not exist). Generated one at a time, ids ``tx<seed><n>`` as there."""
    # the scene itself, without writing the LVOS layout
    from ..synth import _TexturedScene

    rng = np.random.default_rng(seed)
    for v in range(num_videos):
        scene = _TexturedScene(rng, height, width, num_frames)
        video_id = f"tx{seed % 100:02d}{v:04d}"
        frames = [Frame(f"{t:05d}", _NOWHERE / video_id / f"{t:05d}.jpg") for t in range(num_frames)]
        yield Video(dataset="synthetic", split=split, video_id=video_id, frames=frames, height=height, width=width,
                    tracks=[Track(o["track_id"]) for o in scene.objects], expressions=(), mask_source=scene)


# -- scoring -----------------------------------------------------------------------------------
def matches(flag, defect: Defect, tolerance: int = 1) -> bool:
    """Same check and video, the flag names the defect's track(s), each end within ``tolerance`` frames."""
    return (flag.check == defect.kind and flag.video_id == defect.video_id and flag.split == defect.split
            and set(defect.track_ids) <= set(flag.track_ids)
            and abs(flag.frame_start - defect.frame_start) <= tolerance
            and abs(flag.frame_end - defect.frame_end) <= tolerance)


def match(flags: Sequence, defects: Sequence[Defect], checks: Sequence[str] = tuple(DEFECTS)) -> dict[str, dict]:
    """Per check: ``defects``, ``tp`` (defects a flag matches), ``fn``, ``flags``, ``fp`` (flags of
    that check matching no defect), ``recall`` and ``precision`` (1.0 when a check raised no
    flag; read it with ``flags``)."""
    table = {}
    for check in checks:
        mine = [d for d in defects if d.kind == check]
        raised = [f for f in flags if f.check == check]
        hit = [d for d in mine if any(matches(f, d) for f in raised)]
        good = [f for f in raised if any(matches(f, d) for d in mine)]
        table[check] = {
            "defects": len(mine), "tp": len(hit), "fn": len(mine) - len(hit), "flags": len(raised),
            "fp": len(raised) - len(good),
            "recall": round(len(hit) / len(mine), 4) if mine else None,
            "precision": round(len(good) / len(raised), 4) if raised else 1.0,
        }
    return table


def unmatched(flags: Sequence, defects: Sequence[Defect]) -> tuple[list, list[Defect]]:
    """The flags (of mask checks) that match no defect, and the defects no flag matches: for reading a miss."""
    extra = [f for f in flags if f.check in DEFECTS and not any(matches(f, d) for d in defects)]
    missed = [d for d in defects if not any(matches(f, d) for f in flags)]
    return extra, missed


# -- clean videos that a defect-finder must leave alone ---------------------------------------
@dataclass(frozen=True)
class _Body:
    """One object of a hard-negative scene: a shape moving along ``path`` (``(n, 2)`` x, y;
    NaN: gone). ``inner``: the hole's radius as a fraction of the outer one (a ring)."""

    track_id: str
    shape: str              # "ellipse" | "box" | "ring"
    rx: float
    ry: float
    path: np.ndarray
    angle: float = 0.0      # degrees
    inner: float = 0.0

    def draw(self, t: int, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
        """The object's own mask over its box, and the box's origin; None while it is gone or off frame."""
        cx, cy = self.path[t]
        if not np.isfinite(cx):
            return None
        reach = math.hypot(self.rx, self.ry) + 2
        x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
        x1, y1 = min(int(cx + reach) + 2, width), min(int(cy + reach) + 2, height)
        if x1 <= x0 or y1 <= y0:
            return None
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        if self.shape == "box":
            inside = (np.abs(u) <= self.rx) & (np.abs(v) <= self.ry)
        else:
            r = (u / self.rx) ** 2 + (v / self.ry) ** 2
            inside = r <= 1.0
            if self.shape == "ring":
                inside &= r > self.inner ** 2
        return inside, x0, y0


class HardNegativeScene(MaskSource):
    """Bodies drawn per frame (later ones in front), minus static occluders that are no track."""

    def __init__(self, bodies: Sequence[_Body], height: int, width: int,
                 occluders: Sequence[tuple[int, int, int, int]] = ()) -> None:
        self.bodies, self.height, self.width, self.occluders = tuple(bodies), height, width, tuple(occluders)

    def masks(self, index: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for body in self.bodies:
            drawn = body.draw(index, self.height, self.width)
            if drawn is None:
                continue
            crop, x0, y0 = drawn
            m = np.zeros((self.height, self.width), dtype=bool)
            m[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
            for other in out.values():
                other &= ~m
            out[body.track_id] = m
        for x0, y0, x1, y1 in self.occluders:
            for m in out.values():
                m[y0:y1, x0:x1] = False
        order = [b.track_id for b in self.bodies]
        return {tid: out[tid] for tid in order if tid in out and out[tid].any()}


def _wander(rng: np.random.Generator, n: int, speed: tuple[float, float], lo: np.ndarray, hi: np.ndarray,
            turn: float = 0.35) -> np.ndarray:
    """A path at ``speed`` px a frame that turns smoothly (at most ``turn`` rad a frame) and
    reflects off the box ``lo``..``hi``."""
    pos = rng.uniform(lo, hi)
    angle = rng.uniform(0, 2 * math.pi)
    v = rng.uniform(*speed)
    out = np.zeros((n, 2))
    for t in range(n):
        out[t] = pos
        angle += rng.uniform(-turn, turn)
        v = float(np.clip(v + rng.uniform(-2, 2), *speed))
        step = v * np.array([math.cos(angle), math.sin(angle)])
        pos = pos + step
        for d in range(2):
            if pos[d] < lo[d] or pos[d] > hi[d]:
                pos[d] = 2 * (lo[d] if pos[d] < lo[d] else hi[d]) - pos[d]
                step[d] = -step[d]
                angle = math.atan2(step[1], step[0])
    return out


def _line(n: int, start: tuple[float, float], end: tuple[float, float], t0: int = 0,
          t1: int | None = None) -> np.ndarray:
    """A straight path from ``start`` (frame ``t0``) to ``end`` (frame ``t1``), gone outside those frames."""
    t1 = n - 1 if t1 is None else t1
    out = np.full((n, 2), np.nan)
    k = np.linspace(0.0, 1.0, t1 - t0 + 1)[:, None]
    out[t0:t1 + 1] = np.asarray(start) + k * (np.asarray(end) - np.asarray(start))
    return out


HARD_NEGATIVES = ("fast", "gap", "border", "ring", "cross")


def hard_negative_videos(*, width: int = 1280, height: int = 720, num_frames: int = 120, seed: int = 0,
                         split: str = "valid", kinds: Sequence[str] = HARD_NEGATIVES) -> list[Video]:
    """Clean videos of the real things the audit must not flag, one per kind (video id ``hn<kind>``):

    - ``fast``: two objects moving 20-40 px a frame (at 720p), turning and bouncing;
    - ``gap``: an object passing behind an occluder wide enough to hide it for 5-15 frames,
      and one that vanishes and comes back 8 frames later;
    - ``border``: objects entering the frame gradually and leaving it, one leaving half out
      and coming back;
    - ``ring``: a ring whose hole persists (growing slowly) and a box with a square hole;
    - ``cross``: two like objects crossing head-on (one in front), and a small one passing
      in front of a large one (the large one gets a hole that the small one covers).

    Sizes and speeds scale with the frame (``min(width, height) / 720``); masks are drawn on
    demand, frames are never written (their paths do not exist).
    """
    u = min(width, height) / 720.0
    n = num_frames
    rng = np.random.default_rng(seed)
    videos = []
    for kind in kinds:
        occluders: list[tuple[int, int, int, int]] = []
        if kind == "fast":
            bodies = []
            for k, (rx, ry) in enumerate(((90 * u, 60 * u), (70 * u, 80 * u))):
                reach = math.hypot(rx, ry) + 12 * u
                path = _wander(rng, n, (20 * u, 40 * u), np.array([reach, reach]),
                               np.array([width - reach, height - reach]))
                bodies.append(_Body(str(k + 1), ("ellipse", "box")[k], rx, ry, path, angle=float(rng.uniform(0, 90))))
        elif kind == "gap":
            gone = int(rng.integers(5, 16))       # frames fully hidden behind the occluder
            v, rx, ry = 10 * u, 50 * u, 40 * u
            wide = int(2 * rx + gone * v + 2 * v)
            ox = int(width / 2 - wide / 2)
            occluders.append((ox, int(height * 0.1), ox + wide, int(height * 0.6)))
            t_mid = n // 2
            start = (width / 2 - v * t_mid, height * 0.35)
            path1 = _line(n, start, (start[0] + v * (n - 1), start[1]))
            a = int(rng.integers(n // 5, n // 2))
            path2 = _line(n, (width * 0.25, height * 0.8), (width * 0.75, height * 0.8))
            path2[a:a + 8] = np.nan          # vanishes (e.g. behind a door) and comes back 8 frames later
            bodies = [_Body("1", "ellipse", rx, ry, path1), _Body("2", "box", 45 * u, 35 * u, path2, angle=20.0)]
        elif kind == "border":
            v = 12 * u
            r1 = 60 * u
            path1 = _line(n, (-r1, height * 0.3), (-r1 + v * (n - 1), height * 0.3))
            path2 = _line(n, (width * 0.7, -55 * u), (width * 0.7, -55 * u + 0.7 * v * (n - 1)))
            # one that leaves half out at the right edge and comes back
            xs = width - 30 * u - 80 * u * np.cos(np.linspace(0, 2 * math.pi, n))
            path3 = np.stack([xs, np.full(n, height * 0.75)], axis=1)
            bodies = [_Body("1", "ellipse", r1, 45 * u, path1), _Body("2", "box", 50 * u, 55 * u, path2, angle=10.0),
                      _Body("3", "ellipse", 70 * u, 50 * u, path3)]
        elif kind == "ring":
            bodies = []
            for k, (cls, shape, rx, ry, inner) in enumerate(((_Body, "ring", 110 * u, 95 * u, 0.45),
                                                             (_SquareFrame, "box", 80 * u, 70 * u, 0.0))):
                reach = math.hypot(rx, ry) + 10 * u
                path = _wander(rng, n, (4 * u, 10 * u), np.array([reach, reach]),
                               np.array([width - reach, height - reach]), turn=0.2)
                bodies.append(cls(str(k + 1), shape, rx, ry, path, inner=inner))
        elif kind == "cross":
            v = 14 * u
            y = height * 0.35
            path1 = _line(n, (width * 0.5 - v * n / 2, y), (width * 0.5 + v * n / 2, y))
            path2 = _line(n, (width * 0.5 + v * n / 2, y + 25 * u), (width * 0.5 - v * n / 2, y + 25 * u))
            path3 = np.stack([np.full(n, width * 0.3), np.full(n, height * 0.75)], axis=1)      # large, still
            path4 = _line(n, (width * 0.3 - 9 * u * n / 2, height * 0.75), (width * 0.3 + 9 * u * n / 2, height * 0.75))
            bodies = [_Body("1", "ellipse", 70 * u, 55 * u, path1), _Body("2", "ellipse", 65 * u, 58 * u, path2),
                      _Body("3", "ellipse", 130 * u, 110 * u, path3), _Body("4", "ellipse", 35 * u, 30 * u, path4)]
        else:
            raise ValueError(f"unknown hard negative {kind!r}; known: {HARD_NEGATIVES}")
        source = HardNegativeScene(bodies, height, width, occluders)
        video_id = f"hn{kind}"
        frames = [Frame(f"{t:05d}", _NOWHERE / video_id / f"{t:05d}.jpg") for t in range(n)]
        videos.append(Video(dataset="synthetic", split=split, video_id=video_id, frames=frames, height=height,
                            width=width, tracks=[Track(b.track_id) for b in bodies], expressions=(),
                            meta={"hard_negative": kind, "seed": seed}, mask_source=source))
    return videos


class _SquareFrame(_Body):
    """A box with a centred square hole half its size: a real hole with straight sides."""

    def draw(self, t: int, height: int, width: int):
        drawn = _Body.draw(self, t, height, width)
        if drawn is None:
            return None
        crop, x0, y0 = drawn
        cx, cy = self.path[t]
        side = 0.5 * min(self.rx, self.ry)
        hx0, hx1 = int(cx - side) - x0, int(cx + side) - x0
        hy0, hy1 = int(cy - side) - y0, int(cy + side) - y0
        crop = crop.copy()
        crop[max(hy0, 0):max(hy1, 0), max(hx0, 0):max(hx1, 0)] = False
        return crop, x0, y0

