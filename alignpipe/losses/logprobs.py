"""Token and sequence log-probabilities of labels under causal-LM logits."""

from __future__ import annotations

import torch
from torch import Tensor


def token_logps(logits: Tensor, labels: Tensor) -> Tensor:
    """Log-probability of each label token. logits (b, t, v), labels (b, t) -> (b, t).

    Positions are already aligned: logits[:, i] is the distribution that produced labels[:, i]
    (the caller shifts). Labels may hold -100 at ignored positions; those entries are 0.
    Computed in float32 so bf16 logits do not lose the small differences DPO depends on.
    """
    safe = labels.clamp(min=0)
    logps = torch.log_softmax(logits.float(), dim=-1)
    picked = logps.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return picked * (labels != -100)


def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Summed log-probability of `labels` under `logits` over `mask`. logits (b, t, v); labels, mask (b, t) -> (b,)."""
    return (token_logps(logits, labels) * mask).sum(-1)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` over the positions where `mask` is 1. values, mask (b, t) -> scalar."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def shifted(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Align a causal LM's outputs with its targets: logits (b, t, v), labels (b, t) with -100 masks.

    Returns (logits[:, :-1], labels[:, 1:], mask) so that position i predicts token i + 1.
    """
    targets = labels[:, 1:]
    return logits[:, :-1], targets, (targets != -100).to(logits.dtype if logits.is_floating_point() else torch.float32)
