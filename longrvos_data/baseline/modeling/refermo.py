"""ReferMo: transformers' GroundingDINO with motion fusion, query pruning, tracking and a temporal decoder.

The detector is transformers' ``GroundingDinoModel`` (Swin backbone, BERT, the
deformable encoder/decoder; their multiscale deformable attention runs as plain PyTorch
``grid_sample`` when no kernel is loaded, so no compiled op is needed), kept under
``self.model`` with transformers' parameter names. ReferMo changes it in three places and
drives its sub-modules with its own forward:

1. every encoder layer becomes a `MotionEncoderLayer` (motion fusion before the
   text-image fusion);
2. LoRA adapters (peft, rank 32, loralib's alpha 1) wrap exactly the linear layers the
   public code's ``_set_lora_linear`` replaced: in the encoder the deformable attention's
   four projections and FFN, the text enhancer's FFN and the six projections of the
   image-text fusion; in the decoder the deformable cross-attention's projections, the FFN
   and the reference-point head. Not the ``nn.MultiheadAttention`` blocks (the public code
   skipped their ``out_proj`` and cannot wrap their packed input projection, which
   transformers splits into query/key/value), not the box head, not the motion blocks;
3. the decoder loop prunes queries after every layer (``ceil(n * 0.5)``: 900 -> 450 -> ...
   -> 15) by the mean of two softmax gates: the attention a query receives from the
   others, and its best similarity to the text.

Frames are processed in chunks of ``config.chunk_size`` keyframes (36) through backbone,
encoder and decoder; the surviving queries of all keyframes are then tracked
(`tracking.track`), refined by the temporal decoder and read out by the class, box and
mask heads over the whole sequence.

Parameter names follow transformers and the public code's own modules, so that
`weights.py` maps checkpoints by rule; `trainable_parameter_names` is the public code's
trainable set (``trainable_keys`` of ``configs/lrvos_swint.yaml``) in these names.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn
from transformers import BertConfig, GroundingDinoConfig, GroundingDinoModel, SwinConfig
from transformers.models.grounding_dino.modeling_grounding_dino import (
    GroundingDinoDecoderLayer,
    GroundingDinoEncoder,
    GroundingDinoMLPPredictionHead,
    encode_sinusoidal_position_embedding,
    generate_masks_with_special_tokens_and_transfer_map,
)

from ..config import ReferMoConfig
from .fusion import MotionEncoderLayer, MotionFusionBlock, MotionInputs, init_deformable_attention
from .heads import FPNPixelDecoder, contrastive_logits, mask_logits
from .temporal import TemporalDecoder
from .tracking import track

LORA_TARGETS = (
    r"encoder\.layers\.\d+\.("
    r"deformable_layer\.(self_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)|fc1|fc2)"
    r"|text_enhancer_layer\.(fc1|fc2)"
    r"|fusion_layer\.attn\.(vision_proj|text_proj|values_vision_proj|values_text_proj|out_vision_proj|out_text_proj))"
    r"|decoder\.(layers\.\d+\.(encoder_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)|fc1|fc2)"
    r"|reference_points_head\.layers\.\d+)"
)
"""Module names (inside ``self.model``) that get LoRA: the public code's LoRA'd linears."""

TRAINABLE_PREFIXES = (
    "model.text_projection.",                                     # feat_map
    "model.backbone.conv_encoder.model.hidden_states_norms.stage1.",  # backbone.0.norm0
    "bbox_embed.", "model.encoder_output_bbox_embed.",            # bbox_embed (decoder and two-stage)
    "model.input_proj_vision.",                                   # input_proj
    "pixel_decoder.", "mask_decoder.", "temporal_decoder.",
)
TRAINABLE_PARTS = (".lora_A.", ".lora_B.", ".motion_fusion.")    # lora, motion


def is_trainable(name: str) -> bool:
    """Whether parameter ``name`` is in ReferMo's trainable set; everything else stays frozen."""
    return name.startswith(TRAINABLE_PREFIXES) or any(part in name for part in TRAINABLE_PARTS)


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def groundingdino_config(config: ReferMoConfig) -> GroundingDinoConfig:
    """The transformers config of ReferMo's detector (Swin + BERT built from the specs, no download)."""
    bb, tx = config.backbone, config.text
    swin = SwinConfig(embed_dim=bb.embed_dim, depths=list(bb.depths), num_heads=list(bb.num_heads),
                      window_size=bb.window_size, image_size=bb.image_size, drop_path_rate=bb.drop_path_rate,
                      out_indices=[2, 3, 4])
    bert = BertConfig(vocab_size=tx.vocab_size, hidden_size=tx.hidden_size, num_hidden_layers=tx.num_hidden_layers,
                      num_attention_heads=tx.num_attention_heads, intermediate_size=tx.intermediate_size,
                      max_position_embeddings=tx.max_position_embeddings)
    return GroundingDinoConfig(
        backbone_config=swin, text_config=bert, d_model=config.d_model, num_queries=config.num_queries,
        encoder_layers=config.encoder_layers, decoder_layers=config.decoder_layers,
        encoder_ffn_dim=config.ffn_dim, decoder_ffn_dim=config.ffn_dim,
        encoder_attention_heads=config.heads, decoder_attention_heads=config.heads,
        num_feature_levels=config.num_feature_levels, encoder_n_points=config.encoder_points,
        decoder_n_points=config.decoder_points, max_text_len=config.max_text_len,
        dropout=config.dropout, attention_dropout=0.0, activation_dropout=0.0, fusion_dropout=0.0,
        fusion_droppath=config.fusion_droppath, text_enhancer_dropout=0.0, two_stage=True,
        embedding_init_target=True, decoder_bbox_embed_share=True, two_stage_bbox_embed_share=False)


def _single_level(gd: GroundingDinoConfig, **changes) -> GroundingDinoConfig:
    """A copy of ``gd`` for the one-level deformable attentions (motion map, mask features)."""
    out = copy.deepcopy(gd)
    out.num_feature_levels = 1
    for key, value in changes.items():
        setattr(out, key, value)
    return out


@dataclass
class TextFeatures:
    """Projected BERT features of the captions: ``features`` (B, L, d), ``valid`` (B, L) bool,
    ``self_mask`` (B, L, L) bool (phrase blocks), ``position_ids`` (B, L)."""

    features: Tensor
    valid: Tensor
    self_mask: Tensor
    position_ids: Tensor

    def per_frame(self, frames: int) -> TextFeatures:
        """Each caption repeated for its ``frames`` keyframes (batch-major, as the frames are)."""
        return TextFeatures(*(x.repeat_interleave(frames, dim=0) for x in
                              (self.features, self.valid, self.self_mask, self.position_ids)))


@dataclass
class FrameOutputs:
    """What the per-keyframe stage keeps for the video stage. N = B * t keyframes, batch-major."""

    hs: list[Tensor]            # per kept decoder layer: (N, Q_l, d), decoder-normed
    boxes: list[Tensor]         # per kept decoder layer: (N, Q_l, 4) the layer's reference boxes
    text: Tensor                # (N, L, d) text after the encoder's fusion
    text_valid: Tensor          # (N, L) bool
    memory: list[Tensor]        # encoder memory at strides 8, 16, 32: (N, d, h, w)
    stride4: Tensor             # (N, C1, H/4, W/4) normalised Swin stage-1 features
    stride4_valid: Tensor       # (N, H/4, W/4) bool
    encoder_logits: Tensor | None = None   # (N, num_queries, 1) two-stage proposals' logits
    encoder_boxes: Tensor | None = None    # (N, num_queries, 4)


@dataclass
class LayerPrediction:
    """One decoder layer's video prediction: ``logits`` (B, T, Q, 1), ``boxes`` (B, T, Q, 4) cxcywh in
    [0, 1], ``masks`` (B, T, Q, H/4, W/4) logits; slot ``q`` is the same tracked object in every keyframe."""

    logits: Tensor
    boxes: Tensor
    masks: Tensor


@dataclass
class ReferMoOutput:
    """The last decoder layer's prediction, plus the earlier layers' and the encoder proposals' when asked.

    Attributes:
        logits, boxes, masks: as `LayerPrediction`, for the last decoder layer.
        query_order: (B, T, Q) long, the keyframe's (pruned) query index tracked into each slot.
        aux: `LayerPrediction` of the earlier decoder layers (``aux_outputs=True``), first layer first.
        encoder_logits, encoder_boxes: (B, T, num_queries, 1 | 4), the two-stage proposals (``aux_outputs=True``).
    """

    logits: Tensor
    boxes: Tensor
    masks: Tensor
    query_order: Tensor
    aux: tuple[LayerPrediction, ...] = field(default_factory=tuple)
    encoder_logits: Tensor | None = None
    encoder_boxes: Tensor | None = None


class ReferMo(nn.Module):
    """The Long-RVOS baseline. Build it with `longrvos_data.baseline.model.build_model`.

    Example:
        >>> from longrvos_data.baseline.config import load_config
        >>> model = ReferMo(load_config("refermo-tiny"))
        >>> len(model.model.encoder.layers), model.config.queries_per_layer()
        (2, [8, 4])
    """

    def __init__(self, config: ReferMoConfig) -> None:
        super().__init__()
        from peft import LoraConfig, inject_adapter_in_model

        self.config = config
        d = config.d_model
        self.gd_config = gd = groundingdino_config(config)
        self.model = GroundingDinoModel(gd)
        swin = self.model.backbone.conv_encoder.model
        # the stride-4 stage's norm (the public backbone.0.norm0): only the pixel decoder reads stage 1
        swin.hidden_states_norms["stage1"] = nn.LayerNorm(config.backbone.embed_dim)

        m = config.motion
        motion_cfg = _single_level(gd)
        layers = self.model.encoder.layers
        for i, layer in enumerate(layers):
            block = MotionFusionBlock(d, m.heads, config.num_feature_levels, msda_config=motion_cfg, points=m.points,
                                      max_frames=m.max_frames, rank=m.rank, gate_init=m.gate_init,
                                      dropout=config.dropout, drop_path=m.drop_path)
            layers[i] = MotionEncoderLayer(layer, block)

        lora = config.lora
        inject_adapter_in_model(LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                           target_modules=LORA_TARGETS, bias="none"), self.model)

        self.bbox_embed = GroundingDinoMLPPredictionHead(d, d, 4, 3)
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        self.temporal_decoder = TemporalDecoder(d, config.heads, config.temporal_layers, config.temporal_ffn_dim,
                                                config.dropout)
        self.pixel_decoder = FPNPixelDecoder(d, [d, d, config.backbone.embed_dim], d)
        mh = config.mask_head
        mask_cfg = _single_level(gd, decoder_n_points=mh.points, decoder_attention_heads=mh.heads,
                                 decoder_ffn_dim=mh.ffn_dim)
        self.mask_decoder = nn.ModuleList(GroundingDinoDecoderLayer(mask_cfg) for _ in range(mh.layers))
        for layer in self.mask_decoder:
            init_deformable_attention(layer.encoder_attn)
        self.register_buffer("special_tokens", torch.tensor(config.text.special_token_ids, dtype=torch.long),
                             persistent=False)
        self.gradient_checkpointing = False
        self.freeze()

    # ---- parameters ------------------------------------------------------------------------

    def trainable_parameter_names(self) -> list[str]:
        """The names in ReferMo's trainable set (feature map, backbone stage-1 norm, box heads, LoRA,
        pixel decoder, mask decoder, motion blocks, temporal decoder, input projections)."""
        return [n for n, _ in self.named_parameters() if is_trainable(n)]

    def freeze(self) -> None:
        """``requires_grad`` exactly per the trainable set; everything else (Swin, BERT, the detector's
        original weights under LoRA) is frozen."""
        for name, param in self.named_parameters():
            param.requires_grad_(is_trainable(name))

    def lora_module_names(self) -> list[str]:
        return [n for n, mod in self.named_modules() if hasattr(mod, "lora_A") and isinstance(mod.lora_A, nn.ModuleDict)]

    # ---- inputs ----------------------------------------------------------------------------

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> TextFeatures:
        """(B, L) token ids (and 1/0 attention mask) -> `TextFeatures` (BERT, then the feature map)."""
        self_mask, position_ids = generate_masks_with_special_tokens_and_transfer_map(input_ids, self.special_tokens)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        valid = attention_mask.bool()
        n = self.config.max_text_len
        input_ids, valid, self_mask, position_ids = input_ids[:, :n], valid[:, :n], self_mask[:, :n, :n], position_ids[:, :n]
        out = self.model.text_backbone(input_ids=input_ids, attention_mask=self_mask[:, None],
                                       token_type_ids=torch.zeros_like(input_ids), position_ids=position_ids,
                                       return_dict=True)
        return TextFeatures(self.model.text_projection(out.last_hidden_state), valid, self_mask, position_ids)

    def _prepare_motion(self, motion: Tensor, valid: Tensor, size: tuple[int, int], pos: Tensor,
                        level_shapes: list[tuple[int, int]]) -> MotionInputs:
        n_img, n = motion.shape[:2]
        if n > self.config.motion.max_frames:
            raise ValueError(f"{n} motion maps per keyframe; this config takes at most {self.config.motion.max_frames}")
        mv = F.interpolate(motion.flatten(0, 1).float(), size=size, mode="bicubic").to(pos.dtype)
        mv = mv.reshape(n_img, n, 2, *size)
        valid = F.interpolate(valid.float(), size=size, mode="nearest").bool()
        ratios = self.model.get_valid_ratio(valid.flatten(0, 1), dtype=pos.dtype)[:, None]
        # a motion map without any vector (no P-frame after the keyframe) has ratio 0: its values are all
        # masked anyway, any finite reference point will do
        ratios = torch.where(ratios > 0, ratios, torch.ones_like(ratios))
        ref = GroundingDinoEncoder.get_reference_points([size], ratios, device=motion.device)
        return MotionInputs(mv, valid, pos.flatten(2).transpose(1, 2), ref, level_shapes)

    # ---- per-keyframe stage --------------------------------------------------------------------

    def backbone_features(self, pixel_values: Tensor) -> tuple[list[Tensor], Tensor]:
        """The Swin features of (N, 3, H, W) frames: the maps at strides 8, 16, 32 and the normed stride-4
        stage. They do not depend on the caption, so one video's expressions can share them."""
        swin = self.model.backbone.conv_encoder.model
        out = swin(pixel_values, output_hidden_states=True, return_dict=True)
        stage1 = out.hidden_states[1]
        stage1 = swin.hidden_states_norms["stage1"](stage1.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return list(out.feature_maps), stage1

    def encode_frames(self, pixel_values: Tensor, pixel_mask: Tensor, text: TextFeatures, motion: Tensor,
                      motion_valid: Tensor, *, layers: list[int], proposals: bool = False,
                      features: tuple[list[Tensor], Tensor] | None = None) -> FrameOutputs:
        """Backbone, motion-fused encoder, two-stage query selection and the pruning decoder for N keyframes.

        Args:
            pixel_values: (N, 3, H, W) normalised frames; pixel_mask: (N, H, W) bool, True on real pixels.
            text: the captions' features, one row per keyframe (`TextFeatures.per_frame`).
            motion: (N, n, 2, h, w) codec motion (stride 16); motion_valid: (N, n, h, w) bool.
            layers: the decoder layers whose queries to keep (the last one, or all for training).
            features: `backbone_features` of ``pixel_values`` when already computed (inference, several captions).
        """
        gd, d = self.model, self.config.d_model
        maps, stage1 = features if features is not None else self.backbone_features(pixel_values)
        maps = list(maps)

        def mask_at(size) -> Tensor:
            return F.interpolate(pixel_mask[None].float(), size=size).bool()[0]

        masks = [mask_at(f.shape[-2:]) for f in maps]
        pos = [gd.backbone.position_embedding(f, m).to(f.dtype) for f, m in zip(maps, masks)]
        srcs = [proj(f) for proj, f in zip(gd.input_proj_vision, maps)]
        for lvl in range(len(srcs), self.config.num_feature_levels):
            src = gd.input_proj_vision[lvl](maps[-1] if lvl == len(maps) else srcs[-1])
            m = mask_at(src.shape[-2:])
            srcs.append(src)
            masks.append(m)
            pos.append(gd.backbone.position_embedding(src, m).to(src.dtype))

        shapes_list = [tuple(s.shape[-2:]) for s in srcs]
        source = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        valid_flat = torch.cat([m.flatten(1) for m in masks], 1)
        lvl_pos = torch.cat([p.flatten(2).transpose(1, 2) + gd.level_embed[i].view(1, 1, -1)
                             for i, p in enumerate(pos)], 1)
        shapes = torch.as_tensor(shapes_list, dtype=torch.long, device=source.device)
        starts = torch.cat((shapes.new_zeros((1,)), shapes.prod(1).cumsum(0)[:-1]))
        ratios = torch.stack([gd.get_valid_ratio(m, dtype=source.dtype) for m in masks], 1)

        motion_in = self._prepare_motion(motion, motion_valid, shapes_list[0], pos[0], shapes_list)

        # encoder: motion fusion, image-text fusion, text enhancer, deformable attention (every layer)
        ref_points = GroundingDinoEncoder.get_reference_points(shapes_list, ratios, device=source.device)
        vision, text_f = source, text.features
        for layer in gd.encoder.layers:
            kwargs = dict(vision_position_embedding=lvl_pos, spatial_shapes=shapes, spatial_shapes_list=shapes_list,
                          level_start_index=starts, key_padding_mask=~valid_flat, reference_points=ref_points,
                          text_features=text_f, text_attention_mask=~text.valid, text_position_embedding=None,
                          text_self_attention_masks=~text.self_mask, text_position_ids=text.position_ids,
                          motion=motion_in)
            if self.gradient_checkpointing and self.training:
                (vision, text_f), _ = torch.utils.checkpoint.checkpoint(
                    lambda v, lyr=layer, kw=kwargs: lyr(v, **kw), vision, use_reentrant=False)
            else:
                (vision, text_f), _ = layer(vision, **kwargs)

        # two-stage: the best-scoring encoder tokens become the decoder's reference boxes
        obj_query, proposals_logit = gd.generate_encoder_output_proposals(vision, ~valid_flat, shapes_list)
        enc_class = gd.encoder_output_class_embed(obj_query, text_f, text.valid)
        enc_coords = gd.encoder_output_bbox_embed(obj_query) + proposals_logit
        top = enc_class.max(-1)[0].topk(self.config.num_queries, dim=1)[1]
        top_coords = enc_coords.gather(1, top[..., None].expand(-1, -1, 4))
        enc_logits = enc_boxes = None
        if proposals:
            enc_logits = contrastive_logits(obj_query.gather(1, top[..., None].expand(-1, -1, d)), text_f, text.valid)
            enc_boxes = top_coords.sigmoid()
        target = gd.query_position_embeddings.weight[None].expand(source.shape[0], -1, -1)
        hs, boxes = self._decode(target, top_coords.detach().sigmoid(), vision, valid_flat, text_f, text.valid,
                                 shapes, shapes_list, starts, ratios, layers)

        memory, start = [], 0
        for h, w in shapes_list[:-1]:
            memory.append(vision[:, start:start + h * w].transpose(1, 2).reshape(vision.shape[0], d, h, w))
            start += h * w
        return FrameOutputs(hs, boxes, text_f, text.valid, memory, stage1, mask_at(stage1.shape[-2:]),
                            enc_logits, enc_boxes)

    def _decode(self, hidden: Tensor, refs: Tensor, memory: Tensor, memory_valid: Tensor, text: Tensor,
                text_valid: Tensor, shapes: Tensor, shapes_list, starts: Tensor, ratios: Tensor,
                layers: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        """The decoder with query pruning; per layer in ``layers``: (normed queries, their reference boxes)."""
        dec = self.model.decoder
        d = self.config.d_model
        text_bias = (~text_valid)[:, None, None, :].to(hidden.dtype) * torch.finfo(hidden.dtype).min
        ratios4 = torch.cat([ratios, ratios], -1)[:, None]
        kept_hs, kept_boxes = [], []
        counts = self.config.queries_per_layer()
        for idx, layer in enumerate(dec.layers):
            ref_in = refs[:, :, None] * ratios4
            query_pos = dec.reference_points_head(encode_sinusoidal_position_embedding(ref_in[:, :, 0], d // 2))
            hidden, self_attn, _, _ = layer(
                hidden_states=hidden, position_embeddings=query_pos, reference_points=ref_in, spatial_shapes=shapes,
                spatial_shapes_list=shapes_list, level_start_index=starts, vision_encoder_hidden_states=memory,
                vision_encoder_attention_mask=memory_valid, text_encoder_hidden_states=text,
                text_encoder_attention_mask=text_bias, output_attentions=True)
            keep = self._select_queries(hidden, self_attn, text, text_valid, counts[idx])
            hidden = hidden.gather(1, keep[..., None].expand(-1, -1, d))
            refs = refs.gather(1, keep[..., None].expand(-1, -1, 4))
            if idx in layers:
                kept_hs.append(dec.layer_norm(hidden))
                kept_boxes.append(refs)
            refs = (self.bbox_embed(hidden) + inverse_sigmoid(refs)).sigmoid().detach()
        return kept_hs, kept_boxes

    @staticmethod
    def _select_queries(hidden: Tensor, self_attn: Tensor, text: Tensor, text_valid: Tensor, count: int) -> Tensor:
        """(N, count) indices of the queries to keep: mean of the received-attention and text gates."""
        att = self_attn.mean(1)                                   # (N, Q, Q), averaged over heads
        att = att * (1 - torch.eye(att.shape[-1], device=att.device, dtype=att.dtype))
        gate_att = att.sum(1).softmax(-1)                         # attention each query receives
        gate_txt = contrastive_logits(hidden, text, text_valid)[..., 0].softmax(-1)
        return ((gate_att + gate_txt) / 2).topk(count, dim=1)[1]

    # ---- video stage ----------------------------------------------------------------------------

    def forward(self, pixel_values: Tensor, input_ids: Tensor, motion: Tensor, *, attention_mask: Tensor | None = None,
                pixel_mask: Tensor | None = None, motion_mask: Tensor | None = None,
                aux_outputs: bool = False) -> ReferMoOutput:
        """Segment the captioned object in every keyframe.

        Args:
            pixel_values: (B, T, 3, H, W) float, ImageNet-normalised keyframes.
            input_ids: (B, L) long, the tokenised captions (one per video; `model.tokenize_captions`).
            motion: (B, T, n, 2, h, w) float, the codec motion of the n frames after each keyframe
                (``Motion.mv`` rows, stride 16: h = ceil(H / 16)).
            attention_mask: (B, L), 1 on real tokens.
            pixel_mask: (B, T, H, W) bool/0-1, True on real pixels (not padding); default all.
            motion_mask: (B, T, n, h, w) bool, True where the motion is real; default all.
            aux_outputs: also return every decoder layer's prediction and the encoder proposals (training).

        Returns:
            `ReferMoOutput`; masks are logits at stride 4.
        """
        b, t = pixel_values.shape[:2]
        self._check_frame_size(*pixel_values.shape[-2:])
        n_layers = self.config.decoder_layers
        layers = list(range(n_layers)) if aux_outputs else [n_layers - 1]
        if pixel_mask is None:
            pixel_mask = torch.ones((b, t, *pixel_values.shape[-2:]), dtype=torch.bool, device=pixel_values.device)
        if motion_mask is None:
            motion_mask = torch.ones((*motion.shape[:3], *motion.shape[-2:]), dtype=torch.bool, device=motion.device)
        if motion.shape[:2] != (b, t) or motion.shape[3] != 2:
            raise ValueError(f"motion of shape {tuple(motion.shape)}: expected (B={b}, T={t}, n, 2, h, w)")
        text = self.encode_text(input_ids, attention_mask)

        chunks: list[FrameOutputs] = []
        step = self.config.chunk_size
        for t0 in range(0, t, step):
            sl = slice(t0, min(t, t0 + step))
            n_t = sl.stop - sl.start
            chunks.append(self.encode_frames(
                pixel_values[:, sl].flatten(0, 1), pixel_mask[:, sl].flatten(0, 1).bool(), text.per_frame(n_t),
                motion[:, sl].flatten(0, 1), motion_mask[:, sl].flatten(0, 1).bool(),
                layers=layers, proposals=aux_outputs))

        def video(parts: list[Tensor]) -> Tensor:
            """Per-chunk (B * t_c, ...) tensors -> (B, T, ...)."""
            return torch.cat([p.reshape(b, -1, *p.shape[1:]) for p in parts], dim=1)

        text_v = video([c.text for c in chunks]).transpose(0, 1)              # (T, B, L, d)
        valid_v = video([c.text_valid for c in chunks]).transpose(0, 1)       # (T, B, L)
        per_layer = [self.video_queries(video([c.hs[k] for c in chunks]).transpose(0, 1),
                                        video([c.boxes[k] for c in chunks]).transpose(0, 1), text_v, valid_v)
                     for k in range(len(layers))]

        masks: list[list[Tensor]] = [[] for _ in layers]
        t0 = 0
        for c in chunks:
            n_t = c.stride4.shape[0] // b
            feats = self.mask_features(c)
            for k, (hs, ref, *_rest) in enumerate(per_layer):
                masks[k].append(self._masks(hs[:, t0:t0 + n_t].flatten(0, 1), ref[:, t0:t0 + n_t].flatten(0, 1),
                                            feats, c.stride4_valid, c.text, c.text_valid))
            t0 += n_t
        preds = [LayerPrediction(logits, coords, video(masks[k]))
                 for k, (_hs, _ref, logits, coords, _order) in enumerate(per_layer)]
        last = preds[-1]
        return ReferMoOutput(
            last.logits, last.boxes, last.masks, per_layer[-1][4], aux=tuple(preds[:-1]),
            encoder_logits=video([c.encoder_logits for c in chunks]) if aux_outputs else None,
            encoder_boxes=video([c.encoder_boxes for c in chunks]) if aux_outputs else None)

    def video_queries(self, hs: Tensor, boxes: Tensor, text: Tensor, text_valid: Tensor) -> tuple[Tensor, ...]:
        """The video stage of one decoder layer's queries: tracking, temporal decoder, class and box heads.

        Args: ``hs`` (T, B, Q, d) and ``boxes`` (T, B, Q, 4) per keyframe, ``text`` (T, B, L, d) and
        ``text_valid`` (T, B, L), the keyframes' fused text.
        Returns ``(hs, ref, logits, coords, order)``, batch-major: (B, T, Q, d), (B, T, Q, 4) reference
        boxes, (B, T, Q, 1), (B, T, Q, 4) predicted boxes, (B, T, Q) long tracked query indices.
        """
        t, b, q = hs.shape[:3]
        tracked = track(hs, boxes, text, text_valid, alpha=self.config.tracking_alpha)
        sentence = text[:, :, 0]                                              # (T, B, d), the [CLS] token
        seq = self.temporal_decoder(tracked.hs.flatten(1, 2), sentence.repeat_interleave(q, dim=1))
        out = seq.reshape(t, b, q, -1).transpose(0, 1)
        ref = tracked.boxes.transpose(0, 1)
        logits = contrastive_logits(out, text.transpose(0, 1), text_valid.transpose(0, 1))
        coords = (self.bbox_embed(out) + inverse_sigmoid(ref)).sigmoid()
        return out, ref, logits, coords, tracked.order.transpose(0, 1)

    def mask_features(self, frames: FrameOutputs) -> Tensor:
        """The stride-4 mask features (N, d, H/4, W/4) of a chunk's keyframes (FPN pixel decoder)."""
        return self.pixel_decoder(frames.memory[2], [frames.memory[1], frames.memory[0], frames.stride4])

    def frame_masks(self, frames: FrameOutputs, hs: Tensor, ref: Tensor) -> Tensor:
        """Mask logits (N, Q, H/4, W/4) of queries ``hs`` (N, Q, d) with reference boxes ``ref`` (N, Q, 4)
        on a chunk's N keyframes (N = B * t, batch-major)."""
        return self._masks(hs, ref, self.mask_features(frames), frames.stride4_valid, frames.text, frames.text_valid)

    def _check_frame_size(self, height: int, width: int) -> None:
        """Refuse frames too small for the model: fewer feature tokens than queries, or a 1x1 coarsest
        level (its GroupNorm needs more than one value)."""
        sizes = []
        h, w = -(-height // 4), -(-width // 4)
        for _ in range(self.config.num_feature_levels):
            h, w = -(-h // 2), -(-w // 2)
            sizes.append((h, w))
        tokens = sum(a * b for a, b in sizes)
        if tokens < self.config.num_queries or sizes[-1] == (1, 1):
            raise ValueError(f"frames of {height}x{width} are too small: {tokens} feature tokens for "
                             f"{self.config.num_queries} queries, coarsest level {sizes[-1][0]}x{sizes[-1][1]} "
                             "(needs more tokens than queries and more than one value at stride 64)")

    def _masks(self, hs: Tensor, ref: Tensor, feats: Tensor, valid: Tensor, text: Tensor, text_valid: Tensor) -> Tensor:
        """Mask logits (N, Q, h4, w4): the deformable mask decoder over the stride-4 features, then a dot product."""
        ratios = self.model.get_valid_ratio(valid, dtype=feats.dtype)
        ref_in = ref * torch.cat([ratios, ratios], -1)[:, None]
        query_pos = self.model.decoder.reference_points_head(
            encode_sinusoidal_position_embedding(ref_in, self.config.d_model // 2))
        h, w = feats.shape[-2:]
        shapes = torch.as_tensor([(h, w)], dtype=torch.long, device=feats.device)
        memory = feats.flatten(2).transpose(1, 2)
        text_bias = (~text_valid)[:, None, None, :].to(hs.dtype) * torch.finfo(hs.dtype).min
        x = hs
        for layer in self.mask_decoder:
            x = layer(hidden_states=x, position_embeddings=query_pos, reference_points=ref_in[:, :, None],
                      spatial_shapes=shapes, spatial_shapes_list=[(h, w)], level_start_index=shapes.new_zeros(1),
                      vision_encoder_hidden_states=memory, vision_encoder_attention_mask=valid.flatten(1),
                      text_encoder_hidden_states=text, text_encoder_attention_mask=text_bias)[0]
        return mask_logits(x, feats)
