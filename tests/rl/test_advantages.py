import math

import pytest
import torch

from alignpipe.rl.advantages import gae, whiten


def test_whiten_by_hand_mean_zero_unit_unbiased_variance():
    # [1, 2, 3] over the mask: mean 2, unbiased var ((−1)² + 0² + 1²) / (3 − 1) = 1 → [−1, 0, 1]
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = whiten(values, mask)
    assert torch.allclose(out, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6)
    kept = out[mask.bool()]
    assert math.isclose(kept.mean().item(), 0.0, abs_tol=1e-7) and math.isclose(
        kept.var().item(), 1.0, rel_tol=1e-6
    )


def test_whiten_pools_rows_and_shift_mean_false_only_rescales():
    # masked values 2, 4, 6 (across two rows): mean 4, unbiased var (4 + 0 + 4) / 2 = 4, std 2
    values = torch.tensor([[2.0, 4.0], [6.0, -9.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    assert torch.allclose(whiten(values, mask), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), atol=1e-6)
    # shift_mean=False adds the mean back: (v − 4)/2 + 4 → 3, 4, 5
    assert torch.allclose(
        whiten(values, mask, shift_mean=False), torch.tensor([[3.0, 4.0], [5.0, 0.0]]), atol=1e-6
    )


def test_whiten_needs_two_positions():
    with pytest.raises(ValueError, match="at least 2 masked positions, got 1"):
        whiten(torch.tensor([[1.0, 2.0]]), torch.tensor([[1, 0]]))


def test_gae_three_tokens_by_hand_with_padding_ignored():
    # γ = 1, λ = 0.5; rewards [0, 0, 1], values [0.5, 0.5, 0.5], then a pad with junk in both.
    # δ_2 = 1 + 1·0 − 0.5 = 0.5   (bootstrap value 0 after the last response token, not the pad's 9)
    # δ_1 = 0 + 0.5 − 0.5 = 0;  δ_0 = 0 + 0.5 − 0.5 = 0
    # Â_2 = 0.5;  Â_1 = 0 + 0.5·0.5 = 0.25;  Â_0 = 0 + 0.5·0.25 = 0.125
    # returns = Â + V = [0.625, 0.75, 1.0]
    rewards = torch.tensor([[0.0, 0.0, 1.0, 7.0]])
    values = torch.tensor([[0.5, 0.5, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.125, 0.25, 0.5, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.625, 0.75, 1.0, 0.0]]))


def test_gae_lambda_one_is_discounted_return_minus_value_and_rows_are_independent():
    # λ = 1, γ = 0.5, V = 0: Â_t = Σ γ^l r_{t+l}: rewards [1, 1] → Â_1 = 1, Â_0 = 1 + 0.5·1 = 1.5.
    # Row 2 has a masked prompt position first; its response [2] gives Â = 2 and position 0 stays 0.
    rewards = torch.tensor([[1.0, 1.0], [5.0, 2.0]])
    values = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    mask = torch.tensor([[1, 1], [0, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1.5, 1.0], [0.0, 2.0]]))
    assert torch.allclose(ret, adv)


def test_gae_outputs_are_detached():
    values = torch.tensor([[0.1, 0.2]], requires_grad=True)
    adv, ret = gae(torch.tensor([[0.0, 1.0]]), values, torch.ones(1, 2))
    assert not adv.requires_grad and not ret.requires_grad
