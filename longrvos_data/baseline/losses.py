"""ReferMo's training criterion: the public Long-RVOS matcher and ``SetCriterion`` for one referred target.

Each video has one target (the union of the expression's tracks) given as keyframe masks
(B, T, H, W) at the input resolution and ``valid`` (B, T), the keyframes where it is present.
Per decoder layer (the last, each earlier one and the two-stage encoder proposals):

1. `VideoMatcher` picks, per video, the query slot whose cost summed over its terms is
   lowest (one target, so a plain argmin stands in for the Hungarian assignment):
   class cost (focal-style, mean over the *valid* keyframes), L1 and -GIoU of the boxes
   (mean over *all* keyframes), mask focal (mean over all pixels of all keyframes), -dice
   and -projection dice (over all keyframes), with the recipe's weights.
2. `ReferMoCriterion` supervises that slot: class targets are 1 at (valid keyframe, matched
   slot) and 0 everywhere else; boxes and masks of the matched slot in every keyframe (an
   absent keyframe's target is the empty mask and the zero box, as the public dataset
   gives them). Every term is a sum over videos (and keyframes for boxes, all slots and
   keyframes for classes) divided by ``num_boxes``, the number of valid keyframes in the
   batch (averaged over processes when distributed, at least 1).

Masks are compared at the prediction's stride-4 size: the ground truth is subsampled, one
pixel in four starting at offset 2 (the public ``mask_out_stride = 4``, ``start = 2``),
nothing is upsampled. Boxes are cxcywh in [0, 1] of the real (unpadded) frame.

The public code never sees a video whose target is absent from every keyframe (its dataset
redraws such samples); here it is allowed: the class term then pushes every slot down, the
matcher's class cost is 0 and the other terms stay finite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import LossWeights
from .inputs import MASK_STRIDE

if TYPE_CHECKING:
    from .modeling.refermo import ReferMoOutput

MASK_OFFSET = MASK_STRIDE // 2
LOSS_NAMES = ("ce", "bbox", "giou", "mask", "dice", "proj")
BOX_EPS = 1e-6


# ---- boxes -------------------------------------------------------------------------------------

def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre x, centre y, width, height -> x0, y0, x1, y1."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), -1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) x0, y0, x1, y1 -> centre x, centre y, width, height."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), -1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...) area."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def generalized_box_iou(a: Tensor, b: Tensor, *, smooth: bool = False) -> Tensor:
    """Generalised IoU of xyxy boxes, elementwise over broadcast leading dims (``a[:, None], b[None]`` for a matrix).

    ``smooth=False`` is the public criterion's form, ``inter / (union + eps) - (C - union) / (C + eps)``;
    ``smooth=True`` the public matcher's, ``(inter + eps) / (union + eps) - (C - union + eps) / (C + eps)``
    (eps 1e-6, C the enclosing box's area). Degenerate (zero-area) boxes give finite values.

    Raises:
        ValueError: a box with x1 < x0 or y1 < y0.
    """
    for name, box in (("a", a), ("b", b)):
        if not bool((box[..., 2:] >= box[..., :2]).all()):
            raise ValueError(f"generalized_box_iou: boxes {name} are not xyxy with x1 >= x0 and y1 >= y0")
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    enclosing = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    s = BOX_EPS if smooth else 0.0
    return (inter + s) / (union + BOX_EPS) - (enclosing - union + s) / (enclosing + BOX_EPS)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """(..., H, W) bool -> (..., 4) float xyxy in pixels: first and last (inclusive) row and column.

    The public dataset's ``bounding_box`` convention: a one-pixel mask at column x has x0 = x1 = x.
    An empty mask gives the zero box.
    """
    m = masks.bool()
    h, w = m.shape[-2:]
    rows, cols = m.any(-1), m.any(-2)                    # (..., H), (..., W)
    ys = torch.arange(h, device=m.device, dtype=torch.float32)
    xs = torch.arange(w, device=m.device, dtype=torch.float32)
    big = float(max(h, w))

    def first_last(hit: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        first = torch.where(hit, pos, big).amin(-1)
        last = torch.where(hit, pos, -1.0).amax(-1)
        return first, last

    x0, x1 = first_last(cols, xs)
    y0, y1 = first_last(rows, ys)
    boxes = torch.stack((x0, y0, x1, y1), -1)
    return torch.where(rows.any(-1)[..., None], boxes, torch.zeros_like(boxes))


def real_size(pixel_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(..., H, W) True on real pixels, padding at the bottom and right -> real heights and widths (...)."""
    m = pixel_mask.bool()
    return m.any(-1).sum(-1), m.any(-2).sum(-1)


def target_boxes(masks: Tensor, valid: Tensor, pixel_mask: Tensor | None = None) -> Tensor:
    """(B, T, H, W) masks -> (B, T, 4) cxcywh boxes normalised by the real frame size; zeros where not ``valid``."""
    xyxy = masks_to_boxes(masks)
    if pixel_mask is None:
        h = torch.full(masks.shape[:-2], masks.shape[-2], device=masks.device)
        w = torch.full(masks.shape[:-2], masks.shape[-1], device=masks.device)
    else:
        h, w = real_size(pixel_mask)
    scale = torch.stack((w, h, w, h), -1).to(xyxy).clamp(min=1)
    boxes = box_xyxy_to_cxcywh(xyxy) / scale
    return torch.where(valid.bool()[..., None], boxes, torch.zeros_like(boxes))


# ---- per-element terms -----------------------------------------------------------------------

def sigmoid_focal(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Elementwise RetinaNet focal loss of logits against 0/1 targets (no reduction)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_coefficient(probs: Tensor, targets: Tensor) -> Tensor:
    """Smoothed dice over the last dim: ``(2 sum(p t) + 1) / (sum p + sum t + 1)``."""
    return (2 * (probs * targets).sum(-1) + 1) / (probs.sum(-1) + targets.sum(-1) + 1)


# ---- targets ---------------------------------------------------------------------------------

@dataclass
class VideoTargets:
    """The targets at the prediction's scale.

    masks: (B, T, h, w) float, the keyframe masks subsampled to stride 4;
    real: (B, T, h, w) bool, real (unpadded) pixels at stride 4, or None (no padding);
    valid: (B, T) bool; boxes: (B, T, 4) cxcywh in [0, 1] (zeros where not valid);
    num_boxes: the loss normaliser (valid keyframes in the batch, averaged over processes, >= 1).
    """

    masks: Tensor
    real: Tensor | None
    valid: Tensor
    boxes: Tensor
    num_boxes: float


def prepare_targets(masks: Tensor, valid: Tensor, mask_size: tuple[int, int], *,
                    pixel_mask: Tensor | None = None) -> VideoTargets:
    """Check the targets against a (h, w) stride-4 prediction and bring them to its scale.

    Raises:
        ValueError: wrong ranks or shapes, or a frame size that is not 4 x the prediction's.
    """
    if masks.ndim != 4:
        raise ValueError(f"target masks of shape {tuple(masks.shape)}: expected (B, T, H, W)")
    if tuple(valid.shape) != tuple(masks.shape[:2]):
        raise ValueError(f"target valid of shape {tuple(valid.shape)}: expected (B, T) = {tuple(masks.shape[:2])}")
    H, W = masks.shape[-2:]
    h, w = mask_size
    if (H, W) != (MASK_STRIDE * h, MASK_STRIDE * w):
        raise ValueError(f"target masks of {H}x{W} do not match predicted masks of {h}x{w}: the targets must be "
                         f"at the padded input size, {MASK_STRIDE} x the prediction's "
                         f"({MASK_STRIDE * h}x{MASK_STRIDE * w})")
    m = masks.bool()
    real = None
    if pixel_mask is not None:
        if tuple(pixel_mask.shape) != tuple(masks.shape):
            raise ValueError(f"pixel_mask of shape {tuple(pixel_mask.shape)}: expected {tuple(masks.shape)}")
        pm = pixel_mask.bool()
        m = m & pm                                        # nothing of the target lives in the padding
        real = pm[..., MASK_OFFSET::MASK_STRIDE, MASK_OFFSET::MASK_STRIDE]
    v = valid.bool()
    boxes = target_boxes(m, v, pixel_mask)
    small = m[..., MASK_OFFSET::MASK_STRIDE, MASK_OFFSET::MASK_STRIDE].float()
    return VideoTargets(small, real, v, boxes, _num_boxes(v))


def _num_boxes(valid: Tensor) -> float:
    """Valid keyframes in the batch, averaged over processes, at least 1 (the public normaliser)."""
    n = valid.sum().to(torch.float32).reshape(1)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        world = torch.distributed.get_world_size()
    return max(float(n.item()) / world, 1.0)


# ---- matcher ---------------------------------------------------------------------------------

class Prediction(Protocol):
    """One layer's video prediction: ``logits`` (B, T, Q, 1), ``boxes`` (B, T, Q, 4), ``masks`` (B, T, Q, h, w)
    or None (the encoder proposals)."""

    logits: Tensor
    boxes: Tensor
    masks: Tensor | None


@dataclass
class _Layer:
    logits: Tensor
    boxes: Tensor
    masks: Tensor | None = None


class VideoMatcher:
    """The public ``HungarianMatcher`` for one target per video: the slot of least total cost.

    Costs, per video and slot (weights from `LossWeights`): class ``alpha (1-p)^g (-log p) -
    (1-alpha) p^g (-log(1-p))`` averaged over the valid keyframes (0 when there is none);
    L1 and -GIoU (matcher form) of the cxcywh boxes averaged over all keyframes; mask focal
    averaged over every pixel of every keyframe, -dice and -(dice of the row and column
    max-projections) / 2 over all keyframes, on mask logits set to 0 in the padding.
    The mask costs count only when the prediction has masks and the mask or dice weight is > 0.
    """

    def __init__(self, weights: LossWeights | None = None, *, alpha: float = 0.25, gamma: float = 2.0) -> None:
        self.weights = weights or LossWeights()
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def cost(self, pred: Prediction, targets: VideoTargets) -> Tensor:
        """(B, Q) total cost of each slot."""
        wt = self.weights
        p = pred.logits.detach().float()[..., 0].sigmoid()                      # (B, T, Q)
        a, g = self.alpha, self.gamma
        pos = a * (1 - p) ** g * -(p + 1e-8).log()
        neg = (1 - a) * p ** g * -(1 - p + 1e-8).log()
        v = targets.valid.to(p)[..., None]                                        # (B, T, 1)
        cost_class = ((pos - neg) * v).sum(1) / v.sum(1).clamp(min=1)

        boxes = pred.boxes.detach().float()
        tgt = targets.boxes[:, :, None]                                           # (B, T, 1, 4)
        cost_bbox = (boxes - tgt).abs().sum(-1).mean(1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt), smooth=True).mean(1)
        total = wt.ce * cost_class + wt.bbox * cost_bbox + wt.giou * cost_giou

        if pred.masks is not None and (wt.mask > 0 or wt.dice > 0):
            logits = pred.masks.detach().float().transpose(1, 2)                  # (B, Q, T, h, w)
            if targets.real is not None:
                logits = logits.masked_fill(~targets.real[:, None], 0.0)
            tm = targets.masks[:, None]                                           # (B, 1, T, h, w)
            cost_mask = sigmoid_focal(logits, tm.expand_as(logits), a, g).flatten(2).mean(-1)
            cost_dice = -dice_coefficient(logits.sigmoid().flatten(2), tm.flatten(2))
            # max-projections onto the x axis (over rows) and the y axis (over columns)
            proj_x = dice_coefficient(logits.amax(-2).sigmoid().flatten(2), tm.amax(-2).flatten(2))
            proj_y = dice_coefficient(logits.amax(-1).sigmoid().flatten(2), tm.amax(-1).flatten(2))
            cost_proj = -0.5 * (proj_x + proj_y)
            total = total + wt.mask * cost_mask + wt.dice * cost_dice + wt.proj * cost_proj
        return total

    def __call__(self, pred: Prediction, targets: VideoTargets) -> Tensor:
        """(B,) long: the matched slot of each video."""
        return self.cost(pred, targets).argmin(-1)


def match(pred: Prediction, masks: Tensor, valid: Tensor, *, weights: LossWeights | None = None,
          pixel_mask: Tensor | None = None) -> Tensor:
    """(B,) long: each video's matched slot for one layer's prediction (see `VideoMatcher`)."""
    size = tuple(pred.masks.shape[-2:]) if pred.masks is not None else (masks.shape[-2] // MASK_STRIDE,
                                                                          masks.shape[-1] // MASK_STRIDE)
    return VideoMatcher(weights)(pred, prepare_targets(masks, valid, size, pixel_mask=pixel_mask))


# ---- criterion -------------------------------------------------------------------------------

class ReferMoCriterion:
    """ReferMo's training loss, as the public ``SetCriterion`` computes it for one referred target.

    ``criterion(outputs, masks, valid)`` returns the *weighted* terms ``loss_ce``, ``loss_bbox``,
    ``loss_giou``, ``loss_mask``, ``loss_dice``, ``loss_proj`` for the last layer, the same with
    ``_0``, ``_1``, ... for each earlier decoder layer (``outputs.aux``, first layer first) and
    ``loss_ce_interm``, ``loss_bbox_interm``, ``loss_giou_interm`` for the encoder proposals
    (which carry no masks), each layer matched on its own; ``loss`` is their sum.

    Terms (``n`` = num_boxes, the batch's valid keyframes; slot ``s`` the matched one):
    class: focal (``focal_alpha``, gamma 2) over every keyframe and slot, target 1 at the valid
    keyframes of ``s``, summed, / n; L1 (summed over coordinates) and 1 - GIoU of ``s``'s boxes
    in every keyframe, / n; mask: focal (alpha 0.25) averaged over the real pixels of all
    keyframes, dice over all keyframes (padding's probability 0), and the mean of the dice of
    the max-projections onto the x and y axes (on all pixels, padding included, as public),
    each summed over videos, / n. Masks are compared at the prediction's stride-4 size (the
    ground truth subsampled at offset 2, stride 4), never upsampled.

    Args:
        weights: the term (and matcher cost) weights.
        focal_alpha: the class focal loss's alpha (the mask focal loss uses ``mask_focal_alpha``).
        gamma: both focal losses' gamma.
        matcher: defaults to ``VideoMatcher(weights)``.
        absent_boxes: supervise the boxes of keyframes without the target against the zero box, as the
            public code does (True), or leave those keyframes out of the box terms (False).
    """

    def __init__(self, weights: LossWeights | None = None, *, focal_alpha: float = 0.25, gamma: float = 2.0,
                 mask_focal_alpha: float = 0.25, matcher: VideoMatcher | None = None,
                 absent_boxes: bool = True) -> None:
        self.weights = weights or LossWeights()
        self.focal_alpha, self.gamma, self.mask_focal_alpha = focal_alpha, gamma, mask_focal_alpha
        self.matcher = matcher or VideoMatcher(self.weights)
        self.absent_boxes = absent_boxes

    def __call__(self, outputs: ReferMoOutput, masks: Tensor, valid: Tensor, *,
                 pixel_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Weighted terms and their total ``loss``.

        Args:
            outputs: the model's output (``aux_outputs=True`` for the auxiliary and encoder terms).
            masks: (B, T, H, W) bool, the referred target at the padded input size the model saw.
            valid: (B, T) bool, the keyframes where the target is present.
            pixel_mask: (B, T, H, W) bool, True on real pixels (the model's ``pixel_mask``); default all real.
        """
        if outputs.masks.shape[:2] != masks.shape[:2]:
            raise ValueError(f"predicted masks of shape {tuple(outputs.masks.shape)} and target masks of shape "
                             f"{tuple(masks.shape)}: expected the same (B, T)")
        targets = prepare_targets(masks, valid, tuple(outputs.masks.shape[-2:]), pixel_mask=pixel_mask)
        layers: list[tuple[str, Prediction]] = [("", _Layer(outputs.logits, outputs.boxes, outputs.masks))]
        layers += [(f"_{i}", a) for i, a in enumerate(outputs.aux)]
        if outputs.encoder_logits is not None and outputs.encoder_boxes is not None:
            layers.append(("_interm", _Layer(outputs.encoder_logits, outputs.encoder_boxes, None)))
        losses: dict[str, Tensor] = {}
        for suffix, pred in layers:
            slot = self.matcher(pred, targets)
            terms = self.layer_losses(pred, targets, slot)
            losses.update({f"{k}{suffix}": getattr(self.weights, k[len("loss_"):]) * v for k, v in terms.items()})
        losses["loss"] = torch.stack(list(losses.values())).sum()
        return losses

    def layer_losses(self, pred: Prediction, targets: VideoTargets, slot: Tensor) -> dict[str, Tensor]:
        """Unweighted terms of one layer for the matched ``slot`` (B,)."""
        n = targets.num_boxes
        logits = pred.logits.float()[..., 0]                                     # (B, T, Q)
        b, t, q = logits.shape
        onehot = F.one_hot(slot, q).to(logits)[:, None] * targets.valid.to(logits)[..., None]
        out = {"loss_ce": sigmoid_focal(logits, onehot, self.focal_alpha, self.gamma).sum() / n}

        idx = slot.view(b, 1, 1, 1).expand(b, t, 1, 4)
        boxes = pred.boxes.float().gather(2, idx)[:, :, 0]                       # (B, T, 4)
        keep = torch.ones_like(targets.valid) if self.absent_boxes else targets.valid
        keep = keep.to(boxes)
        l1 = (boxes - targets.boxes).abs().sum(-1)
        giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(targets.boxes))
        out["loss_bbox"] = (l1 * keep).sum() / n
        out["loss_giou"] = ((1 - giou) * keep).sum() / n

        if pred.masks is not None:
            h, w = pred.masks.shape[-2:]
            idx = slot.view(b, 1, 1, 1, 1).expand(b, t, 1, h, w)
            m = pred.masks.float().gather(2, idx)[:, :, 0]                       # (B, T, h, w)
            tm = targets.masks
            focal = sigmoid_focal(m, tm, self.mask_focal_alpha, self.gamma)
            probs = m.sigmoid()
            if targets.real is None:
                focal = focal.flatten(1).mean(-1)
            else:
                real = targets.real.to(m)
                focal = (focal * real).flatten(1).sum(-1) / real.flatten(1).sum(-1).clamp(min=1)
                probs = probs * real
            out["loss_mask"] = focal.sum() / n
            out["loss_dice"] = (1 - dice_coefficient(probs.flatten(1), tm.flatten(1))).sum() / n
            proj_x = 1 - dice_coefficient(m.amax(-2).sigmoid().flatten(1), tm.amax(-2).flatten(1))
            proj_y = 1 - dice_coefficient(m.amax(-1).sigmoid().flatten(1), tm.amax(-1).flatten(1))
            out["loss_proj"] = (proj_x.sum() + proj_y.sum()) / (2 * n)
        return out
