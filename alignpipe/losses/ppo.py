"""PPO losses for a token-level policy with a value head (ALGORITHMS §3).

Every mean is a masked mean over all response tokens of the batch (token-level, as TRL and
OpenRLHF do), not a mean of per-sequence means.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignpipe.losses.logprobs import masked_mean


def ppo_policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor, Tensor]:
    """Clipped surrogate (Schulman et al. 2017, Eq. 7), negated to minimise. All inputs (b, t).

    ρ = exp(logp − old_logp); loss = masked mean of max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)).
    `old_logp` and `advantages` are constants (pass them detached). Returns (loss, clipfrac,
    approx_kl), the last two detached scalars: clipfrac = fraction of tokens where the clipped
    branch is taken (its gradient is 0 there); approx_kl = masked mean of ½(logp − old_logp)².
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logp.dtype), mask)
    approx_kl = masked_mean(0.5 * log_ratio.detach() ** 2, mask)
    return loss, clipfrac.detach(), approx_kl


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped value loss (the PPO2 baselines form). All inputs (b, t) -> (loss, clipfrac) scalars.

    V_clip = V_old + clip(V − V_old, −ε, ε); loss = ½ · masked mean of max((V − R)², (V_clip − R)²):
    the pessimistic error, so the critic gains nothing by moving more than ε from its rollout
    values. clipfrac (detached) = fraction of tokens where the clipped error is the larger one.
    """
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    clipfrac = masked_mean((clipped_err > unclipped_err).to(values.dtype), mask)
    return loss, clipfrac.detach()


def entropy_from_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """Masked mean entropy of the next-token distributions. logits (b, t, v), mask (b, t) -> scalar.

    H = logsumexp(l) − Σ softmax(l)·l (= −Σ p log p), computed in float32.
    """
    logits = logits.float()
    entropy = torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return masked_mean(entropy, mask)
