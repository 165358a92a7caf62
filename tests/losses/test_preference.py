import math

import torch

from alignpipe.losses.preference import bradley_terry_loss, dpo_loss, per_token_nll


def test_bradley_terry_by_hand():
    # r_c − r_r = 1: loss = −log σ(1) = log(1 + e^−1) = 0.31326
    loss = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]))
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    # with margin 1 the pair sits at the decision boundary: log 2
    assert math.isclose(bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), margin=1.0).item(), math.log(2), rel_tol=1e-6)


def test_bradley_terry_centring_term():
    # r_c + r_r = 3, c = 0.01: + 0.09 on top of log(1 + e^−1)
    loss = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), center_coef=0.01)
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)) + 0.09, rel_tol=1e-6)


def test_dpo_by_hand():
    # policy − ref: chosen +2, rejected −1; β = 0.1 → u = 0.3, loss = log(1 + e^−0.3) = 0.55436
    loss, r_c, r_r = dpo_loss(torch.tensor([-10.0]), torch.tensor([-13.0]), torch.tensor([-12.0]), torch.tensor([-12.0]), beta=0.1)
    assert math.isclose(loss.item(), math.log(1 + math.exp(-0.3)), rel_tol=1e-6)
    assert math.isclose(r_c.item(), 0.2, rel_tol=1e-6) and math.isclose(r_r.item(), -0.1, rel_tol=1e-5)


def test_dpo_at_reference_is_log2_and_gradient_favours_chosen():
    pc = torch.tensor([-5.0, -7.0], requires_grad=True)
    pr = torch.tensor([-6.0, -4.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.5)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    loss.backward()
    # d/d pc of −log σ(β(Δ)) at Δ = 0 is −β·σ(0)/n = −0.5·0.5/2
    assert torch.allclose(pc.grad, torch.tensor([-0.125, -0.125]))
    assert torch.allclose(pr.grad, torch.tensor([0.125, 0.125]))


def test_per_token_nll_by_hand():
    # −(−6)/3 = 2 and −(−2)/4 = 0.5 -> mean 1.25
    assert math.isclose(per_token_nll(torch.tensor([-6.0, -2.0]), torch.tensor([3.0, 4.0])).item(), 1.25)
