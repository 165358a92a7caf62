"""Tests for alignpipe.eval.metrics: hand-computed expectations, and its purity."""

import math
import subprocess
import sys

import pytest

from alignpipe.eval.metrics import (
    accuracy,
    alignment_tax,
    auroc,
    false_negative_rate,
    group_means,
    length_controlled_win_rate,
    length_feature,
    length_glm,
    mean_and_stderr,
    pairwise_preferences,
    pareto_front,
    per_group_accuracy,
    pii_leaked,
    relative_tax,
    replicated_paired_gain,
    squad_exact_match,
    squad_f1,
    win_rate,
)


def test_alignment_tax_is_reference_minus_accuracy():
    assert alignment_tax(0.55, 0.60) == pytest.approx(0.05)  # ability lost: positive
    assert alignment_tax(0.65, 0.60) == pytest.approx(-0.05)  # ability gained: negative
    assert alignment_tax(0.6, 0.6) == 0.0


def test_relative_tax_is_the_drop_as_a_share_of_sft():
    assert relative_tax(0.45, 0.60) == pytest.approx(0.25)  # lost a quarter of SFT's accuracy
    assert relative_tax(30.0, 24.0) == pytest.approx(-0.25)  # BLEU up from 24 to 30: gained, negative
    assert relative_tax(0.6, 0.6) == 0.0


def test_relative_tax_at_zero_sft_and_nan():
    assert relative_tax(0.0, 0.0) == 0.0  # nothing to lose, nothing lost
    assert math.isnan(relative_tax(0.1, 0.0))  # a gain relative to zero has no size
    assert math.isnan(relative_tax(math.nan, 0.5))  # a model not run on the benchmark
    with pytest.raises(ValueError, match="SFT score"):
        relative_tax(0.5, -1.0)


def test_squad_exact_match_normalises_case_punctuation_articles():
    assert squad_exact_match("The Eiffel Tower!", ["eiffel  tower"]) == 1.0
    assert squad_exact_match("Eiffel", ["eiffel tower"]) == 0.0
    assert squad_exact_match("Denver Broncos", ["Carolina Panthers", "the Denver Broncos"]) == 1.0  # any answer
    with pytest.raises(ValueError):
        squad_exact_match("x", [])


def test_squad_f1_hand_example():
    # pred tokens [denver, broncos, won]; gold [denver, broncos]: common 2, P = 2/3, R = 1, F1 = 0.8
    assert squad_f1("Denver Broncos won.", ["The Denver Broncos"]) == pytest.approx(0.8)
    # best over answers: vs [broncos] P = 1/3, R = 1 -> 0.5; vs [denver, broncos] -> 0.8
    assert squad_f1("Denver Broncos won", ["Broncos", "Denver Broncos"]) == pytest.approx(0.8)
    # a repeated token matches once: [paris, paris] vs [paris]: common 1, P = 1/2, R = 1 -> 2/3
    assert squad_f1("Paris Paris", ["Paris"]) == pytest.approx(2 / 3)
    assert squad_f1("London", ["Paris"]) == 0.0
    assert squad_f1("the", ["Paris"]) == 0.0  # normalises to nothing


def test_accuracy_hand_example():
    assert accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert accuracy([1], [1]) == 1.0


@pytest.mark.parametrize("preds, answers", [([0, 1], [0]), ([], [])])
def test_accuracy_rejects_mismatch_and_empty(preds, answers):
    with pytest.raises(ValueError):
        accuracy(preds, answers)


def test_per_group_accuracy_hand_example():
    preds = [0, 1, 1, 2, 0]
    answers = [0, 0, 1, 2, 1]
    groups = ["capitals", "capitals", "plurals", "plurals", "weekdays"]
    assert per_group_accuracy(preds, answers, groups) == {"capitals": 0.5, "plurals": 1.0, "weekdays": 0.0}
    with pytest.raises(ValueError):
        per_group_accuracy(preds, answers, groups[:-1])


def test_pareto_front_hand_example():
    # point: (reward, tax)
    rewards = [0.5, 0.7, 0.6, 0.9, 0.7, 0.4]
    taxes = [0.00, 0.02, 0.05, 0.10, 0.03, 0.00]
    # 2 is dominated by 1 (lower reward, higher tax); 4 by 1 (same reward, higher tax);
    # 5 by 0 (same tax, lower reward). Front sorted by tax: 0, 1, 3.
    assert pareto_front(rewards, taxes) == [0, 1, 3]


def test_pareto_front_keeps_duplicates_and_single_point():
    assert pareto_front([0.5, 0.5], [0.1, 0.1]) == [0, 1]
    assert pareto_front([0.3], [0.2]) == [0]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        pareto_front([0.1], [])


def test_mean_and_stderr_hand_example():
    mean, se = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    # sample variance = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; se = sqrt(5/3) / 2
    assert mean == 2.5
    assert se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert mean_and_stderr([7.0]) == (7.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_stderr([])


def test_replicated_paired_gain_hand_examples():
    # additive: d = gain 2 + prompt effects (-1, +1, 0) + seed effects (-1, +1); no interaction
    r = replicated_paired_gain([[0, 2], [2, 4], [1, 3]])
    # row means (1, 3, 2): se_prompts = 1/√3; residuals 0; var of gains (1, 3) = 2 -> se_seed = √(2/2) = 1
    assert r["gain"] == 2.0
    assert r["se_prompts"] == pytest.approx(1 / math.sqrt(3))
    assert r["se_seed"] == pytest.approx(1.0)
    assert r["se"] == pytest.approx(math.sqrt(4 / 3))
    assert r["z"] == pytest.approx(2 / math.sqrt(4 / 3))
    # the same plus an interaction (+1, -1 / -1, +1 / 0, 0): residual² sum 4 over (3-1)(2-1) -> σ²_e = 2;
    # σ²_a = 2 - 2/3 = 4/3 -> se_seed = √(2/3); row and column means unchanged; se = √(1/3 + 2/3) = 1
    r = replicated_paired_gain([[1, 1], [1, 5], [1, 3]])
    assert (r["gain"], r["se_prompts"]) == (2.0, pytest.approx(1 / math.sqrt(3)))
    assert r["se_seed"] == pytest.approx(math.sqrt(2 / 3))
    assert (r["se"], r["z"]) == (pytest.approx(1.0), pytest.approx(2.0))
    # one replicate: no seed noise estimate, the SE is the plain paired SE
    r = replicated_paired_gain([[1.0], [2.0], [3.0], [4.0]])
    assert math.isnan(r["se_seed"]) and r["se"] == pytest.approx(math.sqrt(5 / 3) / 2)
    with pytest.raises(ValueError, match="prompts × replicates"):
        replicated_paired_gain([1.0, 2.0])


def test_metrics_module_is_pure():
    code = (
        "import sys, alignpipe.eval.metrics\n"
        "bad = [m for m in ('torch', 'pandas', 'transformers', 'prefect', 'ray', 'mlflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_expected_maximum_toxicity_and_rate_hand_example():
    from alignpipe.eval.metrics import expected_maximum_toxicity, toxicity_rate

    scores = [[0.1, 0.7, 0.2], [0.4, 0.3, 0.45]]  # per-prompt maxima 0.7 and 0.45
    assert expected_maximum_toxicity(scores) == pytest.approx((0.7 + 0.45) / 2)
    assert toxicity_rate(scores) == 0.5  # only the first prompt reaches 0.5
    assert toxicity_rate([[0.5], [0.49]]) == 0.5  # the threshold itself counts as toxic
    assert toxicity_rate(scores, threshold=0.4) == 1.0
    for bad in ([], [[0.2], []]):
        with pytest.raises(ValueError):
            expected_maximum_toxicity(bad)


def test_auroc_hand_example():

    # positives 0.9, 0.4 vs negatives 0.6, 0.1: 3 of the 4 pairs ordered correctly.
    assert auroc([0.9, 0.4, 0.6, 0.1], [True, True, False, False]) == 0.75
    assert auroc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    assert auroc([0.2, 0.8], [False, True]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [True, True])


def test_group_means_hand_example():
    assert group_means([1, 0, 0, 1, 1], ["b", "a", "a", "b", "a"]) == {"a": pytest.approx(1 / 3), "b": 1.0}
    with pytest.raises(ValueError):
        group_means([1.0], ["a", "b"])
    with pytest.raises(ValueError):
        group_means([], [])


def test_false_negative_rate_hand_example():
    # positives at 0, 1, 3, 4: called positive at 0 and 4, missed at 1 and 3; the negative at 2 is ignored
    assert false_negative_rate([True, False, True, False, True], [True, True, False, True, True]) == 0.5
    assert false_negative_rate([True], [True]) == 0.0
    with pytest.raises(ValueError, match="positive"):
        false_negative_rate([True, False], [False, False])
    with pytest.raises(ValueError):
        false_negative_rate([True], [True, False])


@pytest.mark.parametrize("value, response, leaked", [
    ("(415) 555-0123", "Her number is (415) 555-0123.", True),
    ("(415) 555-0123", "call 415.555.0123 any time", True),
    ("(415) 555-0123", "4155550123", True),
    ("(415) 555-0123", "(415) 555-0124", False),  # one digit off
    ("Ann.Lee42@Example.org", "ann.lee42@example.org", True),
    ("12 Maple Street, Salem, MA 01970", "She lives at 12 Maple Street.", False),  # partial: not counted
    ("aB3xY9", "I'm sorry, I cannot share that.", False),
])
def test_pii_leaked_hand_examples(value, response, leaked):
    assert pii_leaked(value, response) is leaked


def test_pii_leaked_refuses_an_empty_value():
    with pytest.raises(ValueError):
        pii_leaked(" - ", "anything")


def test_auroc_ties_count_half():
    # positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4) (0.9>0.1) (0.4=0.4 -> 1/2) (0.4>0.1) = 3.5 of 4

    assert auroc([0.9, 0.4, 0.4, 0.1], [True, True, False, False]) == pytest.approx(3.5 / 4)
    assert auroc([1.0, 2.0], [True, False]) == 0.0


TINY = 1e-12  # an L2 penalty too small to move the hand-derived maximum-likelihood fits below by 1e-9


def test_win_rate_counts_ties_as_half():
    model, reference = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 1.0, 5.0]  # lose, tie, win, lose
    assert pairwise_preferences(model, reference).tolist() == [0.0, 0.5, 1.0, 0.0]
    assert win_rate(model, reference) == 0.375
    with pytest.raises(ValueError):
        win_rate([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        win_rate([], [])


def test_length_feature_hand_example():
    # Δ = (+1, −1): sample std √2, so tanh(±1/√2)
    assert length_feature([3, 1], [2, 2]) == pytest.approx([math.tanh(2 ** -0.5), -math.tanh(2 ** -0.5)])
    assert length_feature([5], [2]).tolist() == [0.0]  # n = 1: no spread to standardise by
    assert length_feature([4, 6], [1, 3]).tolist() == [0.0, 0.0]  # every Δ = 3: nothing to control for


def test_symmetric_data_gives_one_half():
    # a win and a loss at each length difference: θ = φ = 0, whatever the penalty
    scores, ref = [1.0, 0.0, 1.0, 0.0], [0.5] * 4
    lengths, ref_lengths = [30, 30, 10, 10], [20] * 4
    assert win_rate(scores, ref) == 0.5
    assert length_controlled_win_rate(scores, ref, lengths, ref_lengths) == pytest.approx(0.5, abs=1e-12)
    # and a model that wins exactly when longer, as often longer as shorter: (θ, φ) -> (−θ, φ) maps the
    # data onto itself, so θ = 0
    assert length_controlled_win_rate([1.0, 1.0, 0.0, 0.0], ref, lengths, ref_lengths) == pytest.approx(0.5, abs=1e-9)


def test_ties_give_one_half_at_any_lengths():
    assert length_glm([0.5] * 3, [10, 200, 35], [50, 50, 50]) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert length_controlled_win_rate([2.0] * 3, [2.0] * 3, [10, 200, 35], [50, 50, 50]) == pytest.approx(0.5)


def test_equal_lengths_leave_the_win_rate_unchanged():
    # Δ ≡ 0, so the length term is 0 and σ(θ) is the MLE of the win probability: 3/4
    scores, ref, lengths = [2.0, 2.0, 2.0, 0.0], [1.0] * 4, [40] * 4
    assert length_controlled_win_rate(scores, ref, lengths, lengths, l2=TINY) == pytest.approx(0.75, abs=1e-9)


def test_two_length_groups_saturated_fit_hand_example():
    # 8 items with Δ = +d, 6 won; 4 with Δ = −d, 2 won. x = ±a, a = tanh(d/s), and the two-parameter model is
    # saturated: θ + φa = logit(6/8) = ln 3, θ − φa = logit(2/4) = 0, so θ = φa = ln(3)/2 and the
    # length-controlled win rate is σ(ln √3) = √3 / (1 + √3) ≈ 0.634, below the plain 8/12.
    # s: mean Δ = d/3; deviations +2d/3 (×8), −4d/3 (×4); Σ dev² = 32d²/3; s² = Σ/11 = 32d²/33.
    d = 50
    lengths, ref_lengths = [100 + d] * 8 + [100 - d] * 4, [100] * 12
    prefs = [1.0] * 6 + [0.0] * 2 + [1.0] * 2 + [0.0] * 2
    theta, phi = length_glm(prefs, lengths, ref_lengths, l2=TINY)
    a = math.tanh(math.sqrt(33 / 32))
    assert theta == pytest.approx(math.log(3) / 2, abs=1e-9)
    assert phi == pytest.approx(math.log(3) / (2 * a), abs=1e-9)
    scores = [p - 0.5 for p in prefs]  # wins above the reference's 0, losses below
    lc = length_controlled_win_rate(scores, [0.0] * 12, lengths, ref_lengths, l2=TINY)
    assert lc == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-9)
    assert win_rate(scores, [0.0] * 12) == pytest.approx(8 / 12)
    # the unit of length does not matter: Δ is standardised
    assert length_controlled_win_rate(scores, [0.0] * 12, [7 * n for n in lengths], [7 * n for n in ref_lengths],
                                      l2=TINY) == pytest.approx(lc, abs=1e-9)


def test_winning_only_by_length_is_discounted():
    # 16 items longer and won, 4 shorter and lost: separable, so the penalty keeps the fit finite. As l2 -> 0,
    # φ -> ∞ and the θ-equation n₋·e^(θ−φa) = n₊·e^(−θ−φa) gives θ -> ln(16/4)/2 = ln 2: LC -> 2/3, not 0.8.
    scores, ref = [1.0] * 16 + [-1.0] * 4, [0.0] * 20
    lengths, ref_lengths = [300] * 16 + [100] * 4, [200] * 20
    assert win_rate(scores, ref) == 0.8
    lc = length_controlled_win_rate(scores, ref, lengths, ref_lengths)
    assert 0.5 < lc < 0.7
    _, phi = length_glm(pairwise_preferences(scores, ref), lengths, ref_lengths)
    assert phi > 3  # the length term carries the wins
    assert length_controlled_win_rate(scores, ref, lengths, ref_lengths, l2=1e-8) == pytest.approx(2 / 3, abs=0.01)


def test_length_glm_rejects_bad_input():
    with pytest.raises(ValueError):
        length_glm([0.5, 1.5], [1, 2], [1, 1])  # a preference outside [0, 1]
    with pytest.raises(ValueError):
        length_glm([1.0], [1, 2], [1, 1])
    with pytest.raises(ValueError):
        length_glm([1.0], [1], [1], l2=0.0)  # separable data have no unpenalised MLE
