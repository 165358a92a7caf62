import math

import pytest
import torch

from alignpipe.rl.kl import kl_penalty, shaped_rewards

LN2 = math.log(2)


def test_estimators_by_hand():
    # d = logp − ref ∈ {0, ln 2, −ln 2}; r = e^{−d} ∈ {1, 1/2, 2}
    ref = torch.zeros(1, 3)
    logp = torch.tensor([[0.0, LN2, -LN2]])
    assert torch.allclose(kl_penalty(logp, ref, "k1"), torch.tensor([[0.0, LN2, -LN2]]))
    # k2 = ½d²: ½(ln 2)² = 0.24023
    assert torch.allclose(kl_penalty(logp, ref, "k2"), torch.tensor([[0.0, 0.5 * LN2**2, 0.5 * LN2**2]]))
    # k3 = (r − 1) − log r: 0;  (½ − 1) + ln 2 = 0.19315;  (2 − 1) − ln 2 = 0.30685
    k3 = kl_penalty(logp, ref, "k3")
    assert torch.allclose(k3, torch.tensor([[0.0, LN2 - 0.5, 1 - LN2]]))
    assert k3[0, 0] == 0 and (k3[0, 1:] > 0).all()


def test_k1_and_k3_are_unbiased_k2_is_not():
    # Expectation over every token of π exactly (no sampling): E_π[k1] = E_π[k3] = KL(π ‖ π_ref),
    # since E_π[r] = Σ π_ref = 1. π = [½, ¼, ¼], π_ref = [¼, ¼, ½]: KL = ½ ln 2 + 0 + ¼ ln ½ = ¼ ln 2.
    pi, ref = torch.tensor([[0.5, 0.25, 0.25]]), torch.tensor([[0.25, 0.25, 0.5]])

    def expect(est):
        return (pi * kl_penalty(pi.log(), ref.log(), est)).sum().item()

    assert math.isclose(expect("k1"), 0.25 * LN2, rel_tol=1e-6)
    assert math.isclose(expect("k3"), 0.25 * LN2, rel_tol=1e-6)
    # E[k2] = ½(½(ln 2)² + ¼(ln 2)²) = 0.375 (ln 2)² = 0.18017 ≠ 0.17329
    assert math.isclose(expect("k2"), 0.375 * LN2**2, rel_tol=1e-6)


def test_unknown_estimator():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


def test_shaped_rewards_by_hand():
    # Row 0: logp − ref = [0.5, 0, −0.5], kl_coef 0.1 → −0.1·k1 = [−0.05, 0, 0.05]; score 1 on token 2.
    # Row 1: masked prompt token first, response = tokens 1..2: −0.1·[1, 2] = [−0.1, −0.2], score −2 on token 2.
    # Row 2: one-token response: −0.1·0 + score 3 on token 0. Padding is 0 everywhere.
    logp = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.5, 0.0], [5.0, -2.0, -3.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
    out = shaped_rewards(torch.tensor([1.0, -2.0, 3.0]), logp, ref, mask, kl_coef=0.1)
    expected = torch.tensor([[-0.05, 0.0, 1.05, 0.0], [0.0, -0.1, -2.2, 0.0], [3.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(out, expected)


def test_shaped_rewards_k3_and_empty_row():
    # d = ln 2 on one token → k3 = ln 2 − ½; kl_coef 1 → reward −(ln 2 − ½) + score 0.
    # An all-zero mask row gets nothing (not the score at position 0).
    logp = torch.tensor([[LN2], [0.0]], requires_grad=True)
    out = shaped_rewards(
        torch.tensor([0.0, 4.0]), logp, torch.zeros(2, 1), torch.tensor([[1], [0]]), 1.0, "k3"
    )
    assert torch.allclose(out, torch.tensor([[0.5 - LN2], [0.0]]))
    assert not out.requires_grad
