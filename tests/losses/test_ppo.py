import math

import torch

from alignpipe.losses.ppo import entropy_from_logits, ppo_policy_loss, ppo_value_loss

LN15, LN05 = math.log(1.5), math.log(0.5)


def test_policy_loss_by_hand_with_gradients():
    # ε = 0.2. Token 0: ρ = 1.5, A = 2 → −A·ρ = −3, −A·clip(ρ) = −2·1.2 = −2.4 → max −2.4 (clipped).
    # Token 1: ρ = 1, A = −1 → both branches 1 (not clipped).
    # Token 2: ρ = 0.5, A = −1 → 0.5 vs −(−1)·0.8 = 0.8 → max 0.8 (clipped).   Token 3: pad.
    # loss = (−2.4 + 1 + 0.8) / 3 = −0.2; clipfrac = 2/3; approx_kl = ½((ln 1.5)² + 0 + (ln 0.5)²) / 3
    old = torch.zeros(1, 4)
    logp = torch.tensor([[LN15, 0.0, LN05, 3.0]], requires_grad=True)
    adv = torch.tensor([[2.0, -1.0, -1.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, clipfrac, approx_kl = ppo_policy_loss(logp, old, adv, mask)
    assert math.isclose(loss.item(), -0.2, rel_tol=1e-5)
    assert math.isclose(clipfrac.item(), 2 / 3, rel_tol=1e-6)
    assert math.isclose(approx_kl.item(), 0.5 * (LN15**2 + LN05**2) / 3, rel_tol=1e-6)
    loss.backward()
    # clipped tokens and the pad get no gradient; token 1: d(−A·e^{logp − old})/dlogp / 3 = −(−1)·1/3
    assert torch.allclose(logp.grad, torch.tensor([[0.0, 1 / 3, 0.0, 0.0]]))


def test_clip_only_binds_in_the_direction_the_advantage_pushes():
    # ρ = 0.5 with A = 1: −0.5 vs −0.8 → max −0.5, unclipped (moving back toward ρ = 1 is allowed).
    # ρ = 1.5 with A = −1: 1.5 vs 1.2 → max 1.5, unclipped. loss = (−0.5 + 1.5) / 2 = 0.5
    logp = torch.tensor([[LN05, LN15]], requires_grad=True)
    loss, clipfrac, _ = ppo_policy_loss(
        logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    )
    assert math.isclose(loss.item(), 0.5, rel_tol=1e-5) and clipfrac.item() == 0
    loss.backward()
    # d/dlogp of −A·ρ = −A·ρ, halved by the mean: [−0.25, 0.75]
    assert torch.allclose(logp.grad, torch.tensor([[-0.25, 0.75]]))


def test_value_loss_by_hand_with_gradients():
    # ε = 0.2, V_old = 0, R = 1. Token 0: V = 0.5 → (0.5 − 1)² = 0.25; V_clip = 0.2 → 0.64; max 0.64 (clipped).
    # Token 1: V = 0.1 → both 0.81 (inside the clip range; not counted as clipped).
    # loss = ½ · (0.64 + 0.81) / 2 = 0.3625; clipfrac = ½
    values = torch.tensor([[0.5, 0.1, 9.0]], requires_grad=True)
    old, returns, mask = torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[1, 1, 0]])
    loss, clipfrac = ppo_value_loss(values, old, returns, mask)
    assert math.isclose(loss.item(), 0.3625, rel_tol=1e-6) and clipfrac.item() == 0.5
    loss.backward()
    # token 0: the clipped error is flat in V → 0; token 1: ½ · 2(0.1 − 1) / 2 = −0.45
    assert torch.allclose(values.grad, torch.tensor([[0.0, -0.45, 0.0]]))


def test_entropy_by_hand():
    # uniform over 4 → ln 4; [0, ln 3, −1e4, −1e4] → p ≈ [¼, ¾, 0, 0]: −(¼ ln ¼ + ¾ ln ¾) = 0.56233; row 2 is a pad
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3), -1e4, -1e4], [9.0, 0.0, 0.0, 0.0]]])
    h = entropy_from_logits(logits, torch.tensor([[1, 1, 0]]))
    expected = (math.log(4) - (0.25 * math.log(0.25) + 0.75 * math.log(0.75))) / 2
    assert math.isclose(h.item(), expected, rel_tol=1e-6)
