"""Query tracking across keyframes: Hungarian matching against an EMA memory (no parameters).

After pruning, every keyframe has Q queries in no particular order. ReferMo orders them so
that slot i holds the same object in every keyframe: keyframe 0 fills the memory; each
later keyframe's queries are matched to the memory slots by ``scipy.optimize.
linear_sum_assignment`` on ``1 - cosine(memory, query)``, permuted into slot order, and the
memory moves towards them with a rate ``alpha * conf``, where ``conf`` is the query's
text confidence (its best dot product with the keyframe's text tokens), min-max
normalised over the slots: confident queries update the memory, uncertain ones barely do.

Differences from the public code, both for batches and degenerate inputs only: padded
text tokens are excluded from the confidence (the public code takes them into account
when captions of one batch differ in length), and when all slots have the same
confidence the min-max normalisation uses 1 instead of dividing by zero.

Matching runs without gradients (on the CPU); the permutation is applied with ``gather``,
so gradients flow through the tracked queries.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Tracked:
    """Queries in slot order. ``hs`` (T, B, Q, d), ``boxes`` (T, B, Q, 4), ``order`` (T, B, Q) long:
    ``order[t, b, i]`` is the keyframe-``t`` query index placed in slot ``i``."""

    hs: Tensor
    boxes: Tensor
    order: Tensor


@torch.no_grad()
def match_queries(memory: Tensor, current: Tensor) -> Tensor:
    """For (B, Q, d) ``memory`` and ``current``: (B, Q) long, the current query matched to each slot.

    Example:
        >>> m = torch.eye(3)[None]
        >>> match_queries(m, m[:, [2, 0, 1]]).tolist()
        [[1, 2, 0]]
    """
    from scipy.optimize import linear_sum_assignment

    cost = 1.0 - F.normalize(memory.float(), dim=-1) @ F.normalize(current.float(), dim=-1).transpose(1, 2)
    cost = cost.float().cpu().numpy()   # autocast makes the product bf16 even from float inputs
    order = np.stack([linear_sum_assignment(c)[1] for c in cost], axis=0)
    return torch.as_tensor(order, dtype=torch.long, device=current.device)


def text_confidence(hs: Tensor, text: Tensor, text_valid: Tensor) -> Tensor:
    """(B, Q, d), (B, L, d), (B, L) bool -> (B, Q, 1) in [0, 1]: best token similarity, min-max over Q."""
    sim = (hs @ text.transpose(1, 2)).masked_fill(~text_valid[:, None, :], float("-inf")).max(-1)[0]
    low, high = sim.min(1, keepdim=True)[0], sim.max(1, keepdim=True)[0]
    span = torch.where(high > low, high - low, torch.ones_like(high))
    return ((sim - low) / span).unsqueeze(-1)


def track(hs: Tensor, boxes: Tensor, text: Tensor, text_valid: Tensor, *, alpha: float) -> Tracked:
    """Order every keyframe's queries by matching them to the EMA memory of the previous ones.

    Args:
        hs: (T, B, Q, d) query embeddings per keyframe.
        boxes: (T, B, Q, 4) their reference boxes, permuted along.
        text: (T, B, L, d) the keyframes' fused text tokens.
        text_valid: (T, B, L) bool, True for real tokens.
        alpha: the memory's update rate (0.1 in ReferMo).
    """
    t_len, b, q, d = hs.shape
    out_hs, out_boxes = [hs[0]], [boxes[0]]
    order = [torch.arange(q, device=hs.device).expand(b, q)]
    memory = hs[0]
    for t in range(1, t_len):
        idx = match_queries(memory, hs[t])
        cur = hs[t].gather(1, idx[..., None].expand(-1, -1, d))
        out_boxes.append(boxes[t].gather(1, idx[..., None].expand(-1, -1, boxes.shape[-1])))
        conf = text_confidence(cur, text[t], text_valid[t])
        memory = (1 - alpha * conf) * memory + alpha * conf * cur
        out_hs.append(cur)
        order.append(idx)
    return Tracked(torch.stack(out_hs), torch.stack(out_boxes), torch.stack(order))
