import pytest
import torch

from alignpipe.rl.selection import best_and_worst, best_of_n, best_over_baseline, select_best


def test_best_of_n_ties_go_to_lowest_index():
    rewards = torch.tensor([[0.1, 0.9, 0.3], [2.0, 2.0, 1.0], [-1.0, -3.0, -0.5]])
    # row 0: 0.9 at 1; row 1: tie at 0 and 1 → 0; row 2: −0.5 at 2
    assert best_of_n(rewards).tolist() == [1, 0, 2]
    assert best_of_n(torch.full((1, 4), 7.0)).tolist() == [0]


def test_best_of_n_rejects_nan_and_wrong_rank():
    with pytest.raises(ValueError, match="NaN"):
        best_of_n(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="got shape \\(3,\\)"):
        best_of_n(torch.zeros(3))


def test_select_best_keeps_one_response_per_prompt():
    samples = [["a0", "a1"], ["b0", "b1"]]
    assert select_best(samples, torch.tensor([[0.0, 1.0], [5.0, -5.0]])) == ["a1", "b0"]
    assert select_best(samples, [[1.0, 1.0], [0.0, 0.5]]) == ["a0", "b1"]  # plain lists accepted


def test_select_best_names_the_mismatch():
    with pytest.raises(ValueError, match="prompt 1 has 1 samples but 2 rewards"):
        select_best([["a0", "a1"], ["b0"]], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="does not match 3 prompts"):
        select_best([["a"], ["b"], ["c"]], torch.zeros(2, 1))


def test_best_and_worst_takes_first_extremes_and_flags_all_tied_rows():
    rewards = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 5.0, 0.0, 5.0]])
    best, worst, distinct = best_and_worst(rewards)
    # row 0: max 3 first at 1, min 0 at 3; row 1: all tied; row 2: max 5 first at 1, min 0 first at 0
    assert best.tolist() == [1, 0, 1] and worst.tolist() == [3, 0, 0]
    assert distinct.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="NaN"):
        best_and_worst(torch.tensor([[0.0, float("nan")]]))


def test_best_over_baseline_keeps_a_prompt_only_when_its_best_beats_the_baseline():
    rewards = torch.tensor([[0.1, 0.9, 0.3], [2.0, 2.0, 1.0], [-1.0, -3.0, -0.5], [0.0, 0.2, 0.1]])
    baseline = torch.tensor([0.5, 2.0, -0.6, 0.3])
    best, keep = best_over_baseline(rewards, baseline)
    # row 0: 0.9 > 0.5 kept; row 1: best 2.0 ties the baseline → dropped; row 2: −0.5 > −0.6 kept; row 3: 0.2 < 0.3
    assert best.tolist() == [1, 0, 2, 1] and keep.tolist() == [True, False, True, False]


def test_best_over_baseline_names_the_bad_baseline():
    with pytest.raises(ValueError, match="baseline shape \\(3,\\) does not match 2 prompts"):
        best_over_baseline(torch.zeros(2, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="baseline rewards contain NaN"):
        best_over_baseline(torch.zeros(2, 4), torch.tensor([0.0, float("nan")]))
