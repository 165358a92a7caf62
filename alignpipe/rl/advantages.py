"""Advantage estimation for token-level PPO: masked whitening and GAE (ALGORITHMS §3)."""

from __future__ import annotations

import torch
from torch import Tensor

from alignpipe.losses.logprobs import masked_mean


def whiten(values: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """Masked whitening, as TRL's `masked_whiten`. values, mask (b, t) -> (b, t).

    (v − μ) / sqrt(σ² + 1e-8), μ and σ² taken over every masked position of the batch, σ² the
    unbiased (Bessel-corrected) variance. With `shift_mean=False` μ is added back, so only the
    scale changes (used for rewards, whose sign carries meaning). Positions outside the mask are 0.
    Raises ValueError when fewer than two positions are masked: the unbiased variance is undefined.
    """
    n = int(mask.sum())
    if n < 2:
        raise ValueError(f"whiten needs at least 2 masked positions, got {n}")
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask) * n / (n - 1)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, Eq. 16). rewards, values, mask (b, t).

    Returns (advantages (b, t), returns (b, t) = advantages + values), both detached: they are
    targets, not part of the graph. δ_t = r_t + γ·V_{t+1} − V_t and Â_t = δ_t + γλ·Â_{t+1}.
    `mask` marks each row's response tokens as one contiguous span; the value after the last
    response token is 0 (the episode ends there), and positions outside the mask are 0 in both
    outputs and never leak into the recursion, whatever `rewards` and `values` hold there.
    """
    m = mask.to(values.dtype)
    rewards, values = rewards.detach() * m, values.detach() * m
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        running = (deltas[:, t] + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m
