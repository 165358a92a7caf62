"""Linear Alignment (Gao et al. 2024, ALGORITHMS §5): a training-free decoding-time aligner."""

from __future__ import annotations

import torch
from torch import Tensor


def _nucleus_mask(logits: Tensor, top_p: float, temperature: float) -> Tensor:
    """True on the top-p nucleus of softmax(logits / T). logits (b, v) -> bool (b, v).

    The nucleus is the smallest set of most likely tokens whose mass reaches top_p: a token is
    kept when the mass of the tokens ranked above it is < top_p. The most likely token is always kept.
    """
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    keep_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
    keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def linear_alignment_logits(
    l_p: Tensor, l_0: Tensor, step_size: float, top_p: float = 0.8, temperature: float = 0.5
) -> Tensor:
    """Next-token logits of Linear Alignment. l_p, l_0 (b, v) -> float32 (b, v).

    l_p: logits with the principle in the system message; l_0: without it. Returns
    l̃ = l_p + r·(l_p − l_0) (r = step_size; the paper's closed-form update along the principle's
    direction) in float32, set to −inf outside the top-p nucleus of softmax(l_p / T). T only
    shapes the nucleus; l̃ itself is not divided by T (take argmax, or sample at your own
    temperature). step_size 0 gives l_p restricted to its nucleus.
    """
    if l_p.shape != l_0.shape:
        raise ValueError(f"l_p {tuple(l_p.shape)} and l_0 {tuple(l_0.shape)} must have the same shape")
    if not (0.0 < top_p <= 1.0) or temperature <= 0.0:
        raise ValueError(f"need 0 < top_p <= 1 and temperature > 0, got {top_p=} {temperature=}")
    l_p, l_0 = l_p.float(), l_0.float()
    aligned = l_p + step_size * (l_p - l_0)
    return aligned.masked_fill(~_nucleus_mask(l_p, top_p, temperature), float("-inf"))
