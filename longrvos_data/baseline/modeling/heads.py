"""ReferMo's heads: text-contrastive class logits, the FPN pixel decoder and the deformable mask decoder.

- Class: a query's logit is its largest dot product with the (fused) text tokens, as
  GroundingDINO's ``ContrastiveEmbed`` followed by ReferMo's max over tokens (one class:
  "the referred object").
- Boxes: a shared 3-layer MLP predicting a delta on the query's reference box (the
  decoder's ``bbox_embed``), see `refermo.py`.
- Masks: `FPNPixelDecoder` turns the encoder memory (strides 32, 16, 8) and the Swin
  stride-4 features into stride-4 mask features; the mask decoder (3 transformers
  ``GroundingDinoDecoderLayer``: query self-attention, text cross-attention, deformable
  attention over the single mask-feature level with 16 points) refines each query into a
  mask embedding; mask logits are its dot product with the mask features.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def contrastive_logits(hs: Tensor, text: Tensor, text_valid: Tensor) -> Tensor:
    """(..., Q, d) queries x (..., L, d) text -> (..., Q, 1): max over valid tokens of the dot product."""
    sim = hs @ text.transpose(-1, -2)
    sim = sim.masked_fill(~text_valid[..., None, :], float("-inf"))
    return sim.max(-1, keepdim=True)[0]


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm(8) as the public pixel decoder, fewer groups where a tiny config has fewer channels."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class FPNPixelDecoder(nn.Module):
    """The public ``FPNSpatialDecoder``: coarse-to-fine convs with lateral adapters, to ``mask_dim`` channels.

    ``forward(x (N, d, h32, w32), [f16 (N, d), f8 (N, d), f4 (N, C1)]) -> (N, mask_dim, h4, w4)``.
    """

    def __init__(self, context_dim: int, fpn_dims: list[int], mask_dim: int) -> None:
        super().__init__()
        inter = [context_dim, context_dim // 2, context_dim // 4, context_dim // 8, context_dim // 16]
        self.lay1 = nn.Conv2d(context_dim, inter[0], 3, padding=1)
        self.gn1 = _group_norm(inter[0])
        self.lay2 = nn.Conv2d(inter[0], inter[1], 3, padding=1)
        self.gn2 = _group_norm(inter[1])
        self.lay3 = nn.Conv2d(inter[1], inter[2], 3, padding=1)
        self.gn3 = _group_norm(inter[2])
        self.lay4 = nn.Conv2d(inter[2], inter[3], 3, padding=1)
        self.gn4 = _group_norm(inter[3])
        self.adapter1 = nn.Conv2d(fpn_dims[0], inter[1], 1)
        self.adapter2 = nn.Conv2d(fpn_dims[1], inter[2], 1)
        self.adapter3 = nn.Conv2d(fpn_dims[2], inter[3], 1)
        self.lay5 = nn.Conv2d(inter[3], inter[4], 3, padding=1)
        self.gn5 = _group_norm(inter[4])
        self.out_lay = nn.Conv2d(inter[4], mask_dim, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, laterals: list[Tensor]) -> Tensor:
        x = F.relu(self.gn1(self.lay1(x)))
        x = F.relu(self.gn2(self.lay2(x)))
        for adapter, lay, gn, lateral in ((self.adapter1, self.lay3, self.gn3, laterals[0]),
                                          (self.adapter2, self.lay4, self.gn4, laterals[1]),
                                          (self.adapter3, self.lay5, self.gn5, laterals[2])):
            cur = adapter(lateral)
            x = cur + F.interpolate(x, size=cur.shape[-2:], mode="nearest")
            x = F.relu(gn(lay(x)))
        return self.out_lay(x)


def mask_logits(mask_embed: Tensor, mask_features: Tensor) -> Tensor:
    """(N, Q, d) x (N, d, h, w) -> (N, Q, h, w)."""
    return torch.einsum("nqc,nchw->nqhw", mask_embed, mask_features)
