"""Pairwise preference losses: Bradley–Terry for reward models, DPO for policies (and its per-token NLL term)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bradley_terry_loss(
    chosen: Tensor, rejected: Tensor, margin: float = 0.0, center_coef: float = 0.0
) -> Tensor:
    """Reward-model loss (ALGORITHMS §2). chosen, rejected (b,) scalar rewards -> scalar.

    −log σ(r_c − r_r − margin) + c·(r_c + r_r)², averaged over the batch. The centring term
    (c = 0.01 in §2) keeps rewards near zero without changing the preference.
    """
    loss = -F.logsigmoid(chosen - rejected - margin)
    if center_coef:
        loss = loss + center_coef * (chosen + rejected) ** 2
    return loss.mean()


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO (Rafailov et al. 2023, Eq. 7; ALGORITHMS §3). All inputs (b,) summed response log-probs.

    Returns (loss: scalar mean of −log σ(β·[(π_c − ref_c) − (π_r − ref_r)]),
    chosen_reward (b,) = β(π_c − ref_c), rejected_reward (b,) = β(π_r − ref_r)), the implicit
    rewards detached for logging margins and accuracy.
    """
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()
    return loss, (beta * chosen_logratio).detach(), (beta * rejected_logratio).detach()


def per_token_nll(policy_logps: Tensor, tokens: Tensor) -> Tensor:
    """Mean over the batch of −log π(y|x) / |y|. policy_logps (b,) summed response log-probs, tokens (b,) the
    responses' lengths in tokens -> scalar. The likelihood term that IRFT (λ) and RPO (rlhf.dpo_nll_weight)
    add to a DPO-type loss, which alone can lower the preferred response's likelihood too."""
    return (-policy_logps / tokens).mean()
