"""Per-token KL estimators and the KL-shaped PPO reward (ALGORITHMS §3)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

KLEstimator = Literal["k1", "k2", "k3"]


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: KLEstimator) -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π. logp, ref_logp (b, t) -> (b, t).

    Schulman (2020), "Approximating KL Divergence", with d = log π − log π_ref and r = π_ref/π = e^{−d}:
    k1 = d (unbiased, high variance, can be negative); k2 = ½d² (biased, low variance);
    k3 = (r − 1) − log r (unbiased and ≥ 0, low variance).
    """
    d = logp - ref_logp
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d**2
    if estimator == "k3":
        return torch.expm1(-d) + d  # (r − 1) − log r with log r = −d; expm1 keeps small d exact
    raise ValueError(f"unknown KL estimator {estimator!r}; expected 'k1', 'k2' or 'k3'")


def shaped_rewards(
    score: Tensor,
    logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    kl_coef: float,
    estimator: KLEstimator = "k1",
) -> Tensor:
    """Token-level PPO reward (ALGORITHMS §3). score (b,); logp, ref_logp, mask (b, t) -> (b, t).

    −kl_coef · KL_t on every response token, plus the reward-model score on the last response
    token of each row (the last 1 of `mask`). Detached: rewards are constants for GAE.
    Positions outside the mask are 0; a row with an empty mask gets no score.
    """
    m = mask.to(logp.dtype)
    rewards = -kl_coef * kl_penalty(logp.detach(), ref_logp.detach(), estimator) * m
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * (mask != 0)).argmax(dim=1, keepdim=True)  # index of the last masked token
    has_response = (mask != 0).any(dim=1, keepdim=True)
    score = score.detach().to(rewards.dtype).unsqueeze(1) * has_response
    return rewards.scatter_add(1, last, score)
