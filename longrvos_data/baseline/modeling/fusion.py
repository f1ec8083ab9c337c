"""Motion fusion: codec motion vectors injected into every GroundingDINO encoder layer.

ReferMo's block (``MotionFusionBlock`` in the public ``fuse_modules.py``), rebuilt on
transformers' modules, with the same child names so that the released weights map by
prefix only::

    motion (N, n, 2, h, w) -> in_proj Linear(2 -> d) + the level-0 position embedding
      -> spatial_attention: deformable attention over the motion map (1 level, 4 points)
      -> temporal_attention: self-attention over the n motion maps of a location -> ffn
    per feature level l: motion conv-downsampled (conv_layers[l]); every image token
      attends to the n motion tokens at its location (cross_attentions[l])
    src + drop_path(gamma * relu(up_proj(sigmoid(gate(src)) * down_proj(fused)))^2) -> norm

``gamma`` (the layer scale) starts at 1e-4, so that an untrained block leaves the detector
as it was (up to the final LayerNorm, as in the original).

`MotionEncoderLayer` is how the block sits *in* each encoder layer: a subclass of
transformers' ``GroundingDinoEncoderLayer`` that adopts an existing layer's children (so
their weights and names stay as transformers made them) and adds ``motion_fusion``, run on
the image tokens before the text-image fusion, as in the public encoder loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.grounding_dino.modeling_grounding_dino import (
    GroundingDinoDropPath,
    GroundingDinoEncoderLayer,
    GroundingDinoMLPPredictionHead,
    GroundingDinoMultiscaleDeformableAttention,
)


def init_deformable_attention(attn: GroundingDinoMultiscaleDeformableAttention) -> None:
    """Deformable DETR's initialisation: sampling offsets on a ring per head, uniform weights."""
    with torch.no_grad():
        nn.init.zeros_(attn.sampling_offsets.weight)
        thetas = torch.arange(attn.n_heads, dtype=torch.float32) * (2.0 * math.pi / attn.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(attn.n_heads, 1, 1, 2)
        grid = grid.repeat(1, attn.n_levels, attn.n_points, 1)
        for i in range(attn.n_points):
            grid[:, :, i, :] *= i + 1
        if attn.sampling_offsets.bias.device.type != "meta":
            attn.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(attn.attention_weights.weight)
        nn.init.zeros_(attn.attention_weights.bias)
        nn.init.xavier_uniform_(attn.value_proj.weight)
        nn.init.zeros_(attn.value_proj.bias)
        nn.init.xavier_uniform_(attn.output_proj.weight)
        nn.init.zeros_(attn.output_proj.bias)


class TokenAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections (no q/k/v bias), as the public ``Attention``.

    ``key_padding_mask`` (B, Nk) is True at padding; a query whose keys are all padding gets 0.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.proj):
            nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        b, nq, c = query.shape
        h = self.num_heads
        q = self.q_proj(query).view(b, nq, h, c // h).transpose(1, 2) * self.scale
        k = self.k_proj(key).view(b, key.shape[1], h, c // h).transpose(1, 2)
        v = self.v_proj(value).view(b, value.shape[1], h, c // h).transpose(1, 2)
        attn = q @ k.transpose(-2, -1)
        if key_padding_mask is not None:
            pad = key_padding_mask[:, None, None, :]
            attn = attn.masked_fill(pad, float("-inf")).softmax(-1).masked_fill(pad, 0.0)
        else:
            attn = attn.softmax(-1)
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(b, nq, c)
        return self.proj_drop(self.proj(out))


@dataclass
class MotionInputs:
    """The motion of one chunk of frames, prepared once for every encoder layer.

    Attributes:
        motion: (N, n, 2, h, w) float, resized to the level-0 (stride 8) feature map.
        valid: (N, n, h, w) bool, True where a motion vector exists (not padding).
        pos: (N, h * w, d) the level-0 sine position embedding.
        reference_points: (N * n, h * w, 1, 2) for the spatial deformable attention.
        level_shapes: (height, width) of every image feature level.
    """

    motion: Tensor
    valid: Tensor
    pos: Tensor
    reference_points: Tensor
    level_shapes: list[tuple[int, int]]


class MotionFusionBlock(nn.Module):
    """ReferMo's motion fusion for one encoder layer (see the module docstring)."""

    def __init__(self, d_model: int, num_heads: int, num_levels: int, *, msda_config, points: int = 4,
                 max_frames: int = 11, rank: int = 32, gate_init: float = 1e-4, dropout: float = 0.0,
                 drop_path: float = 0.1) -> None:
        super().__init__()
        self.spatial_attention = GroundingDinoMultiscaleDeformableAttention(msda_config, num_heads=num_heads,
                                                                            n_points=points)
        self.temporal_attention = TokenAttention(d_model, num_heads, dropout)
        self.norm0 = nn.LayerNorm(d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = GroundingDinoMLPPredictionHead(d_model, 4 * d_model, d_model, 2)
        self.temp_pos = nn.Parameter(torch.zeros(max_frames, d_model))
        self.in_proj = nn.Linear(2, d_model)
        self.conv_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(d_model, d_model, kernel_size=1) if lvl == 0 else
                          nn.Conv2d(d_model, d_model, kernel_size=3, stride=2, padding=1),
                          nn.GroupNorm(32, d_model))
            for lvl in range(num_levels))
        self.cross_attentions = nn.ModuleList(TokenAttention(d_model, num_heads, dropout) for _ in range(num_levels))
        self.gate = nn.Linear(d_model, rank, bias=False)
        self.down_proj = nn.Linear(d_model, rank)
        self.up_proj = nn.Linear(rank, d_model)
        self.gate_init = float(gate_init)
        self.gamma = nn.Parameter(torch.empty(d_model))
        self.norm = nn.LayerNorm(d_model)
        self.drop_path = GroundingDinoDropPath(drop_path) if drop_path > 0 else nn.Identity()
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.gate_init)
        nn.init.trunc_normal_(self.temp_pos, std=0.02)
        nn.init.trunc_normal_(self.gate.weight, std=0.02)
        for lin in (self.in_proj, self.down_proj, self.up_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        for conv in self.conv_layers:
            nn.init.xavier_uniform_(conv[0].weight)
            nn.init.zeros_(conv[0].bias)
        init_deformable_attention(self.spatial_attention)

    def encode_motion(self, m: MotionInputs) -> Tensor:
        """(N, n, 2, h, w) motion -> (N * n, d, h, w) motion tokens (spatial, then temporal attention)."""
        x = m.motion
        n_img, n, _, h, w = x.shape
        seq = h * w
        x = self.in_proj(x.permute(0, 1, 3, 4, 2)).reshape(n_img * n, seq, -1)           # (N n, hw, d)
        d = x.shape[-1]
        valid = m.valid.reshape(n_img * n, seq)
        pos = m.pos[:, None].expand(-1, n, -1, -1).reshape(n_img * n, seq, d)
        shapes = torch.as_tensor([(h, w)], dtype=torch.long, device=x.device)
        xt, _ = self.spatial_attention(
            hidden_states=x, attention_mask=valid, encoder_hidden_states=x, position_embeddings=pos,
            reference_points=m.reference_points, spatial_shapes=shapes, spatial_shapes_list=[(h, w)],
            level_start_index=shapes.new_zeros(1))
        x = self.norm0(x + xt)
        # temporal self-attention over the n motion maps of every location
        x = x.reshape(n_img, n, seq, d).transpose(1, 2).reshape(n_img * seq, n, d)
        pad = ~valid.reshape(n_img, n, seq).transpose(1, 2).reshape(n_img * seq, n)
        xt = self.temporal_attention(x + self.temp_pos[:n][None], x, x, key_padding_mask=pad)
        x = self.norm1(x + xt)
        x = self.norm2(x + self.ffn(x))
        return x.reshape(n_img, h, w, n, d).permute(0, 3, 4, 1, 2).reshape(n_img * n, d, h, w)

    def forward(self, src: Tensor, m: MotionInputs) -> Tensor:
        """``src`` (N, S, d) flattened image tokens of all levels -> the same, motion fused in."""
        n_img, n = m.motion.shape[:2]
        motion = self.encode_motion(m)
        fused, start = [], 0
        for lvl, (h, w) in enumerate(m.level_shapes):
            motion = self.conv_layers[lvl](motion)
            if motion.shape[-2:] != (h, w):
                raise ValueError(f"motion map {tuple(motion.shape[-2:])} does not match feature level {lvl} {(h, w)}")
            tokens = motion.reshape(n_img, n, -1, h * w).permute(0, 3, 1, 2).reshape(n_img * h * w, n, -1)
            pad = ~F.interpolate(m.valid.float(), size=(h, w)).bool()                      # (N, n, h, w)
            pad = pad.permute(0, 2, 3, 1).reshape(n_img * h * w, n)
            feat = src[:, start:start + h * w].reshape(n_img * h * w, 1, -1)
            feat = self.cross_attentions[lvl](feat, tokens, tokens, key_padding_mask=pad)
            fused.append(feat.reshape(n_img, h * w, -1))
            start += h * w
        feat = torch.cat(fused, dim=1)
        feat = self.up_proj(torch.sigmoid(self.gate(src)) * self.down_proj(feat))
        feat = self.gamma * torch.square(torch.relu(feat))
        return self.norm(src + self.drop_path(feat))


class MotionEncoderLayer(GroundingDinoEncoderLayer):
    """A transformers encoder layer with ReferMo's motion fusion run first on the image tokens.

    Built from an existing ``GroundingDinoEncoderLayer``: its children (fusion layer, text
    enhancer, deformable layer) and plain attributes are adopted as they are, so parameter
    names are unchanged and ``motion_fusion.*`` is added beside them. ``forward`` takes the
    parent's arguments plus ``motion``; without it the layer is the stock layer.
    """

    def __init__(self, base: GroundingDinoEncoderLayer, motion_fusion: MotionFusionBlock) -> None:
        nn.Module.__init__(self)
        for name, child in base.named_children():
            self.add_module(name, child)
        for key, value in vars(base).items():
            if not key.startswith("_") and key != "training":
                setattr(self, key, value)
        self.motion_fusion = motion_fusion

    def forward(self, vision_features: Tensor, *args, motion: MotionInputs | None = None, **kwargs):
        if motion is not None:
            vision_features = self.motion_fusion(vision_features, motion)
        return super().forward(vision_features, *args, **kwargs)
