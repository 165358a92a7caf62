import math

import pytest
import torch

from alignpipe.rl.linear_alignment import linear_alignment_logits

INF = float("-inf")


def test_step_size_zero_is_principle_logits_on_the_temperature_nucleus():
    # l_p = log [0.5, 0.3, 0.15, 0.05]. softmax(l_p / 0.5) ∝ p² = [0.25, 0.09, 0.0225, 0.0025] / 0.365
    #   = [0.6849, 0.2466, 0.0616, 0.0068]; mass ranked above each: [0, 0.6849, 0.9315, 0.9932].
    #   top_p 0.9 keeps tokens whose mass above is < 0.9 → {0, 1}.
    # At T = 1 the masses above are [0, 0.5, 0.8, 0.95] → {0, 1, 2}: a lower T shrinks the nucleus.
    l_p = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    out = linear_alignment_logits(l_p, torch.zeros_like(l_p), step_size=0.0, top_p=0.9, temperature=0.5)
    assert torch.equal(out, torch.tensor([[l_p[0, 0].item(), l_p[0, 1].item(), INF, INF]]))
    out_t1 = linear_alignment_logits(l_p, torch.zeros_like(l_p), step_size=0.0, top_p=0.9, temperature=1.0)
    assert torch.isfinite(out_t1).tolist() == [[True, True, True, False]]


def test_step_along_principle_direction_by_hand():
    # l̃ = l_p + 2·(l_p − l_0) = [2, 1, 0] + 2·[1, 0, −1] = [4, 1, −2]
    # softmax([2, 1, 0] / 0.5) = e^[4, 2, 0] / 62.99 = [0.8668, 0.1173, 0.0159]
    # top_p 0.8: masses above [0, 0.8668, 0.9841] → {0};  top_p 0.9 → {0, 1}
    l_p, l_0 = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0]])
    assert torch.equal(linear_alignment_logits(l_p, l_0, 2.0), torch.tensor([[4.0, INF, INF]]))
    assert torch.equal(linear_alignment_logits(l_p, l_0, 2.0, top_p=0.9), torch.tensor([[4.0, 1.0, INF]]))


def test_nucleus_comes_from_l_p_not_from_the_shifted_logits():
    # l̃ = [1, 0, −10] + 2·[0, 0, 10] = [1, 0, 10]: token 2 would win, but l_p finds it implausible.
    l_p, l_0 = torch.tensor([[1.0, 0.0, -10.0]]), torch.tensor([[1.0, 0.0, -20.0]])
    out = linear_alignment_logits(l_p, l_0, 2.0, top_p=0.99)
    assert out[0, 2] == INF and out.argmax().item() == 0


def test_most_likely_token_always_kept_rows_independent_float32():
    l_p = torch.tensor([[0.0, 3.0, 1.0], [5.0, 5.0, -1.0]], dtype=torch.bfloat16)
    out = linear_alignment_logits(l_p, l_p, 3.0, top_p=1e-6)
    assert out.dtype == torch.float32
    # row 1 ties: the stable sort keeps the first of the two equal tokens
    assert torch.isfinite(out).tolist() == [[False, True, False], [True, False, False]]
    assert out[0, 1].item() == 3.0 and math.isclose(out[1, 0].item(), 5.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same shape"):
        linear_alignment_logits(torch.zeros(1, 3), torch.zeros(1, 4), 1.0)
    with pytest.raises(ValueError, match="0 < top_p <= 1"):
        linear_alignment_logits(torch.zeros(1, 3), torch.zeros(1, 3), 1.0, top_p=0.0)
