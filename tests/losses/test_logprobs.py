import math

import torch

from alignpipe.losses.logprobs import masked_mean, sequence_logps, shifted, token_logps


def test_token_logps_by_hand():
    # Two-token vocabulary, logits [0, ln 3]: p = [1/4, 3/4].
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)]]])
    labels = torch.tensor([[1, 0]])
    out = token_logps(logits, labels)
    assert torch.allclose(out, torch.tensor([[math.log(0.75), math.log(0.25)]]))


def test_ignored_labels_contribute_zero_and_mask_selects():
    logits = torch.zeros(1, 3, 4)  # uniform: log 1/4 per token
    labels = torch.tensor([[-100, 2, 3]])
    assert token_logps(logits, labels)[0, 0] == 0
    mask = torch.tensor([[0.0, 1.0, 0.0]])
    assert torch.isclose(sequence_logps(logits, labels, mask), torch.tensor([math.log(0.25)]))


def test_shifted_aligns_position_i_with_token_i_plus_1():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    lg, tg, mask = shifted(logits, labels)
    assert lg.shape == (2, 4, 7) and tg.tolist() == [[-100, 3, 4, 5], [1, 2, -100, -100]]
    assert mask.tolist() == [[0, 1, 1, 1], [1, 1, 0, 0]]


def test_masked_mean():
    v = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mean(v, torch.tensor([[1, 1, 0]])) == 1.5
