"""The temporal decoder: tracked queries attend over time, guided by the sentence token.

As the public ``temporal_modules.py`` (same child names, so weights map by prefix): each
block runs self-attention over time on every query's trajectory, then a standard
transformer decoder layer in which the sentence token of every keyframe (the fused
``[CLS]`` feature, repeated per query) attends to that trajectory; the block's output is
``norm(hs + sentence)``.

Shapes are sequence-first, as ``nn.MultiheadAttention``'s default: ``(T, B * Q, d)``.
"""
from __future__ import annotations

from torch import Tensor, nn


class TemporalBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.TransformerDecoderLayer(d_model, num_heads, dim_feedforward=ffn_dim, dropout=dropout)

    def forward(self, hs: Tensor, sentence: Tensor) -> tuple[Tensor, Tensor]:
        hs = self.norm(hs + self.dropout(self.self_attn(hs, hs, hs, need_weights=False)[0]))
        sentence = self.decoder(sentence, hs)
        return hs, sentence


class TemporalDecoder(nn.Module):
    """``layers`` temporal blocks. ``forward(hs (T, BQ, d), sentence (T, BQ, d)) -> (T, BQ, d)``."""

    def __init__(self, d_model: int, num_heads: int, layers: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_layer = layers
        self.layer = nn.ModuleList(TemporalBlock(d_model, num_heads, ffn_dim, dropout) for _ in range(layers))
        self.norm = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))

    def forward(self, hs: Tensor, sentence: Tensor) -> Tensor:
        for block, norm in zip(self.layer, self.norm):
            hs, sentence = block(hs, sentence)
            hs = norm(hs + sentence)
        return hs
