"""ReferMo's criterion: box helpers, the one-target matcher and every loss term against hand computations."""
from __future__ import annotations

import dataclasses
import math

import pytest

torch = pytest.importorskip("torch")

from longrvos_data.baseline.losses import (
    LossWeights,
    ReferMoCriterion,
    VideoMatcher,
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    masks_to_boxes,
    match,
    prepare_targets,
    target_boxes,
)

LN2 = math.log(2)
FOCAL_POS_AT_HALF = 0.25 * 0.25 * LN2    # alpha (1 - p)^2 (-log p) at p = 0.5
FOCAL_NEG_AT_HALF = 0.75 * 0.25 * LN2    # (1 - alpha) p^2 (-log(1 - p)) at p = 0.5


@dataclasses.dataclass
class Out:
    """Stands in for `ReferMoOutput` (same fields) so that tests need no model."""

    logits: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    query_order: torch.Tensor | None = None
    aux: tuple = ()
    encoder_logits: torch.Tensor | None = None
    encoder_boxes: torch.Tensor | None = None


# ---- boxes -----------------------------------------------------------------------------------

def test_box_conversions_by_hand():
    c = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.0, 0.2]])
    x = box_cxcywh_to_xyxy(c)
    assert torch.allclose(x, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.1, 0.8, 0.1, 1.0]]))
    assert torch.allclose(box_xyxy_to_cxcywh(x), c)
    assert box_cxcywh_to_xyxy(torch.zeros(2, 3, 4)).shape == (2, 3, 4)


def test_generalized_iou_by_hand():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 1, 1]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 1, 1], [2, 2, 3, 3]])
    # overlap 1, union 7, enclosing 9 | identical | disjoint: union 2, enclosing 9
    expected = torch.tensor([1 / 7 - 2 / 9, 1.0, -7 / 9])
    assert torch.allclose(generalized_box_iou(a, b), expected, atol=1e-5)
    assert torch.allclose(generalized_box_iou(a, b, smooth=True), expected, atol=1e-5)
    matrix = generalized_box_iou(a[:, None], b[None])
    assert matrix.shape == (3, 3)
    assert matrix[0, 0] == pytest.approx(1 / 7 - 2 / 9, abs=1e-5) and matrix[2, 1] == pytest.approx(1.0, abs=1e-5)
    zero = torch.zeros(1, 4)
    assert torch.isfinite(generalized_box_iou(zero, zero)).all()
    # a box against the zero box at the origin (the target of an absent keyframe): 0 - (0.36 - 0.04) / 0.36
    giou = generalized_box_iou(torch.tensor([0.4, 0.4, 0.6, 0.6]), torch.zeros(4))
    assert giou.item() == pytest.approx(-8 / 9, abs=1e-5)
    with pytest.raises(ValueError, match="x1 >= x0"):
        generalized_box_iou(torch.tensor([[0.5, 0, 0.4, 1]]), zero)


def test_masks_to_boxes_by_hand():
    m = torch.zeros(3, 5, 6, dtype=torch.bool)
    m[0, 1:3, 3:6] = True                    # rows 1..2, columns 3..5
    m[1, 4, 0] = True                        # one pixel at x = 0, y = 4
    boxes = masks_to_boxes(m)
    assert boxes.tolist() == [[3, 1, 5, 2], [0, 4, 0, 4], [0, 0, 0, 0]]
    assert masks_to_boxes(m.reshape(3, 1, 5, 6)).shape == (3, 1, 4)


def test_target_boxes_normalised_by_the_real_frame():
    m = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    m[0, 0, 0:4, 2:6] = True                 # xyxy (2, 0, 5, 3): cxcywh (3.5, 1.5, 3, 3) pixels
    m[0, 1, 5, 5] = True                     # present in the mask but not valid: zero box
    valid = torch.tensor([[True, False]])
    boxes = target_boxes(m, valid)
    assert torch.allclose(boxes[0, 0], torch.tensor([3.5, 1.5, 3, 3]) / 8)
    assert boxes[0, 1].tolist() == [0, 0, 0, 0]
    pixel_mask = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    pixel_mask[..., :8, :6] = True           # a frame 6 wide padded to 8
    boxes = target_boxes(m, valid, pixel_mask)
    assert torch.allclose(boxes[0, 0], torch.tensor([3.5 / 6, 1.5 / 8, 3 / 6, 3 / 8]))


# ---- weights ---------------------------------------------------------------------------------

def test_loss_weights_defaults_are_the_recipe():
    w = LossWeights()
    assert w.as_dict() == {"loss_ce": 2.0, "loss_bbox": 1.0, "loss_giou": 1.0, "loss_mask": 5.0, "loss_dice": 5.0,
                           "loss_proj": 2.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.ce = 1.0
    assert LossWeights(ce=1).ce == 1.0 and isinstance(LossWeights(ce=1).ce, float)
    for bad in (-1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="LossWeights.dice"):
            LossWeights(dice=bad)


# ---- a small hand-computed case ----------------------------------------------------------------

def small_case(q: int = 2):
    """B=1, T=2 (keyframe 1 absent), 8x8 frames -> 2x2 predicted masks; every logit 0 (p = 0.5).

    The target is the block rows 2..3, columns 2..3 of keyframe 0: box xyxy (2, 2, 3, 3) px ->
    cxcywh (0.3125, 0.3125, 0.125, 0.125); at stride 4 (offset 2) only pixel (0, 0) is set.
    Slot 1's boxes are near the target, slot 0's far.
    """
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, 2:4, 2:4] = True
    valid = torch.tensor([[True, False]])
    boxes = torch.zeros(1, 2, q, 4)
    boxes[..., :] = torch.tensor([0.8, 0.8, 0.1, 0.1])
    boxes[0, 0, 1] = torch.tensor([0.3125, 0.3125, 0.25, 0.25])
    boxes[0, 1, 1] = torch.tensor([0.5, 0.5, 0.2, 0.2])
    out = Out(torch.zeros(1, 2, q, 1), boxes, torch.zeros(1, 2, q, 2, 2))
    return out, masks, valid


# slot 1's terms, unweighted, num_boxes = 1
HAND = {
    # 1 positive (keyframe 0, slot 1) and 3 negatives
    "loss_ce": FOCAL_POS_AT_HALF + 3 * FOCAL_NEG_AT_HALF,
    # keyframe 0: 0.125 + 0.125; keyframe 1 against the zero box: 0.5 + 0.5 + 0.2 + 0.2
    "loss_bbox": 0.25 + 1.4,
    # keyframe 0: target inside the box, IoU = GIoU = 0.25; keyframe 1: GIoU = -8/9 against the zero box
    "loss_giou": (1 - 0.25) + (1 + 8 / 9),
    # 8 pixels at stride 4, one positive
    "loss_mask": (FOCAL_POS_AT_HALF + 7 * FOCAL_NEG_AT_HALF) / 8,
    # 1 - (2 * 0.5 * 1 + 1) / (0.5 * 8 + 1 + 1)
    "loss_dice": 1 - 2 / 6,
    # each projection: 4 entries at 0.5, one positive: 1 - (1 + 1) / (2 + 1 + 1)
    "loss_proj": 0.5,
}


def test_each_term_against_a_hand_computation():
    out, masks, valid = small_case()
    losses = ReferMoCriterion()(out, masks, valid)
    weights = LossWeights().as_dict()
    assert set(losses) == set(HAND) | {"loss"}
    for name, value in HAND.items():
        assert losses[name].item() == pytest.approx(weights[name] * value, rel=1e-4, abs=1e-5), name
    assert losses["loss"].item() == pytest.approx(sum(weights[k] * v for k, v in HAND.items()), rel=1e-4)
    # the absent keyframe left out of the box terms
    losses = ReferMoCriterion(absent_boxes=False)(out, masks, valid)
    assert losses["loss_bbox"].item() == pytest.approx(0.25, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0.75, abs=1e-5)


def test_weights_scale_their_terms():
    out, masks, valid = small_case()
    losses = ReferMoCriterion(LossWeights(ce=0, bbox=3, giou=1, mask=1, dice=1, proj=1))(out, masks, valid)
    assert losses["loss_ce"].item() == 0
    assert losses["loss_bbox"].item() == pytest.approx(3 * HAND["loss_bbox"], rel=1e-5)
    assert losses["loss_mask"].item() == pytest.approx(HAND["loss_mask"], rel=1e-5)


def test_matcher_cost_against_a_hand_computation():
    out, masks, valid = small_case()
    targets = prepare_targets(masks, valid, (2, 2))
    cost = VideoMatcher().cost(out, targets)
    assert cost.shape == (1, 2)
    # slot 1, every cost with the recipe's weights; class averaged over the one valid keyframe,
    # boxes over both keyframes, masks over all 8 pixels
    expected = (2 * (FOCAL_POS_AT_HALF - FOCAL_NEG_AT_HALF)
                + 1 * (0.25 + 1.4) / 2
                - 1 * (0.25 - 8 / 9) / 2
                + 5 * HAND["loss_mask"]
                - 5 * (2 / 6)
                - 2 * 0.5 * (0.5 + 0.5))
    assert cost[0, 1].item() == pytest.approx(expected, rel=1e-4)
    assert match(out, masks, valid).tolist() == [1]


def test_matcher_follows_the_public_frame_rules():
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, 0:8, 0:8] = True
    valid = torch.tensor([[True, False]])
    boxes = torch.full((1, 2, 2, 4), 0.5)
    # the class cost counts the valid keyframes only: slot 0 is confident where the target is
    logits = torch.tensor([[[[4.0], [-4.0]], [[-4.0], [4.0]]]])
    out = Out(logits, boxes, torch.zeros(1, 2, 2, 2, 2))
    assert match(out, masks, valid).tolist() == [0]
    # the box cost counts every keyframe: slot 1 is nearer the zero box of the absent keyframe
    boxes = torch.full((1, 2, 2, 4), 0.5)
    boxes[0, 1, 1] = torch.tensor([0.05, 0.05, 0.1, 0.1])
    out = Out(torch.zeros(1, 2, 2, 1), boxes, torch.zeros(1, 2, 2, 2, 2))
    assert match(out, masks, valid).tolist() == [1]


def test_matcher_picks_each_videos_slot():
    gen = torch.Generator().manual_seed(0)
    b, t, q, size = 2, 3, 4, 16
    masks = torch.zeros(b, t, size, size, dtype=torch.bool)
    masks[0, :, 2:10, 4:12] = True
    masks[1, :, 8:16, 0:6] = True
    valid = torch.ones(b, t, dtype=torch.bool)
    targets = prepare_targets(masks, valid, (4, 4))
    mask_logits = torch.randn(b, t, q, 4, 4, generator=gen)
    boxes = torch.rand(b, t, q, 4, generator=gen) * 0.5 + 0.25
    logits = torch.randn(b, t, q, 1, generator=gen)
    for video, slot in ((0, 2), (1, 0)):
        mask_logits[video, :, slot] = targets.masks[video] * 8 - 4
        boxes[video, :, slot] = targets.boxes[video]
        logits[video, :, slot] = 3.0
    out = Out(logits, boxes, mask_logits)
    assert VideoMatcher()(out, targets).tolist() == [2, 0]
    assert match(out, masks, valid).tolist() == [2, 0]


def test_targets_are_subsampled_at_offset_two():
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, 0, 0] = True                 # not on the stride-4 grid that starts at 2
    masks[0, 1, 6, 2] = True                 # on it: small (1, 0)
    t = prepare_targets(masks, torch.ones(1, 2, dtype=torch.bool), (2, 2))
    assert t.masks[0, 0].sum() == 0
    assert t.masks[0, 1].tolist() == [[0, 0], [1, 0]]
    with pytest.raises(ValueError, match="4 x the prediction"):
        prepare_targets(torch.zeros(1, 2, 10, 8, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool), (2, 2))
    with pytest.raises(ValueError, match="valid"):
        prepare_targets(masks, torch.ones(1, 3, dtype=torch.bool), (2, 2))


# ---- properties --------------------------------------------------------------------------------

def perfect_case():
    b, t, q, size = 1, 3, 3, 16
    masks = torch.zeros(b, t, size, size, dtype=torch.bool)
    masks[0, 0, 2:11, 2:7] = True
    masks[0, 1, 4:15, 6:13] = True
    masks[0, 2, 0:8, 0:16] = True
    valid = torch.ones(b, t, dtype=torch.bool)
    targets = prepare_targets(masks, valid, (4, 4))
    logits = torch.full((b, t, q, 1), -30.0)
    logits[0, :, 2] = 30.0
    boxes = torch.full((b, t, q, 4), 0.5)
    boxes[0, :, 2] = targets.boxes[0]
    mask_logits = torch.full((b, t, q, 4, 4), -30.0)
    mask_logits[0, :, 2] = targets.masks[0] * 60 - 30
    return Out(logits, boxes, mask_logits), masks, valid


def test_a_perfect_prediction_costs_nearly_nothing():
    out, masks, valid = perfect_case()
    assert match(out, masks, valid).tolist() == [2]
    losses = ReferMoCriterion()(out, masks, valid)
    for name in ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice", "loss_proj"):
        assert 0 <= losses[name].item() < 1e-4, name
    # the same prediction in the wrong slot costs a lot
    wrong = Out(out.logits, out.boxes.roll(1, dims=2), out.masks.roll(1, dims=2))
    assert ReferMoCriterion()(wrong, masks, valid)["loss"].item() > 5


def test_an_absent_target_gives_finite_losses_that_push_every_slot_down():
    gen = torch.Generator().manual_seed(3)
    b, t, q = 2, 3, 4
    logits = torch.randn(b, t, q, 1, generator=gen, requires_grad=True)
    boxes = torch.rand(b, t, q, 4, generator=gen).mul(0.5).add(0.2).requires_grad_()
    mask_logits = torch.randn(b, t, q, 4, 4, generator=gen, requires_grad=True)
    masks = torch.zeros(b, t, 16, 16, dtype=torch.bool)
    valid = torch.zeros(b, t, dtype=torch.bool)
    out = Out(logits, boxes, mask_logits, encoder_logits=logits * 2, encoder_boxes=boxes)
    losses = ReferMoCriterion()(out, masks, valid)
    assert all(torch.isfinite(v) for v in losses.values())
    assert prepare_targets(masks, valid, (4, 4)).num_boxes == 1.0
    # no positive anywhere: the class terms' gradient lowers every logit of every slot
    (losses["loss_ce"] + losses["loss_ce_interm"]).backward()
    assert (logits.grad > 0).all()


def test_normalised_by_the_batchs_valid_keyframes():
    gen = torch.Generator().manual_seed(5)
    b, t, q = 2, 4, 3
    masks = torch.zeros(b, t, 16, 16, dtype=torch.bool)
    masks[0, :2, 3:9, 2:14] = True
    masks[1, 1, 6:16, 0:5] = True
    valid = masks.flatten(2).any(-1)                                   # 2 and 1 valid keyframes
    out = Out(torch.randn(b, t, q, 1, generator=gen), torch.rand(b, t, q, 4, generator=gen) * 0.6 + 0.2,
              torch.randn(b, t, q, 4, 4, generator=gen))
    crit = ReferMoCriterion()
    both = crit(out, masks, valid)
    single = [crit(Out(out.logits[i:i + 1], out.boxes[i:i + 1], out.masks[i:i + 1]), masks[i:i + 1],
                   valid[i:i + 1]) for i in range(b)]
    counts = valid.sum(1).tolist()
    for name in HAND:
        expected = sum(s[name].item() * n for s, n in zip(single, counts)) / sum(counts)
        assert both[name].item() == pytest.approx(expected, rel=1e-5), name
    # a batch of the same video twice gives the one video's losses
    twice = crit(Out(out.logits[:1].repeat(2, 1, 1, 1), out.boxes[:1].repeat(2, 1, 1, 1),
                     out.masks[:1].repeat(2, 1, 1, 1, 1)), masks[:1].repeat(2, 1, 1, 1), valid[:1].repeat(2, 1))
    assert twice["loss"].item() == pytest.approx(single[0]["loss"].item(), rel=1e-5)


def test_padding_is_left_out_of_mask_and_dice_but_not_projection():
    out, masks, valid = perfect_case()
    pixel_mask = torch.zeros_like(masks)
    pixel_mask[..., :, :12] = True           # 12 real columns: stride-4 column 3 (pixel 14) is padding
    masks = masks & pixel_mask
    crit = ReferMoCriterion()
    base = crit(out, masks, valid, pixel_mask=pixel_mask)
    noisy = Out(out.logits, out.boxes, out.masks.clone())
    noisy.masks[..., 3] = 5.0
    changed = crit(noisy, masks, valid, pixel_mask=pixel_mask)
    for name in ("loss_mask", "loss_dice"):
        assert changed[name].item() == pytest.approx(base[name].item(), rel=1e-6, abs=1e-9), name
    assert changed["loss_proj"].item() > base["loss_proj"].item() + 0.05
    assert crit(noisy, masks, valid)["loss_mask"].item() > base["loss_mask"].item() + 0.01
    # boxes normalised by the 12 real columns
    t = prepare_targets(masks, valid, (4, 4), pixel_mask=pixel_mask)
    xyxy = masks_to_boxes(masks[0, 0])
    assert t.boxes[0, 0, 0].item() == pytest.approx((xyxy[0] + xyxy[2]).item() / 2 / 12)


# ---- the tiny model ------------------------------------------------------------------------------

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "the", "a", "red", "car", "dog", "running",
         "left", "on", "man", "white", "small", "turning", "bird"]


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from longrvos_data.baseline.model import build_model

    torch.manual_seed(0)
    return build_model("refermo-tiny")


def tiny_batch(model, frames=3):
    from longrvos_data.baseline.model import build_tokenizer, tokenize_captions

    gen = torch.Generator().manual_seed(7)
    tok = build_tokenizer({w: i for i, w in enumerate(WORDS)})
    text = tokenize_captions(tok, ["the red car turning left", "a dog running"], model.config)
    pixels = torch.randn(2, frames, 3, 96, 96, generator=gen)
    motion = torch.randn(2, frames, 3, 2, 6, 6, generator=gen)
    masks = torch.zeros(2, frames, 96, 96, dtype=torch.bool)
    masks[0, 0, 10:50, 20:70] = True
    masks[0, 1, 14:56, 24:80] = True
    masks[1, 1, 40:90, 0:30] = True
    masks[1, 2, 44:96, 2:34] = True
    return pixels, text, motion, masks, masks.flatten(2).any(-1)


def test_tiny_model_gradients_reach_the_trainable_parameters(tiny):
    model = tiny.train()
    pixels, text, motion, masks, valid = tiny_batch(model)
    out = model(pixels, text["input_ids"], motion, attention_mask=text["attention_mask"], aux_outputs=True)
    losses = ReferMoCriterion()(out, masks, valid)
    terms = ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice", "loss_proj")
    expected = set(terms) | {f"{k}_0" for k in terms} | {"loss_ce_interm", "loss_bbox_interm", "loss_giou_interm",
                                                         "loss"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    assert losses["loss"].item() == pytest.approx(sum(v.item() for k, v in losses.items() if k != "loss"), rel=1e-5)
    model.zero_grad(set_to_none=True)
    losses["loss"].backward()
    names = set(model.trainable_parameter_names())
    params = dict(model.named_parameters())
    assert all(params[n].grad is None for n in params if n not in names)
    moving = {n for n in names if params[n].grad is not None and params[n].grad.abs().max() > 0}
    assert len(moving) > len(names) // 2
    for prefix in ("bbox_embed.", "mask_decoder.", "pixel_decoder.", "temporal_decoder.", "model.input_proj_vision.",
                   "model.encoder_output_bbox_embed."):
        assert any(n.startswith(prefix) for n in moving), prefix
    model.zero_grad(set_to_none=True)

    # without aux_outputs: the last layer's terms only
    with torch.no_grad():
        out = model.eval()(pixels, text["input_ids"], motion, attention_mask=text["attention_mask"])
    losses = ReferMoCriterion()(out, masks, valid)
    assert set(losses) == set(terms) | {"loss"}
    with pytest.raises(ValueError, match="4 x the prediction"):
        ReferMoCriterion()(out, masks[..., :92], valid)
