"""ReferMo's model: the full-size structure on the meta device, the trainable set, a tiny model on the CPU."""
from __future__ import annotations

import dataclasses
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from fixtures.refermo_keys import read_keys
from longrvos_data.baseline.config import ConfigError, load_config
from longrvos_data.baseline.model import build_model, build_tokenizer, tokenize_captions
from longrvos_data.baseline.modeling.fusion import MotionEncoderLayer, MotionFusionBlock
from longrvos_data.baseline.modeling.tracking import match_queries, track
from longrvos_data.baseline.weights import original_targets, resolve


# The tiny BERT's vocabulary: [CLS] [SEP] . ? at the ids refermo-tiny.yaml names (2, 3, 5, 6).
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "the", "a", "red", "car", "dog", "running",
         "left", "on", "man", "white", "small", "turning", "bird"]
TINY_VOCAB = {w: i for i, w in enumerate(WORDS)}

# The public code's trainable keywords (configs/lrvos_swint.yaml, trainable_keys).
ORIGINAL_TRAINABLE = ("feat_map", "backbone.0.norm0", "bbox_embed", "lora", "pixel_decoder", "mask_decoder",
                      "motion", "temporal", "input_proj")


@pytest.fixture(scope="module")
def full():
    return build_model("refermo-swint", device="meta")


def test_full_size_structure_on_meta(full):
    cfg = full.config
    assert {p.device.type for p in full.parameters()} == {"meta"}
    gd = full.model
    assert len(gd.encoder.layers) == 6 and len(gd.decoder.layers) == 6
    assert gd.query_position_embeddings.weight.shape == (900, 256) and cfg.num_queries == 900
    # a motion block in every encoder layer, run before the text-image fusion
    assert all(isinstance(layer, MotionEncoderLayer) and isinstance(layer.motion_fusion, MotionFusionBlock)
               for layer in gd.encoder.layers)
    block = gd.encoder.layers[3].motion_fusion
    assert block.spatial_attention.n_levels == 1 and block.spatial_attention.n_points == 4
    assert block.gate.out_features == 32 and len(block.conv_layers) == 4
    block.to_empty(device="cpu")
    block._reset_parameters()
    assert torch.equal(block.gamma, torch.full((256,), 1e-4))
    # LoRA rank 32 with loralib's scaling (alpha 1): 14 linears per encoder layer, 6 per decoder layer, 2 in the head
    lora = full.lora_module_names()
    assert len(lora) == 6 * 14 + 6 * 6 + 2
    mods = dict(full.named_modules())
    for name in lora:
        assert mods[name].lora_A["default"].out_features == 32
        assert mods[name].scaling["default"] == pytest.approx(1 / 32)
    assert not any(".motion_fusion." in n or "bbox_embed" in n or ".self_attn.query" in n for n in lora)
    # query pruning: ceil(n / 2) after every decoder layer, 900 -> 15
    assert cfg.queries_per_layer() == [450, 225, 113, 57, 29, 15]
    assert cfg.chunk_size == 36 and cfg.tracking_alpha == 0.1 and len(full.temporal_decoder.layer) == 3
    assert len(full.mask_decoder) == 3 and full.mask_decoder[0].encoder_attn.n_points == 16


def test_trainable_set_is_the_public_codes(full):
    """The original keywords applied to the original names, mapped to ours, give exactly our trainable set."""
    own = full.state_dict()
    expected = set()
    for key, _shape, alias in read_keys("refermo_swint_keys.txt"):
        if alias is None and any(word in key for word in ORIGINAL_TRAINABLE):
            expected.update(resolve(name, own) for name, _, _ in original_targets(key))
    names = full.trainable_parameter_names()
    assert set(names) == expected
    params = dict(full.named_parameters())
    assert all(params[n].requires_grad == (n in expected) for n in params)
    assert not any(n.startswith(("model.text_backbone.", "model.backbone.conv_encoder.model.swin.")) for n in names)
    assert not any(n.endswith(".base_layer.weight") for n in names)


def test_tiny_config_names_and_errors(tmp_path):
    cfg = load_config("refermo-tiny")
    assert cfg.queries_per_layer() == [8, 4]
    with pytest.raises(ConfigError, match="refermo-swint"):
        load_config("refermo-huge")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("refermo-tiny")


def tiny_inputs(model, frames=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    tok = build_tokenizer(TINY_VOCAB)
    text = tokenize_captions(tok, ["the red car turning left", "a dog running"], model.config)
    pixels = torch.randn(2, frames, 3, 96, 96, generator=gen)
    motion = torch.randn(2, frames, 3, 2, 6, 6, generator=gen)          # stride 16: 96 / 16
    motion_mask = torch.ones(2, frames, 3, 6, 6, dtype=torch.bool)
    motion_mask[1, -1, 2] = False                                        # the last keyframe lacks a P-frame
    return pixels, text, motion, motion_mask


def test_tiny_forward_backward_and_frozen_parameters(tiny):
    model = tiny
    model.train()
    pixels, text, motion, motion_mask = tiny_inputs(model)
    calls = []
    from transformers.models.grounding_dino import modeling_grounding_dino as mgd

    hooks = [m.register_forward_hook(lambda *a: calls.append(1))
             for m in model.modules() if isinstance(m, mgd.MultiScaleDeformableAttention)]
    out = model(pixels, text["input_ids"], motion, attention_mask=text["attention_mask"], motion_mask=motion_mask,
                aux_outputs=True)
    for h in hooks:
        h.remove()
    # the deformable attention ran transformers' pure-PyTorch path (no kernel swapped in)
    assert calls and mgd.MultiScaleDeformableAttention.forward.__module__ == mgd.__name__
    q = model.config.queries_per_layer()[-1]
    assert out.logits.shape == (2, 3, q, 1) and out.boxes.shape == (2, 3, q, 4)
    assert out.masks.shape == (2, 3, q, 24, 24) and out.query_order.shape == (2, 3, q)
    assert len(out.aux) == 1 and out.aux[0].logits.shape == (2, 3, 8, 1)
    assert out.encoder_logits.shape == (2, 3, 16, 1) and out.encoder_boxes.shape == (2, 3, 16, 4)
    assert all(torch.isfinite(x).all() for x in (out.logits, out.boxes, out.masks, out.aux[0].masks))
    assert ((out.boxes >= 0) & (out.boxes <= 1)).all()

    names = set(model.trainable_parameter_names())
    params = dict(model.named_parameters())
    assert names and all(params[n].requires_grad == (n in names) for n in params)
    frozen = {n: p.detach().clone() for n, p in params.items() if n not in names}
    trainable = {n: p.detach().clone() for n, p in params.items() if n in names}
    loss = out.logits.sigmoid().mean() + out.boxes.mean() + out.masks.sigmoid().mean() \
        + sum(a.logits.sigmoid().mean() + a.masks.sigmoid().mean() for a in out.aux) \
        + out.encoder_logits.sigmoid().mean() + out.encoder_boxes.mean()
    loss.backward()
    assert all(params[n].grad is None for n in frozen)
    assert all(params[n].grad is not None for n in names)
    moving = {n for n in names if params[n].grad.abs().max() > 0}
    # at random initialisation some gradients are exactly zero (LoRA's A under B = 0, layers before a
    # zero-initialised last layer); the rest must move
    assert len(moving) > len(names) // 2
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)   # every parameter offered
    opt.step()
    assert all(torch.equal(params[n], before) for n, before in frozen.items())
    assert all(not torch.equal(params[n], trainable[n]) for n in moving)
    model.zero_grad(set_to_none=True)


def test_chunks_of_keyframes_give_the_same_prediction(tiny):
    model = tiny.eval()
    pixels, text, motion, motion_mask = tiny_inputs(model, frames=3, seed=2)
    with torch.no_grad():
        chunked = model(pixels, text["input_ids"], motion, attention_mask=text["attention_mask"],
                        motion_mask=motion_mask)
        config = model.config
        model.config = dataclasses.replace(config, chunk_size=36)
        try:
            whole = model(pixels, text["input_ids"], motion, attention_mask=text["attention_mask"],
                          motion_mask=motion_mask)
        finally:
            model.config = config
    assert config.chunk_size == 2
    for a, b in ((chunked.logits, whole.logits), (chunked.boxes, whole.boxes), (chunked.masks, whole.masks)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert torch.equal(chunked.query_order, whole.query_order)


def test_motion_changes_the_features_through_the_gate(tiny):
    """With the layer scale at 1e-4 motion barely moves the output; scaled up, it does."""
    model = tiny.eval()
    pixels, text, motion, _ = tiny_inputs(model, frames=2, seed=3)
    block = model.model.encoder.layers[0].motion_fusion
    with torch.no_grad():
        a = model(pixels, text["input_ids"], motion, attention_mask=text["attention_mask"]).boxes
        b = model(pixels, text["input_ids"], motion * 3, attention_mask=text["attention_mask"]).boxes
        saved = block.gamma.clone()
        block.gamma.fill_(1.0)
        try:
            c = model(pixels, text["input_ids"], motion * 3, attention_mask=text["attention_mask"]).boxes
        finally:
            block.gamma.copy_(saved)
    assert (a - b).abs().max() < 1e-2
    assert (a - c).abs().max() > (a - b).abs().max()


def test_tracking_recovers_permuted_queries():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 6, 8, generator=gen)
    perms = [torch.arange(6), torch.tensor([3, 0, 5, 1, 2, 4]), torch.tensor([5, 4, 3, 2, 1, 0])]
    hs = torch.stack([base[:, p] + 0.01 * torch.randn(1, 6, 8, generator=gen) for p in perms])   # (T, B, Q, d)
    boxes = torch.stack([torch.arange(6.0)[p][None, :, None].expand(1, 6, 4) for p in perms])
    text = torch.randn(3, 1, 4, 8, generator=gen)
    valid = torch.ones(3, 1, 4, dtype=torch.bool)
    out = track(hs, boxes, text, valid, alpha=0.1)
    for t in range(3):
        assert torch.equal(out.boxes[t, 0, :, 0], torch.arange(6.0))     # slot i holds query i everywhere
        assert torch.equal(perms[t][out.order[t, 0]], torch.arange(6))
    assert match_queries(base, base[:, perms[1]]).tolist() == [torch.argsort(perms[1]).tolist()]


def test_tokenizer_must_match_the_configs_special_tokens():
    cfg = load_config("refermo-tiny")
    shifted = {w: i + 1 for w, i in TINY_VOCAB.items()}
    with pytest.raises(ConfigError, match="special_token_ids"):
        tokenize_captions(build_tokenizer(shifted), ["a dog"], cfg)
    ids = tokenize_captions(build_tokenizer(TINY_VOCAB), ["a dog", "the red car."], cfg)["input_ids"]
    assert ids[0].tolist()[:5] == [2, 8, 11, 5, 3] and ids[1].tolist() == [2, 7, 9, 10, 5, 3]


def test_small_images_are_refused_with_a_reason(tiny):
    pixels = torch.randn(1, 1, 3, 16, 16)
    motion = torch.zeros(1, 1, 3, 2, 1, 1)
    ids = torch.tensor([[2, 11, 5, 3]])
    with torch.no_grad(), pytest.raises(ValueError, match=re.escape("16x16 are too small: 7 feature tokens for 16")):
        tiny.eval()(pixels, ids, motion)
