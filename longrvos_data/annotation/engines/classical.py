"""The classical engine: GrabCut prompts and optical-flow propagation, OpenCV and numpy only.

It is the default engine because it runs anywhere, with no model and no accelerator. All
work happens at a reduced working resolution (``image_size``: the working long side, 480 px
by default) so that a click on a 720p frame answers in tens of milliseconds; masks come back
at the video's size.

- Prompts: a box runs GrabCut from the rectangle; clicks run GrabCut from a window around the
  positive clicks (grown while the object runs out of it, or cuts into it), or from the
  frame's previous mask when there is one, and keep the connected parts under the positive
  clicks; a mask is taken as it is.
- Propagation carries a track from the frame behind (in the direction of travel): its mask is
  warped along the backward DIS optical flow and moved by the object's motion (a similarity,
  chosen among the flow's fit, the median flow, a masked template match and the previous
  motion by how well it aligns the object's pixels), then one graph cut decides the frame with
  colour models learnt from clean samples: the warped pixels that still match the warped
  previous frame (the eroded core of them is sure object), and the background beyond a band.
  While part of the object is hidden, its whole silhouette (the *extent*) is carried with its
  motion and its colour model kept, so that what an occluder uncovers is taken back.
  The flow between two frames is computed once and shared by every track.

Memory stays flat on any video length: a small LRU of decoded working-resolution frames, the
last two flows, and per track its prompt masks and the state it produced last (plus the first
of the current run, so that a ``both`` run can turn round).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from ...schema import Video
from .base import Engine, EngineError, Held, Step, StepWithLogits, TrackState

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 480
_LOGIT_CLIP = 32.0   # signed distances are clipped to this many working pixels


@dataclass
class _State:
    """A track at one frame, at working resolution.

    ``mask`` is what is visible (uint8 0/1, empty while the object is hidden); ``extent`` is
    the object's whole silhouette as last seen unoccluded, carried along with its motion while
    something hides part or all of it, so that what an occluder uncovers is searched for
    (``hidden`` counts the frames it has been carried). ``motion`` is the similarity that took
    the object from the frame before to this one (in direction ``reverse``), ``fgd`` the
    object's colour model (GrabCut's 65 floats) from the last frame it was well seen.
    """

    frame: int
    mask: np.ndarray
    extent: np.ndarray
    hidden: int = 0
    motion: np.ndarray | None = None
    reverse: bool = False
    fgd: np.ndarray | None = None


@dataclass
class _TrackData:
    """What the engine keeps of one track: its prompts and two states, whatever the video's length."""

    prompts: dict[int, np.ndarray] = field(default_factory=dict)   # frame -> (H, W) bool prompt mask
    work: dict[int, np.ndarray] = field(default_factory=dict)      # frame -> working-res uint8 prompt mask
    last: _State | None = None       # what this track produced last (prompt or step)
    anchor: _State | None = None     # the first state of the current run (the turning point of `both`)
    fresh_run: bool = True


class ClassicalEngine(Engine):
    """GrabCut + DIS optical flow; see the module docstring.

    Args:
        image_size: working long side in pixels (frames smaller than that are used as they are).
        cache_frames: decoded frames kept (an LRU; at least 3).
        flow_preset: ``ultrafast``, ``fast`` or ``medium`` (OpenCV's DIS presets).
        prompt_iterations: GrabCut iterations per click or box.
        mismatch: grey levels by which the warped previous frame may differ from a frame where
            the warp is trusted.
        visible_fraction: below this share of its carried extent an object counts as partly hidden.
        max_hidden: frames an extent is carried before it is given up.
        band: width of the undecided band around the carried mask, as a share of the object's
            radius (how far a frame may grow it back).
    """

    name = "classical"

    def __init__(self, *, image_size: int | None = None, cache_frames: int = 6, flow_preset: str = "medium",
                 prompt_iterations: int = 3, mismatch: int = 40, visible_fraction: float = 0.9,
                 max_hidden: int = 30, band: float = 0.3) -> None:
        super().__init__()
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        if flow_preset not in presets:
            raise EngineError(f"flow_preset must be one of {sorted(presets)}, got {flow_preset!r}")
        if image_size is not None and int(image_size) < 16:
            raise EngineError(f"image_size must be at least 16 pixels, got {image_size!r}")
        self.default_image_size = int(image_size) if image_size is not None else DEFAULT_IMAGE_SIZE
        self.cache_frames = max(3, int(cache_frames))
        self.visible_fraction = float(visible_fraction)
        self.max_hidden = int(max_hidden)
        self.band = float(band)
        self.prompt_iterations = max(1, int(prompt_iterations))
        self.mismatch = int(mismatch)
        self._preset = presets[flow_preset]
        self._flow_engine = None
        self._frames: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._flows: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._data: dict[str, _TrackData] = {}
        self._scale = 1.0
        self._work_size = (0, 0)   # (w, h)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    # -- session hooks -----------------------------------------------------------------
    def _open(self, video: Video, image_size: int | None) -> None:
        size = self.default_image_size if image_size is None else int(image_size)
        if size < 16:
            raise EngineError(f"image_size must be at least 16 pixels, got {image_size!r}")
        self._scale = min(1.0, size / max(video.width, video.height))
        self._work_size = (max(1, round(video.width * self._scale)), max(1, round(video.height * self._scale)))
        w, h = self._work_size
        self._grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self._frames.clear()
        self._flows.clear()
        self._data = {}
        if self._flow_engine is None:
            self._flow_engine = cv2.DISOpticalFlow_create(self._preset)

    def _close(self) -> None:
        self._frames.clear()
        self._flows.clear()
        self._data = {}

    def _remove(self, track_id: str) -> None:
        self._data.pop(track_id, None)

    def held(self) -> Held:
        if self.video is None:
            return Held()
        memories: set[int] = set()
        pointers: set[int] = set()
        for d in self._data.values():
            memories.update(k.frame for k in (d.last, d.anchor) if k is not None)
            pointers.update(d.work)
        features = set(self._frames) | {f for pair in self._flows for f in pair}
        return Held(features=frozenset(features), memories=frozenset(memories), pointers=frozenset(pointers))

    # -- prompts -----------------------------------------------------------------------
    def _add_mask(self, frame: int, track: TrackState, mask: np.ndarray) -> np.ndarray:
        return self._keep_prompt(frame, track, mask.copy(), self._down(mask))

    def _add_box(self, frame: int, track: TrackState, box: np.ndarray) -> np.ndarray:
        image, _ = self._image(frame)
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (box * self._scale).tolist()
        x0, y0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
        x1, y1 = int(np.clip(np.ceil(x1), x0 + 1, w)), int(np.clip(np.ceil(y1), y0 + 1, h))
        bw, bh = x1 - x0, y1 - y0
        pad = max(8, int(0.25 * max(bw, bh)))
        cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
        out = np.zeros((h, w), np.uint8)
        if bw >= 3 and bh >= 3 and (cx1 - cx0) * (cy1 - cy0) > bw * bh:
            crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
            gc = np.zeros(crop.shape[:2], np.uint8)
            rect = (x0 - cx0, y0 - cy0, bw, bh)
            fg = self._grabcut(crop, gc, self.prompt_iterations, rect=rect)
            if fg is not None:
                fg = _largest_parts(fg)
                out[cy0:cy1, cx0:cx1] = _fill_holes(fg)
        if not out.any():   # a box too small for GrabCut (or GrabCut found nothing): the box itself
            out[y0:y1, x0:x1] = 1
        return self._keep_prompt(frame, track, None, out)

    def _add_points(self, frame: int, track: TrackState, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        image, _ = self._image(frame)
        h, w = image.shape[:2]
        xy = np.clip(np.round(points * self._scale - 0.5), 0, [w - 1, h - 1]).astype(np.int64)
        pos, neg = xy[labels == 1], xy[labels == 0]
        data = self._data.get(track.track_id)
        prev = None
        if data is not None:
            if frame in data.work:
                prev = data.work[frame]
            elif data.last is not None and data.last.frame == frame:
                prev = data.last.mask
        if prev is not None and not prev.any():
            prev = None
        if len(pos) == 0:
            out = np.zeros((h, w), np.uint8)
            if prev is not None:   # only negative clicks: take the clicked parts away
                out = self._correct(image, prev, pos, neg)
            return self._keep_prompt(frame, track, None, out)
        if prev is not None:
            out = self._correct(image, prev, pos, neg)
        else:
            out = self._from_clicks(image, pos, neg)
        return self._keep_prompt(frame, track, None, out)

    def _seed_radius(self) -> int:
        w, h = self._work_size
        return max(2, round(0.008 * float(np.hypot(w, h))))

    def _from_clicks(self, image: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """GrabCut in a window around the positive clicks, grown while the object runs out of it."""
        h, w = image.shape[:2]
        rs = self._seed_radius()
        half = 0.16 * (w + h) / 2
        px0, py0 = pos.min(axis=0)
        px1, py1 = pos.max(axis=0) + 1
        fg = None
        for _ in range(4):
            r = round(half)
            wx0, wy0, wx1, wy1 = max(0, px0 - r), max(0, py0 - r), min(w, px1 + r), min(h, py1 + r)
            m = max(6, r // 3)
            cx0, cy0, cx1, cy1 = max(0, wx0 - m), max(0, wy0 - m), min(w, wx1 + m), min(h, wy1 + m)
            crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
            gc = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
            gc[wy0 - cy0:wy1 - cy0, wx0 - cx0:wx1 - cx0] = cv2.GC_PR_BGD
            for x, y in pos:
                cv2.circle(gc, (int(x - cx0), int(y - cy0)), max(rs, r // 2), cv2.GC_PR_FGD, -1)
            for x, y in pos:
                cv2.circle(gc, (int(x - cx0), int(y - cy0)), rs, cv2.GC_FGD, -1)
            for x, y in neg:
                if cx0 <= x < cx1 and cy0 <= y < cy1:
                    cv2.circle(gc, (int(x - cx0), int(y - cy0)), rs, cv2.GC_BGD, -1)
            got = self._grabcut(crop, gc, self.prompt_iterations)
            if got is None:
                break
            got = _fill_holes(_parts_at(got, pos - [cx0, cy0]))
            fg = (got, cx0, cy0)
            # grow the window while the object crosses its inner edges (not the image's)
            sub = got[wy0 - cy0:wy1 - cy0, wx0 - cx0:wx1 - cx0]
            edges = []
            if wx0 > 0:
                edges.append(sub[:, 0])
            if wx1 < w:
                edges.append(sub[:, -1])
            if wy0 > 0:
                edges.append(sub[0, :])
            if wy1 < h:
                edges.append(sub[-1, :])
            if not edges:
                break
            crossing = float(np.concatenate(edges).mean())
            # a result no bigger than the seeds means the window's margin cut into the object
            collapsed = got.sum() <= 2 * len(pos) * np.pi * rs * rs
            if crossing < 0.04 and not collapsed:
                break
            half *= 1.8
        out = np.zeros((h, w), np.uint8)
        if fg is not None:
            got, cx0, cy0 = fg
            out[cy0:cy0 + got.shape[0], cx0:cx0 + got.shape[1]] = got
        if not out.any():   # a click always selects at least what it touches
            for x, y in pos:
                cv2.circle(out, (int(x), int(y)), rs, 1, -1)
        return out

    def _correct(self, image: np.ndarray, prev: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """GrabCut seeded by the frame's previous mask, corrected by the clicks."""
        h, w = image.shape[:2]
        rs = self._seed_radius()
        pts = np.concatenate([pos, neg]) if len(neg) else pos
        ys, xs = np.nonzero(prev)
        x0, x1 = min(xs.min(), pts[:, 0].min()), max(xs.max(), pts[:, 0].max()) + 1
        y0, y1 = min(ys.min(), pts[:, 1].min()), max(ys.max(), pts[:, 1].max()) + 1
        size = max(x1 - x0, y1 - y0)
        band = max(4, int(0.15 * size))
        m = band + max(6, int(0.15 * size))
        cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
        crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
        p = prev[cy0:cy1, cx0:cx1].copy()
        if len(neg):
            # previous-mask pixels nearer a negative click than every positive one are in doubt
            yy, xx = np.mgrid[cy0:cy1, cx0:cx1]
            dneg = np.min([(xx - x) ** 2 + (yy - y) ** 2 for x, y in neg], axis=0)
            dpos = (np.min([(xx - x) ** 2 + (yy - y) ** 2 for x, y in pos], axis=0) if len(pos)
                    else np.full_like(dneg, np.iinfo(dneg.dtype).max))
            p[(dneg < dpos) & (p > 0)] = 0
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        gc = np.full(p.shape, cv2.GC_BGD, np.uint8)
        gc[cv2.dilate(p, kernel) > 0] = cv2.GC_PR_BGD
        gc[p > 0] = cv2.GC_PR_FGD
        for x, y in pos:
            cv2.circle(gc, (int(x - cx0), int(y - cy0)), max(rs, band), cv2.GC_PR_FGD, -1)
        for x, y in pos:
            cv2.circle(gc, (int(x - cx0), int(y - cy0)), rs, cv2.GC_FGD, -1)
        for x, y in neg:
            cv2.circle(gc, (int(x - cx0), int(y - cy0)), rs, cv2.GC_BGD, -1)
        out = np.zeros((h, w), np.uint8)
        got = self._grabcut(crop, gc, self.prompt_iterations)
        if got is None:
            return out
        if len(pos):
            got = _parts_at(got, pos - [cx0, cy0])
        else:
            got = _largest_parts(got)
        out[cy0:cy1, cx0:cx1] = _fill_holes(got)
        return out

    def _keep_prompt(self, frame: int, track: TrackState, full: np.ndarray | None, work: np.ndarray) -> np.ndarray:
        data = self._data.setdefault(track.track_id, _TrackData())
        if full is None:
            full = self._up(work)
        data.prompts[frame] = full
        data.work[frame] = work
        data.last = _State(frame, work, work)
        return full.copy()

    # -- propagation -----------------------------------------------------------------
    def _begin_pass(self, tracks: list[TrackState], start: int, reverse: bool) -> None:
        for t in tracks:
            d = self._data.get(t.track_id)
            if d is not None:
                d.fresh_run = True

    def _step(self, frame: int, track: TrackState, reverse: bool, logits: bool) -> Step | StepWithLogits:
        data = self._data.setdefault(track.track_id, _TrackData())
        if frame in data.prompts:
            work = data.work[frame]
            state, score = _State(frame, work, work), 1.0
        else:
            source = self._source(data, frame, reverse)
            if source is None:
                empty = np.zeros(self._work_size[::-1], np.uint8)
                state, score = _State(frame, empty, empty), 0.0
            else:
                state, score = self._track_into(frame, source, reverse)
        data.last = state
        if data.fresh_run:
            data.anchor = state
        data.fresh_run = False
        work = state.mask if state.mask.any() else None
        full = None
        if work is not None:
            full = data.prompts[frame].copy() if frame in data.prompts else self._up(work)
        if logits:
            return StepWithLogits(frame, track.track_id, full, float(score), self._logits(work, full))
        return Step(frame, track.track_id, full, float(score))

    def _source(self, data: _TrackData, frame: int, reverse: bool) -> _State | None:
        """The state to carry into ``frame``: the neighbour behind it when the track produced it,
        else the nearest of what it holds (prompt masks, its last and its run's first state)."""
        d = -1 if reverse else 1
        cands = [k for k in (data.last, data.anchor) if k is not None]
        held = {k.frame for k in cands}
        cands += [_State(f, m, m) for f, m in data.work.items() if f not in held]
        if not cands:
            return None
        behind = [k for k in cands if (k.frame - frame) * d < 0]
        return min(behind or cands, key=lambda k: (abs(k.frame - frame), k is not data.last))

    def _track_into(self, frame: int, source: _State, reverse: bool) -> tuple[_State, float]:
        """Carry ``source`` into ``frame``: warp its visible mask along the backward flow, move
        its extent with the object's motion, then cut the frame with colour models (`_cut`)."""
        image, grey = self._image(frame)
        h, w = grey.shape
        empty = np.zeros((h, w), np.uint8)
        if not source.extent.any() and not source.mask.any():
            return _State(frame, empty, empty, reverse=reverse), 0.0
        image_src, grey_src = self._image(source.frame)
        flow = self._flow(frame, source.frame, grey, grey_src)
        mapx, mapy = self._grid[0] + flow[..., 0], self._grid[1] + flow[..., 1]
        warped, good = empty, empty.astype(bool)
        if source.mask.any():
            soft = cv2.remap(source.mask.astype(np.float32), mapx, mapy, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            warped = (soft > 0.5).astype(np.uint8)
            good = self._consistent(image, image_src, warped, mapx, mapy)
        previous = source.motion if abs(frame - source.frame) == 1 and source.reverse == reverse else None
        motion = self._motion(grey, grey_src, source.mask, good, mapx, mapy, previous)
        extent = source.extent
        if extent.any():
            extent = cv2.warpAffine(extent, motion, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        if source.mask.any():
            inv = cv2.invertAffineTransform(motion)
            smapx = (inv[0, 0] * self._grid[0] + inv[0, 1] * self._grid[1] + inv[0, 2]).astype(np.float32)
            smapy = (inv[1, 0] * self._grid[0] + inv[1, 1] * self._grid[1] + inv[1, 2]).astype(np.float32)
            ssoft = cv2.remap(source.mask.astype(np.float32), smapx, smapy, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            swarped = (ssoft > 0.5).astype(np.uint8)
            if swarped.any():   # the object moved as a whole, beside the flow's own warp
                warped, good = warped | swarped, good | self._consistent(image, image_src, swarped, smapx, smapy)
        prior = warped | extent
        if not prior.any():
            return _State(frame, empty, empty, reverse=reverse), 0.0
        out, fgd = self._cut(image, warped, good, prior, source.fgd)
        seen, carried = int(out.sum()), int(extent.sum())
        if seen < max(4, 0.02 * max(carried, int(warped.sum()))):
            out, seen = empty, 0
        score = 0.0
        if warped.any() and seen:
            score = float(np.logical_and(out, warped).sum()) / float(np.logical_or(out, warped).sum())
        if seen >= self.visible_fraction * carried or source.hidden >= self.max_hidden:
            return _State(frame, out, out, 0, motion, reverse, fgd), score
        return _State(frame, out, extent | out, source.hidden + 1, motion, reverse, fgd), score

    def _motion(self, grey: np.ndarray, grey_src: np.ndarray, mask: np.ndarray, good: np.ndarray, mapx: np.ndarray,
                mapy: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """The similarity (2x3) taking the object from the source frame into this one.

        Candidates: a similarity fitted to the flow over the matching warped pixels, the median
        flow there, the best masked template match of the object, the motion of the frame before
        and none; the one that best aligns the object's pixels wins (a truncated grey-level
        error), since near an occluder the flow follows the occluder.
        """
        ident = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
        ys, xs = np.nonzero(mask)
        if len(xs) < 16:
            return previous if previous is not None else ident
        cands = [ident] + ([previous] if previous is not None else [])
        fit = _fit_similarity(good, mapx, mapy)
        if fit is not None:
            cands.append(fit)
        gy, gx = np.nonzero(good)
        if len(gx):
            shift = np.median(np.stack([gx - mapx[gy, gx], gy - mapy[gy, gx]], axis=1), axis=0)
            cands.append(np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64))
        h, w = grey.shape
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        templ, tmask = grey_src[y0:y1, x0:x1], (mask[y0:y1, x0:x1] * 255).astype(np.uint8)
        reach = max(12, int(0.6 * max(x1 - x0, y1 - y0)))
        sx0, sy0, sx1, sy1 = max(0, x0 - reach), max(0, y0 - reach), min(w, x1 + reach), min(h, y1 + reach)
        if sx1 - sx0 >= x1 - x0 and sy1 - sy0 >= y1 - y0:
            res = cv2.matchTemplate(grey[sy0:sy1, sx0:sx1], templ, cv2.TM_SQDIFF, mask=tmask)
            res[~np.isfinite(res)] = np.inf
            _, _, loc, _ = cv2.minMaxLoc(res)
            cands.append(np.array([[1, 0, sx0 + loc[0] - x0], [0, 1, sy0 + loc[1] - y0]], np.float64))
        src = cv2.GaussianBlur(grey_src[y0:y1, x0:x1], (3, 3), 0).astype(np.int16)
        here = cv2.GaussianBlur(grey, (3, 3), 0)
        inside = mask[y0:y1, x0:x1] > 0
        best, best_err = ident, np.inf
        for m in cands:
            m = np.asarray(m, np.float64)
            shifted = m.copy()
            shifted[:, 2] = m[:, :2] @ np.array([x0, y0], np.float64) + m[:, 2]
            back = cv2.warpAffine(here, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
            err = float(np.minimum(np.abs(back.astype(np.int16) - src)[inside], 40).mean())
            if err < best_err - 1e-6:
                best, best_err = m, err
        return best

    def _consistent(self, image: np.ndarray, image_src: np.ndarray, warped: np.ndarray, mapx: np.ndarray,
                    mapy: np.ndarray) -> np.ndarray:
        """Warped pixels where the warped previous frame matches this one (elsewhere an occluder
        arrived or the flow failed, and the warp is not to be trusted)."""
        h, w = warped.shape
        ys, xs = np.nonzero(warped)
        if len(xs) == 0:  # the warp carried nothing into the frame
            return np.zeros((h, w), bool)
        x0, y0 = max(0, xs.min() - 3), max(0, ys.min() - 3)
        x1, y1 = min(w, xs.max() + 4), min(h, ys.max() + 4)
        back = cv2.remap(image_src, mapx[y0:y1, x0:x1], mapy[y0:y1, x0:x1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        here = np.ascontiguousarray(image[y0:y1, x0:x1])
        diff = cv2.absdiff(cv2.GaussianBlur(here, (5, 5), 0), cv2.GaussianBlur(back, (5, 5), 0)).max(axis=2)
        good = np.zeros((h, w), bool)
        good[y0:y1, x0:x1] = (warped[y0:y1, x0:x1] > 0) & (diff <= self.mismatch)
        return good

    def _cut(self, image: np.ndarray, warped: np.ndarray, good: np.ndarray, prior: np.ndarray,
             fgd: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """One graph cut around ``prior`` (the warped mask and the carried extent).

        Sure object: the warped mask's eroded core where it matches. Sure background: beyond a
        band around the prior, where the background model is learnt. The object model is learnt
        from the matching warped pixels when they show enough of the object, else the one from
        the last frame that did is kept. Everything between is decided by the models, so that
        parts an occluder uncovers are taken back. Returns the mask and the object model.
        """
        h, w = prior.shape
        ys, xs = np.nonzero(prior)
        r = float(np.sqrt(len(xs) / np.pi))
        erode = max(1, round(0.3 * r))
        band = max(3, round(self.band * r))
        m = band + max(6, round(0.25 * r))
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
        crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
        p, pe, g = warped[cy0:cy1, cx0:cx1], prior[cy0:cy1, cx0:cx1], good[cy0:cy1, cx0:cx1]
        ek = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
        dk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        outside = cv2.dilate(pe, dk) == 0
        core = (cv2.erode(p, ek) > 0) & g
        fresh = int(g.sum()) >= max(30, 0.3 * int(pe.sum())) or (fgd is None and int(g.sum()) >= 10)
        models = _learn(crop, g if fresh else outside, outside)
        out = np.zeros((h, w), np.uint8)
        if models is None or (not fresh and fgd is None):
            out[cy0:cy1, cx0:cx1] = p
            return out, fgd
        bgd, learnt = models
        if fresh:
            fgd = learnt
        gc = np.full(p.shape, cv2.GC_PR_BGD, np.uint8)
        gc[g] = cv2.GC_PR_FGD
        gc[outside] = cv2.GC_BGD
        gc[core] = cv2.GC_FGD
        try:
            cv2.grabCut(crop, gc, None, bgd, fgd.copy(), 1, cv2.GC_EVAL_FREEZE_MODEL)
        except cv2.error as exc:
            log.debug("grabCut failed: %s", exc)
            out[cy0:cy1, cx0:cx1] = p
            return out, fgd
        got = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
        out[cy0:cy1, cx0:cx1] = _fill_holes(_parts_agreeing(got, pe))
        return out, fgd

    # -- frames, flow, resampling ------------------------------------------------------
    def _image(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The frame at working resolution (BGR, grey), through the LRU."""
        hit = self._frames.get(index)
        if hit is not None:
            self._frames.move_to_end(index)
            return hit
        video = self._video()
        path = video.frames[index].path
        flag = cv2.IMREAD_COLOR
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if self._scale * factor <= 1.0:
                flag = reduced
                break
        image = cv2.imread(str(path), flag)
        if image is None:
            raise EngineError(f"video {video.video_id!r} frame {index}: cannot read the image {path}")
        if (image.shape[1], image.shape[0]) != self._work_size:
            image = cv2.resize(image, self._work_size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        self._frames[index] = (image, grey)
        while len(self._frames) > self.cache_frames:
            self._frames.popitem(last=False)
        return image, grey

    def _flow(self, dst: int, src: int, grey_dst: np.ndarray, grey_src: np.ndarray) -> np.ndarray:
        """Backward flow: ``dst(p) ~ src(p + flow(p))``; shared by every track, two kept."""
        key = (dst, src)
        hit = self._flows.get(key)
        if hit is not None:
            return hit
        flow = self._flow_engine.calc(grey_dst, grey_src, None)
        self._flows[key] = flow
        while len(self._flows) > 2:
            self._flows.popitem(last=False)
        return flow

    def _down(self, mask: np.ndarray) -> np.ndarray:
        m = mask.astype(np.uint8) * 255
        if (mask.shape[1], mask.shape[0]) == self._work_size:
            return (m > 127).astype(np.uint8)
        return (cv2.resize(m, self._work_size, interpolation=cv2.INTER_AREA) > 127).astype(np.uint8)

    def _up(self, work: np.ndarray) -> np.ndarray:
        video = self._video()
        if (video.width, video.height) == self._work_size:
            return work > 0
        return cv2.resize(work * np.uint8(255), (video.width, video.height), interpolation=cv2.INTER_LINEAR) > 127

    def _logits(self, work: np.ndarray | None, full: np.ndarray | None) -> np.ndarray:
        """A signed distance to the mask's boundary (working pixels, > 0 inside) at video size,
        its sign made to agree with the returned mask ``full`` pixel for pixel."""
        video = self._video()
        if work is None or full is None:
            return np.full((video.height, video.width), -_LOGIT_CLIP, np.float32)
        inside = cv2.distanceTransform(work, cv2.DIST_L2, 3)
        outside = cv2.distanceTransform(1 - work, cv2.DIST_L2, 3)
        sdf = np.clip(inside - outside, -_LOGIT_CLIP, _LOGIT_CLIP).astype(np.float32)
        if (video.width, video.height) != self._work_size:
            sdf = cv2.resize(sdf, (video.width, video.height), interpolation=cv2.INTER_LINEAR)
        sdf[full & (sdf <= 0)] = 0.5
        sdf[~full & (sdf > 0)] = -0.5
        return sdf

    @staticmethod
    def _grabcut(crop: np.ndarray, gc: np.ndarray, iterations: int, rect=None) -> np.ndarray | None:
        """Run GrabCut; the uint8 0/1 foreground, or None when the labels leave it nothing to learn."""
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        if rect is None:
            fg_seed = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
            if not fg_seed.any() or fg_seed.all():
                return None
            mode = cv2.GC_INIT_WITH_MASK
        else:
            mode = cv2.GC_INIT_WITH_RECT
        cv2.setRNGSeed(0)   # GrabCut seeds its k-means from OpenCV's global RNG: same input, same mask
        try:
            cv2.grabCut(crop, gc, rect, bgd, fgd, iterations, mode)
        except cv2.error as exc:   # too few samples for a colour model
            log.debug("grabCut failed: %s", exc)
            return None
        return ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)


# -- colour models and mask clean-up ---------------------------------------------------
def _learn(image: np.ndarray, fg: np.ndarray, bg: np.ndarray, most: int = 3000):
    """GrabCut's (background, foreground) GMMs learnt from the pixels under ``fg`` and ``bg``
    only (up to ``most`` of each), or None when either has too few to learn from."""
    a, b = image[fg], image[bg]
    if len(a) < 10 or len(b) < 10:
        return None
    a, b = a[::max(1, len(a) // most)], b[::max(1, len(b) // most)]
    samples = np.ascontiguousarray(np.concatenate([a, b])[:, None, :])
    labels = np.concatenate([np.full(len(a), cv2.GC_FGD, np.uint8), np.full(len(b), cv2.GC_BGD, np.uint8)])[:, None]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)   # GrabCut seeds its k-means from OpenCV's global RNG: same input, same models
    try:
        cv2.grabCut(samples, np.ascontiguousarray(labels), None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        log.debug("GMM learning failed: %s", exc)
        return None
    return bgd, fgd


def _fit_similarity(good: np.ndarray, mapx: np.ndarray, mapy: np.ndarray) -> np.ndarray | None:
    """The similarity (2x3) taking the pixels under ``good`` from where the flow says they were
    to where they are, or None when too few points agree on one."""
    ys, xs = np.nonzero(good)
    if len(xs) < 12:
        return None
    step = max(1, len(xs) // 400)
    xs, ys = xs[::step], ys[::step]
    dst = np.stack([xs, ys], axis=1).astype(np.float32)
    src = np.stack([mapx[ys, xs], mapy[ys, xs]], axis=1).astype(np.float32)
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
    if matrix is None or inliers is None or inliers.sum() < max(12, 0.5 * len(dst)):
        return None
    return matrix


def _parts_at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The connected parts of ``mask`` under ``points`` (or the part nearest each point)."""
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    if n <= 1:
        return mask
    keep = set()
    for x, y in points:
        x, y = int(x), int(y)
        if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]):
            continue
        lab = labels[y, x]
        if lab == 0:
            ys, xs = np.nonzero(labels)
            i = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
            lab = labels[ys[i], xs[i]]
        keep.add(int(lab))
    return np.isin(labels, list(keep)).astype(np.uint8)


def _largest_parts(mask: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """The largest connected part and those at least ``fraction`` of its size."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= fraction * areas.max()) + 1
    return np.isin(labels, keep).astype(np.uint8)


def _parts_agreeing(mask: np.ndarray, prior: np.ndarray, fraction: float = 0.3) -> np.ndarray:
    """The parts of ``mask`` with at least ``fraction`` of their pixels inside ``prior``: an
    occluder may cut the object in pieces of any size, but a piece grown out in the band
    around the prior alone is a leak."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    inside = np.bincount(labels[prior > 0], minlength=n)
    keep = inside >= fraction * stats[:, cv2.CC_STAT_AREA]
    keep[0] = False
    return keep[labels].astype(np.uint8)


def _fill_holes(mask: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Fill holes smaller than ``fraction`` of the mask's area (GrabCut's specks in texture)."""
    area = int(mask.sum())
    if area == 0:
        return mask
    inv = (1 - mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 2:
        return mask
    h, w = mask.shape
    x, y, bw, bh = (stats[:, i] for i in range(4))
    border = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    small = (stats[:, cv2.CC_STAT_AREA] < fraction * area) & ~border
    small[0] = False
    out = mask.copy()
    out[small[labels]] = 1
    return out
