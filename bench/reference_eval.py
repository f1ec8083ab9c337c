"""The straightforward per-expression evaluation, written from the official definitions.

This is what the official scripts do (FORMATS.md; DAVIS ``db_eval_iou`` /
``db_eval_boundary`` / ``_seg2bmap``, Long-RVOS ``eval_*.py``, MeViS ``eval_mevis.py``, VISA
``eval_revos.py``, lvos-evaluation): for every expression, decode every ground-truth frame
of its objects again, read every prediction PNG with ``cv2.imread(..., IMREAD_GRAYSCALE)``,
and compute J with full-frame sums and F with full-frame boundary maps dilated by
``cv2.dilate(boundary, disk(r))``. No cropping, no caching, no cleverness: it is the
benchmark's reference and the tests' oracle (``tests/eval`` load it with importlib).

Missing predictions (``missing=``): ``official`` does what each official script does, as
FORMATS.md records it (a missing video scores 0; Long-RVOS: a missing expression folder or
first frame crashes the worker and the expression is lost, a later missing frame is an
empty mask; MeViS: any missing frame loses the expression; ReVOS: any missing frame scores
the expression 0); ``strict`` scores a missing frame as an empty mask and a missing
expression or video as 0. Wrong-sized and unreadable frames are left to the tests'
hand-computed values. ReVOS R divides by the parsed ``mask_dict_foreground.json`` when
``foreground`` is given (its masks summed, as VISA's script), else by the union of the
objects the video's expressions name.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
from pycocotools import mask as coco_mask


# -- the DAVIS measures, full frame ----------------------------------------------------------
def disk(radius: int) -> np.ndarray:
    """skimage ``disk``: ``X**2 + Y**2 <= r**2`` on ``arange(-r, r + 1)``."""
    line = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(line, line)
    return ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.uint8)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS ``_seg2bmap`` for a map of the same size."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def db_eval_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    gt = gt.astype(bool)
    pred = pred.astype(bool)
    inter = np.sum(gt & pred)
    union = np.sum(gt | pred)
    return 1.0 if np.isclose(union, 0) else float(inter / union)


def db_eval_boundary(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> float:
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    fg_boundary = seg2bmap(pred)
    gt_boundary = seg2bmap(gt)
    kernel = disk(int(bound_pix))
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), kernel)
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg = np.sum(fg_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def expression_values(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                      fgs: Sequence[np.ndarray] | None = None, *, raw: bool = False) -> dict[str, Any]:
    """One expression's J, F, tIoU, vIoU (and A, R with ``fgs``) from its frames.

    ``gts`` are uint8 sums of the expression's objects per frame, ``preds`` the grayscale
    predictions, ``fgs`` the union of all the video's objects (ReVOS). ``raw`` keeps the
    official ReVOS A/R on raw values; otherwise predictions are binarised first.
    """
    j = np.array([db_eval_iou(g, p) for g, p in zip(gts, preds)])
    f = np.array([db_eval_boundary(g, p) for g, p in zip(gts, preds)])
    gt_frames = np.array([np.any(g != 0) for g in gts], dtype=bool)
    pred_frames = np.array([np.any(p != 0) for p in preds], dtype=bool)
    inters = gt_frames & pred_frames
    union = (gt_frames | pred_frames).sum()
    if np.isclose(union, 0):
        tiou = viou = 1.0
    else:
        tiou = float(inters.sum() / union)
        viou = float(j[inters].sum() / union)
    out = {"J": float(j.mean()), "F": float(f.mean()), "tIoU": tiou, "vIoU": viou, "j": j, "f": f}
    if fgs is not None:
        accs, robs = [], []
        for g, p, fg in zip(gts, preds, fgs):
            gg = g.astype(np.uint8) if raw else (g != 0).astype(np.uint8)
            pp = p.astype(np.uint8) if raw else (p != 0).astype(np.uint8)
            accs.append(np.mean(gg == pp))
            neg = ((1 - gg) * pp).sum()
            pos = fg.astype(np.uint8).sum() if raw else np.count_nonzero(fg)
            robs.append(max(1 - neg / (pos + 1e-6), 0.0))
        out["A"] = float(np.mean(accs))
        out["R"] = float(np.mean(robs))
    out["J&F"] = (out["J"] + out["F"]) / 2
    return out


def lvos_values(j: np.ndarray, f: np.ndarray) -> dict[str, float]:
    """An LVOS object's J, F (``nanmean``) and V (``sqrt(round(var, 4))``) from its slot arrays."""
    if j.size == 0:
        return {"J": math.nan, "F": math.nan, "J&F": math.nan, "V": math.nan}
    jm, fm = float(np.nanmean(j)), float(np.nanmean(f))
    jf = (j + f) / 2
    var = np.nansum((np.nanmean(jf) - jf) ** 2) / jf.size
    return {"J": jm, "F": fm, "J&F": (jm + fm) / 2, "V": math.sqrt(round(float(var), 4))}


# -- predictions -----------------------------------------------------------------------------
def read_gray(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _pred_frames(pred: Any, video, exp_id: str) -> tuple[list[np.ndarray] | None, list[bool]]:
    """All prediction frames of one expression (None when the video has none) and, per frame,
    whether its prediction is missing."""
    h, w = video.height, video.width
    if isinstance(pred, Mapping):
        if video.video_id not in pred:
            return None, [True] * video.num_frames
        seq = pred[video.video_id].get(exp_id)
        missing = [seq is None or i >= len(seq) for i in range(video.num_frames)]
        seq = seq or []
        out = []
        for i in range(video.num_frames):
            rle = seq[i] if i < len(seq) else None
            if rle is None:
                out.append(np.zeros((h, w), np.uint8))
            else:
                counts = rle["counts"]
                out.append(coco_mask.decode({"size": rle["size"],
                                             "counts": counts.encode() if isinstance(counts, str) else counts}))
        return out, missing
    vdir = Path(pred) / video.video_id
    if not vdir.is_dir():
        return None, [True] * video.num_frames
    out, missing = [], []
    for fr in video.frames:
        m = read_gray(vdir / exp_id / f"{fr.name}.png")
        out.append(np.zeros((h, w), np.uint8) if m is None else m)
        missing.append(m is None)
    return out, missing


def _official_loses(protocol: str, missing: Sequence[bool], folder: bool) -> str | None:
    """What the official script does with an expression's missing frames: None (an empty
    mask, or nothing missing), ``"lost"`` (its worker crashes) or ``"zero"``."""
    if not any(missing):
        return None
    if protocol == "long_rvos":
        return "lost" if not folder or missing[0] else None
    if protocol == "mevis":
        return "lost"
    return "zero"   # ReVOS: the exception is caught and the expression scores 0


# -- per protocol ----------------------------------------------------------------------------
def score_referring(videos: Iterable, pred: Any, *, protocol: str, raw: bool = False, missing: str = "official",
                    foreground: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per expression, re-decoding the ground truth for every expression.

    ``pred`` is a PNG folder or the parsed RLE JSON ``{video: {exp: [RLE | None]}}``;
    ``missing`` is ``official`` or ``strict`` (module docstring); ``foreground`` the parsed
    ``mask_dict_foreground.json`` (ReVOS R). Expressions the official script loses are left out.
    """
    rows = []
    zero = {k: 0.0 for k in ("J", "F", "J&F", "tIoU", "vIoU", "A", "R")}
    if protocol == "revos":
        missing = "official"   # its official handling (0 for any gap) is already strict
    for video in videos:
        referenced = sorted({t for e in video.expressions for t in e.track_ids})
        for e in video.expressions:
            row = {"video_id": video.video_id, "exp_id": e.exp_id, "kind": e.kind}
            preds, absent = _pred_frames(pred, video, e.exp_id)
            if isinstance(pred, Mapping):
                folder = preds is not None and e.exp_id in pred[video.video_id]
            else:
                folder = (Path(pred) / video.video_id / e.exp_id).is_dir()
            if preds is None or (missing == "strict" and not folder):
                rows.append({**row, **zero})
                continue
            if missing == "official":
                fate = _official_loses(protocol, absent, folder)
                if fate == "lost":
                    continue
                if fate == "zero":
                    rows.append({**row, **zero})
                    continue
            gts, fgs = [], []
            for i in range(video.num_frames):
                masks = video.frame_masks(i)   # decoded again for every expression, as the official code
                g = np.zeros((video.height, video.width), np.uint8)
                for t in e.track_ids:
                    if t in masks:
                        g += masks[t].astype(np.uint8)
                gts.append(g)
                if protocol == "revos" and foreground is not None:
                    item = foreground[video.video_id]["masks_rle"][i]
                    fg = np.zeros((video.height, video.width), np.uint8)
                    for rle in item if isinstance(item, list) else [item]:
                        fg += coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
                    fgs.append(fg)
                elif protocol == "revos":
                    fg = np.zeros((video.height, video.width), np.uint8)
                    for t in referenced:
                        if t in masks:
                            fg |= masks[t].astype(np.uint8)
                    fgs.append(fg)
            vals = expression_values(gts, preds, fgs if protocol == "revos" else None, raw=raw)
            row.update({k: v for k, v in vals.items() if k not in ("j", "f")})
            row["_j"], row["_f"] = vals["j"], vals["f"]
            rows.append(row)
    return rows


def lvos_frames(video, track) -> tuple[list[int], list[int], int] | None:
    """``(frame indices, slots, number of slots)`` an LVOS object is scored on, or None (derived)."""
    fr = track.meta.get("frame_range")
    if not fr:
        return None
    start, end, nums = int(fr["start"]), int(fr["end"]), int(fr["frame_nums"])
    index = {int(f.name): i for i, f in enumerate(video.frames)}
    frames, slots = [], []
    for k, n in enumerate(range(start, end, 5)):
        if k == 0 or k == nums - 1:
            continue
        if k - 1 >= max(nums - 2, 0):
            break
        if n in index:
            frames.append(index[n])
            slots.append(k - 1)
    return frames, slots, max(nums - 2, 0)


def score_lvos(videos: Iterable, pred_root: Path, *, unseen: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One row per object; predictions are palette PNGs read with Pillow (pixel = object id)."""
    from PIL import Image

    rows = []
    for video in videos:
        for t in video.tracks:
            spec = lvos_frames(video, t)
            frames = list(range(video.num_frames)) if spec is None else spec[0]
            j, f, present = [], [], []
            for i in frames:
                g = video.frame_masks(i).get(t.track_id)
                g = np.zeros((video.height, video.width), bool) if g is None else g
                path = Path(pred_root) / video.video_id / f"{video.frames[i].name}.png"
                p = np.array(Image.open(path)) == int(t.track_id) if path.is_file() \
                    else np.zeros_like(g)
                j.append(db_eval_iou(g, p))
                f.append(db_eval_boundary(g, p))
                present.append(bool(g.any()))
            j, f = np.array(j), np.array(f)
            if spec is None:
                idx = np.flatnonzero(present)
                sl = slice(int(idx[0]) + 1, int(idx[-1])) if idx.size else slice(0, 0)
                jj, ff = j[sl], f[sl]
            else:
                jj, ff = np.zeros(spec[2]), np.zeros(spec[2])
                jj[spec[1]], ff[spec[1]] = j, f
            row = {"video_id": video.video_id, "track_id": t.track_id, "unseen": video.video_id in unseen}
            row.update(lvos_values(jj, ff))
            rows.append(row)
    return rows


def aggregate(rows: Sequence[Mapping[str, Any]], *, protocol: str) -> tuple[dict, dict]:
    """``(overall, by_kind)`` as each official script prints them (values in [0, 1])."""
    def pooled(rs, metrics):
        out = {m: float(np.mean([r[m] for r in rs])) for m in metrics}
        out["J&F"] = (out["J"] + out["F"]) / 2
        return out

    if protocol in ("long_rvos", "mevis"):
        metrics = ("J", "F", "tIoU", "vIoU") if protocol == "long_rvos" else ("J", "F")
        kinds = sorted({r["kind"] for r in rows})
        return pooled(rows, metrics), {k: pooled([r for r in rows if r["kind"] == k], metrics) for k in kinds}
    if protocol == "revos":
        by_kind = {}
        for k in ("referring", "reasoning"):
            rs = [r for r in rows if r["kind"] == k]
            if rs:
                m = {x: float(np.mean([round(100 * r[x], 2) for r in rs])) / 100 for x in ("J", "F", "A", "R")}
                m["J&F"] = (m["J"] + m["F"]) / 2
                by_kind[k] = m
        groups = list(by_kind.values())
        overall = {x: float(np.mean([g[x] for g in groups])) for x in ("J", "F", "A", "R", "J&F")}
        return overall, by_kind
    if protocol == "lvos":
        out = {}
        for name, flag in (("seen", False), ("unseen", True)):
            rs = [r for r in rows if r["unseen"] == flag and not math.isnan(r["J"])]
            for m in ("J", "F", "V"):
                out[f"{m}_{name}"] = float(np.mean([r[m] for r in rs])) if rs else math.nan
        groups = [n for n in ("seen", "unseen") if not math.isnan(out[f"J_{n}"])]
        for m in ("J", "F", "V"):
            out[m] = float(np.mean([out[f"{m}_{n}"] for n in groups]))
        out["J&F"] = (out["J"] + out["F"]) / 2
        return out, {}
    raise ValueError(protocol)
