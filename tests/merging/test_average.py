import pytest
import torch

from alignpipe.merging.average import MergeError, average_state_dicts


def test_average_by_hand_and_endpoints():
    sft = {"w": torch.tensor([1.0, 3.0]), "step": torch.tensor(5)}
    rl = {"w": torch.tensor([5.0, -1.0]), "step": torch.tensor(9)}
    # α = 0.25 is the weight on SFT: 0.25·1 + 0.75·5 = 4; 0.25·3 + 0.75·(−1) = 0
    assert torch.allclose(average_state_dicts(sft, rl, 0.25)["w"], torch.tensor([4.0, 0.0]))
    assert torch.equal(average_state_dicts(sft, rl, 1.0)["w"], sft["w"])
    assert torch.equal(average_state_dicts(sft, rl, 0.0)["w"], rl["w"])
    assert average_state_dicts(sft, rl, 0.5)["step"].item() == 9  # integer buffers come from RLHF


def test_dtype_is_kept():
    sft, rl = {"w": torch.ones(2, dtype=torch.bfloat16)}, {"w": torch.zeros(2, dtype=torch.bfloat16)}
    out = average_state_dicts(sft, rl, 0.5)["w"]
    assert out.dtype == torch.bfloat16 and out.tolist() == [0.5, 0.5]


def test_mismatches_are_named():
    with pytest.raises(MergeError, match="only in SFT \\['extra'\\]"):
        average_state_dicts({"w": torch.ones(1), "extra": torch.ones(1)}, {"w": torch.ones(1)}, 0.5)
    with pytest.raises(MergeError, match="tensor 'w' has shape \\(2,\\) in SFT but \\(3,\\) in RLHF"):
        average_state_dicts({"w": torch.ones(2)}, {"w": torch.ones(3)}, 0.5)
    with pytest.raises(MergeError, match="tensor 'w' has dtype torch.float32 in SFT but torch.bfloat16 in RLHF"):
        average_state_dicts({"w": torch.ones(2)}, {"w": torch.ones(2, dtype=torch.bfloat16)}, 0.5)
    with pytest.raises(MergeError, match="alpha must lie in"):
        average_state_dicts({"w": torch.ones(1)}, {"w": torch.ones(1)}, 1.5)
