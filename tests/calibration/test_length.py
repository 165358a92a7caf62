"""Length calibration (ALGORITHMS §2b): hand-derived LOWESS / RC-Mean / curve / metric numbers, a
statsmodels cross-check, a synthetic length-bias experiment, degenerate inputs and every
validation error."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignpipe.calibration import (
    BiasCurve,
    CalibrationError,
    calibrate,
    calibrated_pair_accuracy,
    fit_rc_lwr,
    fit_rc_mean,
    lowess,
    spearman,
    window_from_pairs,
)

REPO = Path(__file__).resolve().parents[2]
T_HALF = (1 - 0.5**3) ** 3  # tricube weight at half the radius: 0.875³ = 0.669921875


# ---------------------------------------------------------------- LOWESS


def test_lowess_on_exact_line_returns_the_line_ties_included():
    x = np.array([0, 1, 1, 2, 3, 3, 3, 5, 8, 9, 9, 12], float)
    y = 2.0 + 0.5 * x
    for frac in (0.3, 0.6, 1.0):
        np.testing.assert_allclose(lowess(x, y, frac), y, atol=1e-10)


def test_lowess_symmetric_window_by_hand():
    # x = 0..4, frac = 1 -> k = 5; at x = 2 the radius is 2, weights [0, T(.5), 1, T(.5), 0].
    # x̄ = 2 = the query, so the local line's value there is the weighted mean 3·1 / (1 + 2·T(.5)).
    fit = lowess(np.arange(5.0), [0, 0, 3, 0, 0], frac=1.0, iterations=0)
    assert math.isclose(fit[2], 3 / (1 + 2 * T_HALF), rel_tol=1e-12)  # 1.28213689...


def test_lowess_bandwidth_is_floor_of_frac_times_n():
    # n = 10. frac 0.35 -> k = floor(3.5) = 3: at x = 5 the radius is 1, the neighbours at distance 1
    # weigh 0 and the fit is y[5] itself. frac 0.4 -> k = 4: radius 2, weights T(.5), 1, T(.5).
    y = np.zeros(10)
    y[5] = 1.0
    assert lowess(np.arange(10.0), y, 0.35, iterations=0)[5] == pytest.approx(1.0)
    assert lowess(np.arange(10.0), y, 0.4, iterations=0)[5] == pytest.approx(1 / (1 + 2 * T_HALF))


def test_lowess_outlier_is_downweighted_by_robust_iterations():
    x = np.arange(30.0)
    y = x + np.random.default_rng(0).normal(0, 0.1, 30)
    y[15] = 100.0
    plain, robust = lowess(x, y, 0.7, iterations=0), lowess(x, y, 0.7, iterations=3)
    assert np.all(np.abs(plain[13:18] - x[13:18]) > 5)  # the outlier drags the plain fit ...
    # ... and its bisquare weight (residual > 6·median) is 0, so the robust fit follows the line
    np.testing.assert_allclose(robust[13:18], x[13:18], atol=0.2)


def test_lowess_stops_robustifying_when_over_half_the_points_fit_exactly():
    # exact line plus one outlier, k = 10: the 11 points whose window misses the outlier fit exactly,
    # so median |residual| is rounding noise; like R, return the plain fit rather than weight by noise
    x = np.arange(20.0)
    y = x.copy()
    y[10] = 100.0
    np.testing.assert_array_equal(lowess(x, y, 0.5, iterations=3), lowess(x, y, 0.5, iterations=0))


def test_lowess_constant_x_is_the_mean_without_division_by_zero():
    # all x tied: radius 0, every point weighs 1, slope undefined -> mean. y symmetric about 3, so
    # the bisquare iterations keep symmetric weights and the robust mean stays 3.
    np.testing.assert_allclose(lowess([7.0] * 5, [1, 2, 3, 4, 5], 0.9), [3.0] * 5)
    np.testing.assert_allclose(lowess([7.0] * 4, [0, 0, 0, 4], 0.9, iterations=0), [1.0] * 4)


def test_lowess_window_of_one_distinct_x_falls_back_to_weighted_mean():
    # frac 0.8, n = 5 -> k = 4. At x = 0 the 4 nearest are the ties: radius 0 -> mean(1,2,3,4) = 2.5
    # (robust weights stay symmetric: residuals ±1.5, ±0.5). At x = 5 the radius is 5: only the
    # point itself weighs > 0 -> 100. (statsmodels returns the first tie's own y, 1, at x = 0.)
    fit = lowess([0, 0, 0, 0, 5], [1, 2, 3, 4, 100], 0.8)
    np.testing.assert_allclose(fit, [2.5, 2.5, 2.5, 2.5, 100.0])


def test_lowess_all_weights_zero_falls_back_to_mean_at_x():
    # k = 2. Pass 0: x = 0 (tied pair, radius 0) -> mean 1; every other point only sees itself -> its y.
    # Residuals [-1, 1, 0, 0, 0]: median 0, so the two tied points get robust weight 0 and pass 1 has
    # no weight at x = 0: the fit there is the plain mean of y at x = 0, not NaN.
    np.testing.assert_allclose(lowess([0, 0, 5, 10, 20], [0, 2, 7, 7, 7], 0.4, iterations=1), [1, 1, 7, 7, 7])


@pytest.mark.parametrize(
    "n, frac, iterations, tied",
    [(50, 0.9, 3, False), (200, 0.3, 3, False), (137, 0.45, 0, False), (301, 0.66, 2, True), (120, 0.9, 3, True)],
)
def test_lowess_matches_statsmodels(n, frac, iterations, tied):
    sm_lowess = pytest.importorskip("statsmodels.nonparametric.smoothers_lowess").lowess
    rng = np.random.default_rng(n)
    x = rng.integers(0, n // 2, n).astype(float) if tied else rng.uniform(0, 1000, n)
    y = np.sin(x / 150) + rng.standard_t(3, n)  # heavy tails exercise the bisquare weights
    expected = sm_lowess(y, x, frac=frac, it=iterations, delta=0, return_sorted=False)
    np.testing.assert_allclose(lowess(x, y, frac, iterations), expected, atol=1e-6)


# ---------------------------------------------------------------- RC-Mean


def test_window_from_pairs_by_hand():
    # |Δc| = 40, 20, 0 -> mean 20 -> d = 5
    assert window_from_pairs([100, 50, 30], [60, 70, 30]) == 5.0


def test_rc_mean_by_hand():
    # d = 10, min_points = 2. Windows: 10 -> {10, 20}: 1.5; 20 -> {10, 20, 30}: 2; 30 -> {20, 30, 40}: 3;
    # 40 -> {30, 40}: 3.5; 100 -> {100}: 1 point < 2 -> NaN (uncalibrated).
    lengths, rewards = [10, 20, 30, 40, 100], [1.0, 2.0, 3.0, 4.0, 10.0]
    curve = fit_rc_mean(lengths, rewards, d=10, min_points=2)
    np.testing.assert_array_equal(curve.lengths, [10, 20, 30, 40, 100])
    np.testing.assert_array_equal(curve.bias, [1.5, 2.0, 3.0, 3.5, np.nan])
    assert curve.method == "rc_mean"
    # in-sample: r − b̂; the uncalibrated point keeps its reward
    np.testing.assert_allclose(calibrate(rewards, lengths, curve), [-0.5, 0.0, 0.0, 0.5, 10.0])
    # new lengths: clamp below (5 -> 1.5), interpolate (15 -> 1.75), but a segment or end touching
    # the NaN knot stays uncalibrated (70 -> 0, 200 -> 0)
    np.testing.assert_allclose(curve([5, 15, 70, 100, 200]), [1.5, 1.75, 0.0, 0.0, 0.0])


def test_rc_mean_window_is_closed_and_ties_count():
    # d = 1, min_points 3: 0 -> [-1, 1] holds {0, 0, 1} (1 sits exactly at distance d): (0 + 2 + 4)/3 = 2;
    # 1 -> [0, 2] holds the same three: 2; 3 -> [2, 4] holds only itself: NaN
    curve = fit_rc_mean([0, 0, 1, 3], [0.0, 2.0, 4.0, 8.0], d=1, min_points=3)
    np.testing.assert_array_equal(curve.bias, [2.0, 2.0, np.nan])


def test_rc_mean_with_fewer_points_than_the_window_needs_is_the_identity():
    rewards = [0.3, -1.0, 2.5, 0.0, 1.0]
    curve = fit_rc_mean([10, 20, 30, 40, 50], rewards, d=100)  # 5 points < min_points 20 everywhere
    assert np.isnan(curve.bias).all()
    np.testing.assert_array_equal(calibrate(rewards, [10, 20, 30, 40, 50], curve), rewards)
    np.testing.assert_array_equal(curve([0, 25, 1000]), [0.0, 0.0, 0.0])


# ---------------------------------------------------------------- the curve


def test_curve_interpolates_and_clamps_at_both_ends():
    curve = BiasCurve([10, 20, 40], [1.0, 3.0, 2.0], "rc_lwr")
    # below 10 -> 1; 15 -> 2; 30 -> 2.5; past 40 -> 2 (the reference lookup raised here)
    np.testing.assert_allclose(curve([0, 10, 15, 30, 40, 1e6]), [1, 1, 2, 2.5, 2, 2])


def test_empty_curve_is_zero_everywhere():
    curve = BiasCurve(np.array([]), np.array([]), "rc_mean")
    np.testing.assert_array_equal(calibrate([1.0, 2.0], [5, 50], curve), [1.0, 2.0])


def test_curve_round_trips_through_json():
    curve = BiasCurve([10, 20, 30], [0.5, np.nan, -1.25], "rc_mean")
    data = json.loads(json.dumps(curve.to_dict(), allow_nan=False))  # strict JSON: NaN -> null
    assert data == {"method": "rc_mean", "lengths": [10.0, 20.0, 30.0], "bias": [0.5, None, -1.25]}
    back = BiasCurve.from_dict(data)
    np.testing.assert_array_equal(back.bias, curve.bias)
    assert back.to_dict() == curve.to_dict()


def test_curve_arrays_are_read_only():
    curve = BiasCurve([1, 2], [0.0, 1.0], "rc_lwr")
    with pytest.raises(ValueError):
        curve.bias[0] = 5.0


# ---------------------------------------------------------------- RC-LWR


def test_rc_lwr_in_sample_points_get_their_own_fitted_value():
    rng = np.random.default_rng(3)
    lengths = rng.integers(20, 400, 60).astype(float)
    rewards = 0.01 * lengths + rng.normal(size=60)
    curve = fit_rc_lwr(lengths, rewards)
    fitted = lowess(lengths, rewards, 0.9, 3)
    np.testing.assert_allclose(curve(lengths), fitted, rtol=0, atol=1e-12)
    np.testing.assert_allclose(calibrate(rewards, lengths, curve), rewards - fitted, atol=1e-12)
    np.testing.assert_allclose(calibrate(rewards, lengths, curve, lam=0.5), rewards - 0.5 * fitted, atol=1e-12)
    np.testing.assert_array_equal(calibrate(rewards, lengths, curve, lam=0.0), rewards)


def test_rc_lwr_all_lengths_equal_shifts_by_a_constant():
    # one distinct length: bias = robust mean of [1..5] = 3 (symmetric), so r̂ = r − 3 everywhere
    chosen, rejected = np.array([2.0, 5.0, 3.0]), np.array([1.0, 4.0, 3.0])
    lengths = np.full(6, 100.0)
    curve = fit_rc_lwr(lengths, np.concatenate([chosen, rejected]))
    np.testing.assert_allclose(curve.bias, [3.0])
    out = calibrate(np.concatenate([chosen, rejected]), lengths, curve)
    np.testing.assert_allclose(out, [-1, 2, 0, -2, 1, 0], atol=1e-12)
    assert calibrated_pair_accuracy(out[:3], out[3:]) == calibrated_pair_accuracy(chosen, rejected) == 2 / 3


def test_synthetic_length_bias_is_removed():
    # reward = quality + 0.01·length + noise, length independent of quality; the chosen response of a
    # pair is the one with higher true quality. Seeded numbers: |ρ| 0.924 -> 0.001, accuracy 0.598 -> 0.846.
    rng = np.random.default_rng(0)
    p = 1000
    quality = rng.normal(size=(2, p))
    q_chosen, q_rejected = quality.max(axis=0), quality.min(axis=0)
    len_chosen, len_rejected = rng.integers(100, 1001, p), rng.integers(100, 1001, p)
    r_chosen = q_chosen + 0.01 * len_chosen + rng.normal(0, 0.5, p)
    r_rejected = q_rejected + 0.01 * len_rejected + rng.normal(0, 0.5, p)
    lengths, rewards = np.concatenate([len_chosen, len_rejected]), np.concatenate([r_chosen, r_rejected])

    calibrated = calibrate(rewards, lengths, fit_rc_lwr(lengths, rewards, frac=0.9))

    assert abs(spearman(rewards, lengths)) > 0.5
    assert abs(spearman(calibrated, lengths)) < 0.1
    before = calibrated_pair_accuracy(r_chosen, r_rejected)
    after = calibrated_pair_accuracy(calibrated[:p], calibrated[p:])
    assert after > before + 0.1


# ---------------------------------------------------------------- metrics


def test_pair_accuracy_counts_ties_as_wrong():
    # margins 1, 0 (tie), −1, 1 -> 2 of 4 correct
    assert calibrated_pair_accuracy([1, 2, 3, 0], [0, 2, 4, -1]) == 0.5


def test_spearman_by_hand_with_ties():
    # ranks x [1, 2.5, 2.5, 4], y [1, 3, 2, 4]; centred: [-1.5, 0, 0, 1.5], [-1.5, .5, -.5, 1.5]
    # Σ = 4.5, Σx² = 4.5, Σy² = 5 -> ρ = 4.5 / √22.5 = √0.9
    assert math.isclose(spearman([1, 2, 2, 3], [1, 3, 2, 4]), math.sqrt(0.9), rel_tol=1e-12)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([5, 5, 5], [1, 2, 3]) == 0.0  # constant input: no ordering to correlate


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 5, 40), rng.integers(0, 7, 40)
    assert math.isclose(spearman(x, y), stats.spearmanr(x, y).statistic, rel_tol=1e-12)


# ---------------------------------------------------------------- validation


GOOD = np.arange(10.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fit_rc_lwr(GOOD, np.where(GOOD == 7, np.nan, GOOD)), "reward at index 7 is NaN"),
        (lambda: fit_rc_lwr(np.where(GOOD == 3, np.inf, GOOD), GOOD), "length at index 3 is infinite"),
        (lambda: fit_rc_lwr(np.where(GOOD == 2, -5, GOOD), GOOD), "length at index 2 is negative"),
        (lambda: fit_rc_lwr(GOOD, GOOD[:9]), "rewards has 9 entries but lengths has 10"),
        (lambda: fit_rc_lwr([3.0], [1.0]), "at least 2 points, got 1"),
        (lambda: fit_rc_lwr(GOOD, GOOD, frac=0.0), r"frac must lie in \(0, 1\]"),
        (lambda: fit_rc_lwr(GOOD, GOOD, frac=1.5), r"frac must lie in \(0, 1\]"),
        (lambda: fit_rc_lwr(GOOD, GOOD, iterations=-1), "iterations must be an integer ≥ 0, got -1"),
        (lambda: fit_rc_mean(GOOD, GOOD, d=-1.0), r"window d must lie in \[0, inf\), got -1.0"),
        (lambda: fit_rc_mean(GOOD, GOOD, d="wide"), "window d must lie in"),
        (lambda: fit_rc_lwr(GOOD, GOOD, iterations=2.5), "iterations must be an integer"),
        (lambda: fit_rc_mean(GOOD, GOOD, d=1.0, min_points=0), "min_points must be an integer ≥ 1, got 0"),
        (lambda: lowess(GOOD, np.where(GOOD == 4, np.nan, GOOD), 0.5), "y at index 4 is NaN"),
        (lambda: lowess(np.ones((2, 2)), np.ones((2, 2)), 0.5), "x must be a 1-D array"),
        (lambda: calibrate(GOOD, GOOD, BiasCurve([1], [0.0], "rc_lwr"), lam=-0.1), r"lam must lie in \[0, inf\)"),
        (lambda: calibrate(GOOD, GOOD[:3], BiasCurve([1], [0.0], "rc_lwr")), "rewards has 10 entries but lengths has 3"),
        (lambda: window_from_pairs([1, 2], [1]), "chosen lengths has 2 entries but rejected lengths has 1"),
        (lambda: calibrated_pair_accuracy([], []), "at least 1 points, got 0"),
        (lambda: calibrated_pair_accuracy([1.0, np.nan], [0.0, 0.0]), "chosen reward at index 1 is NaN"),
        (lambda: spearman([1.0, 2.0], [1.0, np.inf]), "y at index 1 is infinite"),
        (lambda: BiasCurve([2, 1], [0.0, 0.0], "rc_lwr"), "strictly increasing"),
        (lambda: BiasCurve([1, 2], [0.0], "rc_lwr"), "2 lengths but 1 bias values"),
        (lambda: BiasCurve([[1, 2]], [[0.0, 1.0]], "rc_lwr"), "1-D arrays"),
        (lambda: BiasCurve([1, 2], [0.0, np.inf], "rc_lwr"), "curve bias at index 1 is infinite"),
        (lambda: BiasCurve.from_dict({"method": "rc_lwr", "lengths": [1.0]}), "missing key 'bias'"),
        (lambda: BiasCurve([1, 2], [0.0, 1.0], "rc_lwr")([np.nan]), "query length at flat index 0 is not finite"),
    ],
)
def test_bad_input_raises_calibration_error_naming_the_problem(call, message):
    with pytest.raises(CalibrationError, match=message):
        call()


def test_calibration_error_is_a_value_error():
    assert issubclass(CalibrationError, ValueError)


def test_module_imports_only_numpy_and_stdlib():
    heavy = ("torch", "transformers", "prefect", "ray", "mlflow", "statsmodels", "scipy", "pandas")
    code = f"import sys, alignpipe.calibration; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
