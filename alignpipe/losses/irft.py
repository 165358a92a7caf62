"""IRFT: implicit-reward inverse-RL fine-tuning on SFT data (Li et al. 2024; ALGORITHMS §1b)."""

from __future__ import annotations

from torch import Tensor

from alignpipe.losses.preference import dpo_loss


def irft_loss(
    policy_demo: Tensor, ref_demo: Tensor, policy_gen: Tensor, ref_gen: Tensor, beta: float = 0.1
) -> tuple[Tensor, Tensor, Tensor]:
    """IRFT stage loss. All inputs (b,) summed response log-probs -> (loss, demo_reward, gen_reward).

    ℓ(β[log π(y|x) − log π_t(y|x)] − β[log π(ỹ|x) − log π_t(ỹ|x)]), ℓ(u) = log(1 + e^{−u}),
    averaged over the batch: y the demonstration, ỹ ~ π_t the frozen stage model's own
    generation, π_t the reference. This is exactly the DPO loss with (demonstration, generated)
    as (chosen, rejected), since ℓ(u) = −log σ(u), so it calls `dpo_loss` rather than repeat the
    math. With a single stage (T = 1) it is SPIN. demo_reward, gen_reward (b,) are the detached
    implicit rewards β(log π − log π_t).
    """
    return dpo_loss(policy_demo, policy_gen, ref_demo, ref_gen, beta)
