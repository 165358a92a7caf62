import math

import pytest
import torch

from alignpipe.losses.irft import irft_loss
from alignpipe.losses.preference import dpo_loss


def test_irft_by_hand():
    # demo: π − π_t = −8 − (−10) = 2; generated: −12 − (−11) = −1; β = 0.1
    # u = 0.1·2 − 0.1·(−1) = 0.3; ℓ(u) = log(1 + e^{−0.3}) = 0.55436
    loss, demo_r, gen_r = irft_loss(
        torch.tensor([-8.0]), torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0])
    )
    assert math.isclose(loss.item(), math.log(1 + math.exp(-0.3)), rel_tol=1e-6)
    assert math.isclose(demo_r.item(), 0.2, rel_tol=1e-5) and math.isclose(gen_r.item(), -0.1, rel_tol=1e-5)


def test_irft_is_dpo_with_demo_chosen_and_generation_rejected():
    pd, rd, pg, rg = (
        torch.tensor([-3.0, -5.0]),
        torch.tensor([-4.0, -4.0]),
        torch.tensor([-6.0, -2.0]),
        torch.tensor([-5.0, -3.0]),
    )
    irft = irft_loss(pd, rd, pg, rg, beta=0.5)
    dpo = dpo_loss(pd, pg, rd, rg, beta=0.5)
    assert all(torch.equal(a, b) for a, b in zip(irft, dpo, strict=True))


def test_at_the_stage_model_loss_is_log2_and_gradient_raises_demo_lowers_generation():
    # π = π_t (start of every stage): u = 0, loss = log 2; dℓ/du = −σ(0) = −½, per row /b = 2, times β = 0.1
    pd = torch.tensor([-5.0, -7.0], requires_grad=True)
    pg = torch.tensor([-6.0, -4.0], requires_grad=True)
    loss, _, _ = irft_loss(pd, pd.detach(), pg, pg.detach())
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    loss.backward()
    assert torch.allclose(pd.grad, torch.tensor([-0.025, -0.025]))  # descent raises log π(y)
    assert torch.allclose(pg.grad, torch.tensor([0.025, 0.025]))  # and lowers log π(ỹ)


def test_sft_weight_adds_the_demonstrations_per_token_nll_by_hand():
    # the logistic part as in test_irft_by_hand: log(1 + e^{−0.3}); demo log-prob −8 over 4 tokens and
    # −6 over 2 tokens: per-token NLL 2 and 3, mean 2.5; λ = 0.5 adds 1.25
    pd = torch.tensor([-8.0, -6.0], requires_grad=True)
    rd, pg, rg = torch.tensor([-10.0, -8.0]), torch.tensor([-12.0, -12.0]), torch.tensor([-11.0, -11.0])
    loss, _, _ = irft_loss(pd, rd, pg, rg, demo_tokens=torch.tensor([4.0, 2.0]), sft_weight=0.5)
    assert math.isclose(loss.item(), math.log(1 + math.exp(-0.3)) + 1.25, rel_tol=1e-6)
    loss.backward()
    # d/dpd: logistic −σ(−0.3)·0.1/2 per row, SFT −0.5/(2·|y|): −0.25/4 = −0.0625, −0.25/2 = −0.125
    logistic = -0.1 / 2 / (1 + math.exp(0.3))
    assert torch.allclose(pd.grad, torch.tensor([logistic - 0.0625, logistic - 0.125]))


def test_sft_weight_without_token_counts_is_refused():
    t = torch.tensor([-1.0])
    with pytest.raises(ValueError, match="demo_tokens"):
        irft_loss(t, t, t, t, sft_weight=1.0)
