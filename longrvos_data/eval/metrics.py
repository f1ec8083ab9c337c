"""The DAVIS region (J) and boundary (F) measures, computed where they can change.

Definitions (DAVIS 2017 toolkit, ``davis2017/metrics.py``; FORMATS.md "The shared DAVIS J
and F"), for one frame with ground truth G and prediction P, both binary:

- J = |P ∩ G| / |P ∪ G|, 1 when the union is empty.
- F: boundary maps b(M) = M⊕east | M⊕south | M⊕south-east (the last row uses the east
  neighbour only, the last column the south one, the corner is 0); radius
  r = ceil(0.008 · sqrt(H² + W²)); a boundary pixel of one mask is matched when a
  boundary pixel of the other lies within the disk x² + y² <= r² around it (that is
  ``cv2.dilate`` with skimage's ``disk(r)``); precision = matched(P) / |b(P)|,
  recall = matched(G) / |b(G)|; both boundaries empty -> 1, one empty -> 0,
  F = 2PR / (P + R), 0 when P + R = 0.

The official code dilates two full frames per frame and expression. Here every quantity
is computed inside the masks' bounding boxes, which gives the same numbers (boundary
pixels lie inside a mask's box grown by one pixel; a disk around a pixel of one box sees
only pixels of the other box), and a pixel is matched by looking up box sums in an
integral image instead of dilating:

- Chebyshev distance <= floor(r / sqrt(2)) -> inside the disk: matched for sure;
- Chebyshev distance > r -> outside the disk: not matched;
- in between, the disk's rows are summed exactly (2r + 1 row sums per pixel).

Per-mask work (box, boundary, its pixels, its integral image) is cached on `MaskInfo`,
so a ground-truth mask shared by several expressions is analysed once per frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

BOUND_TH = 0.008


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """DAVIS boundary tolerance in pixels: ``ceil(bound_th * sqrt(H^2 + W^2))``.

    Computed with the same floating-point expression as the official toolkit
    (``np.ceil(bound_th * np.linalg.norm(shape))``), so rounding can never differ.

    Example:
        >>> boundary_radius(480, 854), boundary_radius(720, 1280), boundary_radius(1080, 1920)
        (8, 12, 18)
    """
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(np.array([height, width]))))


def disk(radius: int) -> np.ndarray:
    """The structuring element of skimage ``disk(radius)``: ``x^2 + y^2 <= r^2``.

    Returns:
        ``(2r+1, 2r+1) uint8`` of 0/1.

    Example:
        >>> disk(1).tolist()
        [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    """
    ax = np.arange(-radius, radius + 1)
    return ((ax[None, :] ** 2 + ax[:, None] ** 2) <= radius * radius).astype(np.uint8)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """The one-pixel boundary map of a binary mask, exactly as DAVIS ``_seg2bmap``.

    Args:
        mask: ``(H, W)`` bool or integer, non-zero = foreground.

    Returns:
        ``(H, W) bool``.

    Example:
        >>> seg2bmap(np.array([[0, 0], [0, 1]])).astype(int).tolist()
        [[1, 1], [1, 0]]
    """
    binary = np.ascontiguousarray(np.asarray(mask) != 0).view(np.uint8)
    return _bmap01(binary).view(bool)


def _bmap01(s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Boundary map of a C-contiguous 0/1 uint8 array, as 0/1 uint8 (into ``out``, zeros, if given).

    b = s^east | s^south | s^south-east, where the last row only has an east neighbour
    and the last column only a south one (so the corner is 0): exactly ``_seg2bmap``.
    """
    b = np.zeros_like(s) if out is None else out
    h, w = s.shape
    if w > 1:
        cv2.bitwise_xor(s[:, :-1], s[:, 1:], dst=b[:, :-1])            # east, last row included
    if h > 1:
        b[:-1, :] |= cv2.bitwise_xor(s[:-1, :], s[1:, :]).reshape(h - 1, w)        # south, last column included
        if w > 1:
            b[:-1, :-1] |= cv2.bitwise_xor(s[:-1, :-1], s[1:, 1:]).reshape(h - 1, w - 1)  # south-east
    return b


def _u8(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """A C-contiguous uint8 view of ``arr`` (or of its transpose, flagged True), copying only if needed."""
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    elif arr.dtype != np.uint8:
        arr = (arr != 0).view(np.uint8)
    if arr.flags.c_contiguous:
        return arr, False
    if arr.flags.f_contiguous:   # pycocotools decodes column-major: work on the transpose
        return arr.T, True
    return np.ascontiguousarray(arr), False


def _bbox_u8(u8: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open ``(y0, y1, x0, x1)`` box of the non-zero pixels of a C-contiguous uint8 array."""
    rows = np.flatnonzero(cv2.reduce(u8, 1, cv2.REDUCE_MAX).ravel())
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    band = u8[y0:y1]
    if band.shape[1] % 8 == 0:   # OR the rows eight bytes at a time
        cols = np.bitwise_or.reduce(band.view(np.uint64), axis=0).view(np.uint8)
    else:
        cols = band.max(axis=0)
    cols = np.flatnonzero(cols)
    return y0, y1, int(cols[0]), int(cols[-1]) + 1


def _bbox(arr: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` half-open box of the non-zero pixels, None when empty."""
    u8, transposed = _u8(arr)
    box = _bbox_u8(u8)
    if box is None or not transposed:
        return box
    return box[2], box[3], box[0], box[1]


@dataclass
class Boundary:
    """A mask's boundary pixels, held in a zero-padded window of the frame.

    ``buf[pad:-pad, pad:-pad]`` is the mask's box grown by one pixel (where every boundary
    pixel lies); the ``pad`` zero pixels around it let `matched_count` read box sums of
    its integral image without clipping. ``buf[0, 0]`` is frame pixel ``(y0, x0)``.
    """

    y0: int
    x0: int
    buf: np.ndarray           # (h + 2 pad, w + 2 pad) uint8 0/1
    pad: int
    count: int
    _ys: np.ndarray | None = None
    _xs: np.ndarray | None = None
    _integral: np.ndarray | None = None

    @property
    def bmap(self) -> np.ndarray:
        """The boundary map of the unpadded window, ``(h, w)`` uint8 0/1."""
        p = self.pad
        return self.buf[p:self.buf.shape[0] - p, p:self.buf.shape[1] - p]

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates ``(ys, xs)`` of the boundary pixels, ``(N,) int64`` each."""
        if self._ys is None:
            flat = np.flatnonzero(self.buf.view(bool))   # 10x faster on bool than on uint8
            w = self.buf.shape[1]
            self._ys = flat // w + self.y0
            self._xs = flat % w + self.x0
        return self._ys, self._xs

    def integral(self) -> tuple[np.ndarray, int]:
        """The flat integral image of ``buf`` and its row stride."""
        if self._integral is None:
            self._integral = cv2.integral(self.buf, sdepth=cv2.CV_32S).ravel()
        return self._integral, self.buf.shape[1] + 1


class MaskInfo:
    """One binary mask of a frame with its box, area and boundary computed on demand.

    Args:
        mask: ``(H, W)`` bool or uint8 (non-zero = foreground), C or Fortran order.

    Example:
        >>> info = MaskInfo(np.eye(4, dtype=bool))
        >>> info.area, info.bbox
        (4, (0, 4, 0, 4))
    """

    __slots__ = ("mask", "height", "width", "_u8", "_t", "_bbox", "_area", "_boundary", "_bbox_done", "_win")

    def __init__(self, mask: np.ndarray) -> None:
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
        self.mask = mask
        self.height, self.width = mask.shape
        self._u8, self._t = _u8(mask)
        self._bbox_done = False
        self._bbox: tuple[int, int, int, int] | None = None
        self._area: int | None = None
        self._boundary: Boundary | None = None
        self._win: tuple[int, int, np.ndarray] | None = None

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """``(y0, y1, x0, x1)`` half-open, None when the mask is empty."""
        if not self._bbox_done:
            box = _bbox_u8(self._u8)
            self._bbox = box if box is None or not self._t else (box[2], box[3], box[0], box[1])
            self._bbox_done = True
        return self._bbox

    @property
    def empty(self) -> bool:
        return self.bbox is None

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The raw values (uint8, non-zero = foreground) inside a frame window, as a view."""
        return self._u8[x0:x1, y0:y1].T if self._t else self._u8[y0:y1, x0:x1]

    @property
    def area(self) -> int:
        """Foreground pixel count."""
        if self._area is None:
            self._area = 0 if self.bbox is None else int(np.count_nonzero(self._window()[2]))
        return self._area

    def _window(self) -> tuple[int, int, np.ndarray]:
        """``(y0, x0, binary)``: the box grown by one pixel (clipped) as C-contiguous 0/1 uint8."""
        if self._win is None:
            box = self.bbox
            y0, x0 = max(box[0] - 1, 0), max(box[2] - 1, 0)
            y1, x1 = min(box[1] + 1, self.height), min(box[3] + 1, self.width)
            binary = np.ascontiguousarray(np.not_equal(self.crop(y0, y1, x0, x1), 0)).view(np.uint8)
            self._win = (y0, x0, binary)
        return self._win

    def boundary(self, pad: int = 0) -> Boundary:
        """The DAVIS boundary, computed in the box grown by one pixel (same pixels as full frame).

        Args:
            pad: zero margin kept around the window (`matched_count` needs ``2r + 1``).
        """
        if self._boundary is None or self._boundary.pad < pad:
            box = self.bbox
            if box is None:
                self._boundary = Boundary(0, 0, np.zeros((2 * pad, 2 * pad), dtype=np.uint8), pad, 0)
            else:
                y0, x0, binary = self._window()
                h, w = binary.shape
                buf = np.zeros((h + 2 * pad, w + 2 * pad), dtype=np.uint8)
                _bmap01(binary, buf[pad:pad + h, pad:pad + w])
                self._boundary = Boundary(y0 - pad, x0 - pad, buf, pad, cv2.countNonZero(buf))
        return self._boundary


@dataclass(frozen=True)
class _Disk:
    radius: int
    inner: int                 # half side of the largest square inside the disk
    stride: int
    offsets: tuple[np.ndarray, ...]   # flat offsets of the 4 integral corners of each disk row


_DISKS: dict[tuple[int, int], _Disk] = {}


def _disk_rows(radius: int, stride: int) -> _Disk:
    """The disk as 2r + 1 one-row boxes ``[dy, dy+1) x [-w, w+1)``, w = floor(sqrt(r^2 - dy^2))."""
    d = _DISKS.get((radius, stride))
    if d is None:
        dys = np.arange(-radius, radius + 1)
        widths = np.array([math.isqrt(radius * radius - int(dy) * int(dy)) for dy in dys])
        offsets = (dys * stride - widths, dys * stride + widths + 1,
                   (dys + 1) * stride - widths, (dys + 1) * stride + widths + 1)
        if len(_DISKS) > 64:
            _DISKS.clear()
        d = _DISKS[radius, stride] = _Disk(radius, math.isqrt(radius * radius // 2), stride,
                                           tuple(o[None, :] for o in offsets))
    return d


def _square_sums(integral: np.ndarray, base: np.ndarray, half: int, stride: int) -> np.ndarray:
    """Pixel counts of the squares of half-size ``half`` centred on flat indices ``base``."""
    lo, hi = -half * stride, (half + 1) * stride
    corners = base[:, None] + np.array([hi + half + 1, lo + half + 1, hi - half, lo - half])
    v = integral[corners]
    return (v[:, 0] - v[:, 1]) - (v[:, 2] - v[:, 3])


def matched_count(a: Boundary, b: Boundary, radius: int) -> int:
    """How many boundary pixels of ``a`` have a boundary pixel of ``b`` within the disk.

    Equals ``count(a_full & cv2.dilate(b_full, disk(radius)))`` on full frames. ``b`` must
    have been made with ``pad >= 2 * radius + 1``.
    """
    if a.count == 0 or b.count == 0:
        return 0
    r = radius
    pad = b.pad
    if pad < 2 * r + 1:
        raise ValueError(f"boundary padding {pad} is too small for radius {r} (needs {2 * r + 1})")
    hp, wp = b.buf.shape
    ys, xs = a.coords()
    lo = pad - r
    # a's window, in b's padded frame; a pixel farther than r from b's window cannot match
    ay0, ax0 = a.y0 + a.pad - b.y0, a.x0 + a.pad - b.x0
    ay1, ax1 = ay0 + a.buf.shape[0] - 2 * a.pad, ax0 + a.buf.shape[1] - 2 * a.pad
    if ay0 >= hp - lo or ay1 <= lo or ax0 >= wp - lo or ax1 <= lo:
        return 0
    py, px = ys - b.y0, xs - b.x0
    if not (ay0 >= lo and ay1 <= hp - lo and ax0 >= lo and ax1 <= wp - lo):
        near = (py >= lo) & (py < hp - lo) & (px >= lo) & (px < wp - lo)
        py, px = py[near], px[near]
        if py.size == 0:
            return 0
    integral, stride = b.integral()
    d = _disk_rows(r, stride)
    base = py * stride + px
    inner = _square_sums(integral, base, d.inner, stride) > 0     # inside the inscribed square: matched
    total = int(np.count_nonzero(inner))
    if total == base.size:
        return total
    rest = base[~inner]
    rest = rest[_square_sums(integral, rest, r, stride) > 0]        # outside the bounding square: not matched
    if rest.size == 0:
        return total
    rest = rest[:, None]
    hits = (integral[rest + d.offsets[3]] - integral[rest + d.offsets[2]]) - \
        (integral[rest + d.offsets[1]] - integral[rest + d.offsets[0]])
    return total + int(np.count_nonzero(hits.any(axis=1)))


def f_from_counts(n_pred: int, n_gt: int, matched_pred: int, matched_gt: int) -> float:
    """Boundary F from boundary sizes and matched counts, with the DAVIS empty-case rules."""
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = matched_pred / n_pred
    recall = matched_gt / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class FrameScore:
    """One frame's J and F with the counts the other measures are built from."""

    j: float
    f: float
    intersection: int
    gt_area: int
    pred_area: int


def score_frame(gt: MaskInfo | None, pred: MaskInfo | None, radius: int, *, boundary: bool = True) -> FrameScore:
    """J and F of one frame; None stands for an empty mask.

    Args:
        gt, pred: the frame's masks (`MaskInfo`, cached analysis) or None when empty.
        radius: `boundary_radius` of the frame size.
        boundary: False skips F (returned as NaN).

    Example:
        >>> m = np.zeros((6, 6), bool); m[2:4, 2:4] = True
        >>> score_frame(MaskInfo(m), MaskInfo(m), boundary_radius(6, 6)).j
        1.0
    """
    gt_box = None if gt is None else gt.bbox
    pred_box = None if pred is None else pred.bbox
    if gt_box is None and pred_box is None:
        return FrameScore(1.0, 1.0, 0, 0, 0)
    ga = gt.area if gt_box is not None else 0
    pa = pred.area if pred_box is not None else 0
    inter = 0
    if gt_box is not None and pred_box is not None:
        y0, y1 = max(gt_box[0], pred_box[0]), min(gt_box[1], pred_box[1])
        x0, x1 = max(gt_box[2], pred_box[2]), min(gt_box[3], pred_box[3])
        if y0 < y1 and x0 < x1:
            inter = int(np.count_nonzero(np.logical_and(gt.crop(y0, y1, x0, x1), pred.crop(y0, y1, x0, x1))))
    j = inter / (ga + pa - inter)
    if not boundary:
        return FrameScore(j, math.nan, inter, ga, pa)
    pad = 2 * radius + 1
    bg = gt.boundary(pad) if gt_box is not None else None
    bp = pred.boundary(pad) if pred_box is not None else None
    ng = 0 if bg is None else bg.count
    npred = 0 if bp is None else bp.count
    if ng and npred:
        f = f_from_counts(npred, ng, matched_count(bp, bg, radius), matched_count(bg, bp, radius))
    else:
        f = f_from_counts(npred, ng, 0, 0)
    return FrameScore(j, f, inter, ga, pa)


def jf(gt: np.ndarray, pred: np.ndarray, *, radius: int | None = None) -> tuple[float, float]:
    """J and F of one frame from two full ``(H, W)`` masks (non-zero = foreground).

    Example:
        >>> g = np.zeros((5, 5), bool); g[1:3, 1:3] = True
        >>> jf(g, np.zeros_like(g))
        (0.0, 0.0)
    """
    if gt.shape != pred.shape:
        raise ValueError(f"masks differ in size: {gt.shape} vs {pred.shape}")
    r = boundary_radius(*gt.shape) if radius is None else radius
    s = score_frame(MaskInfo(gt), MaskInfo(pred), r)
    return s.j, s.f


# -- per-expression measures built from per-frame values ------------------------------
def temporal_ious(j: Sequence[float], gt_present: Sequence[bool], pred_present: Sequence[bool]) -> tuple[float, float]:
    """Long-RVOS tIoU and vIoU of one expression.

    tIoU = |Tg ∩ Tp| / |Tg ∪ Tp| and vIoU = Σ_{t ∈ Tg ∩ Tp} J_t / |Tg ∪ Tp| with T* the
    frames whose mask is non-empty; both are 1 when no frame has a mask.

    Example:
        >>> temporal_ious([1.0, 0.5, 1.0], [True, True, False], [False, True, False])
        (0.5, 0.25)
    """
    g = np.asarray(gt_present, dtype=bool)
    p = np.asarray(pred_present, dtype=bool)
    both = g & p
    union = int(np.count_nonzero(g | p))
    if union == 0:
        return 1.0, 1.0
    return int(np.count_nonzero(both)) / union, float(np.asarray(j, dtype=np.float64)[both].sum()) / union


def accuracy(intersection: int, gt_area: int, pred_area: int, num_pixels: int) -> float:
    """ReVOS A for one frame, binarised: the fraction of pixels where G and P agree."""
    return 1.0 - (gt_area + pred_area - 2 * intersection) / num_pixels


def robustness(false_positive: int, foreground_area: int) -> float:
    """ReVOS R for one frame: ``max(1 - |P \\ G| / (|FG| + 1e-6), 0)``."""
    return max(1.0 - false_positive / (foreground_area + 1e-6), 0.0)


def raw_accuracy_robustness(gt_sum: np.ndarray, pred_raw: np.ndarray, foreground_area: int) -> tuple[float, float]:
    """ReVOS A and R exactly as VISA's ``eval_revos.py`` computes them on raw uint8 values.

    ``gt_sum`` is the uint8 sum of the expression's object masks (1 per object), and
    ``pred_raw`` the prediction's grayscale values (0/255 for the usual PNGs), so
    ``gt == pred`` never holds on the foreground and ``(1 - gt) * pred`` wraps in uint8:
    the official bug that `--revos-raw` reproduces.
    """
    gt_sum = gt_sum.astype(np.uint8, copy=False)
    pred_raw = pred_raw.astype(np.uint8, copy=False)
    acc = float(np.mean(gt_sum == pred_raw))
    neg = int(((np.uint8(1) - gt_sum) * pred_raw).sum())
    return acc, max(1.0 - neg / (foreground_area + 1e-6), 0.0)


def lvos_variance(j: np.ndarray, f: np.ndarray) -> float:
    """LVOS V of one object: ``sqrt(round(mean((JF - mean JF)^2), 4))`` with JF = (J + F) / 2.

    NaN when the object has no evaluated frame (as the toolkit).
    """
    jfv = (np.asarray(j, dtype=np.float64) + np.asarray(f, dtype=np.float64)) / 2
    if jfv.size == 0:
        return math.nan
    mean = np.nanmean(jfv) if not np.all(np.isnan(jfv)) else math.nan
    var = float(np.nansum((mean - jfv) ** 2) / jfv.size)
    return math.sqrt(round(var, 4))
