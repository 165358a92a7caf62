"""IRFT: implicit-reward inverse-RL fine-tuning on SFT data (Li et al. 2024; ALGORITHMS §1b)."""

from __future__ import annotations

from torch import Tensor

from alignpipe.losses.preference import dpo_loss, per_token_nll


def irft_loss(
    policy_demo: Tensor, ref_demo: Tensor, policy_gen: Tensor, ref_gen: Tensor, beta: float = 0.1,
    *, demo_tokens: Tensor | None = None, sft_weight: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """IRFT stage loss. All inputs (b,) summed response log-probs -> (loss, demo_reward, gen_reward).

    ℓ(β[log π(y|x) − log π_t(y|x)] − β[log π(ỹ|x) − log π_t(ỹ|x)]), ℓ(u) = log(1 + e^{−u}),
    averaged over the batch: y the demonstration, ỹ ~ π_t the frozen stage model's own
    generation, π_t the reference. This is exactly the DPO loss with (demonstration, generated)
    as (chosen, rejected), since ℓ(u) = −log σ(u), so it calls `dpo_loss` rather than repeat the
    math. With a single stage (T = 1) it is SPIN. demo_reward, gen_reward (b,) are the detached
    implicit rewards β(log π − log π_t).

    With `sft_weight` λ > 0 the demonstration's per-token negative log-likelihood is added,
    `λ · mean(−log π(y|x) / |y|)` (`demo_tokens` (b,) = |y| in tokens): the logistic term alone is
    satisfied by pushing the own sample down while the demonstration's likelihood drifts down too (a
    known failure of DPO-type losses), and the SFT term keeps pulling the demonstration up. λ = 0 is
    §1b's loss exactly.
    """
    loss, demo_r, gen_r = dpo_loss(policy_demo, policy_gen, ref_demo, ref_gen, beta)
    if sft_weight:
        if demo_tokens is None:
            raise ValueError("sft_weight > 0 needs demo_tokens (the demonstrations' response lengths in tokens)")
        loss = loss + sft_weight * per_token_nll(policy_demo, demo_tokens)
    return loss, demo_r, gen_r
