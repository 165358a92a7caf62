"""Rolling-buffer length calibration of rollout rewards (issue #4): hand-computed windows and
calibrated values, buffer eviction, the too-few-points pass-through, and equality with a one-off
`calibrate(fit_rc_lwr(...))` on the buffer."""

import numpy as np
import pytest

from alignpipe.calibration import CalibrationError, calibrate, fit_rc_lwr
from alignpipe.calibration.rolling import RollingCalibrator, window_from_groups


def test_window_from_same_prompt_pairs_by_hand():
    # group a: |1 − 3| = 2; group b: |10 − 14| = 4 -> mean 3, / 4
    assert window_from_groups([1, 3, 10, 14], ["a", "a", "b", "b"]) == pytest.approx(0.75)
    # a group of three: gaps 1, 3, 2 -> mean 2, / 4; the singleton group adds no pair
    assert window_from_groups([5, 6, 8, 100], ["a", "a", "a", "b"]) == pytest.approx(0.5)


def test_window_falls_back_to_all_pairs_without_repeated_prompts():
    # gaps 4, 8, 4 -> mean 16/3, / 4
    assert window_from_groups([0, 4, 8], ["a", "b", "c"]) == pytest.approx(4 / 3)
    assert window_from_groups([7], ["a"]) == 0.0


def test_passes_rewards_through_until_the_buffer_holds_min_points():
    cal = RollingCalibrator("lwr", capacity=50, min_points=5)
    out = cal.update([10, 20, 30], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    assert cal.curve is None and len(cal) == 3
    # a pure length bias r = 0.1·c: once calibrating, LOWESS recovers the line and nothing is left
    out = cal.update([40, 50], [4.0, 5.0])
    assert cal.curve is not None
    np.testing.assert_allclose(out, 0.0, atol=1e-9)


def test_buffer_evicts_the_oldest_points():
    cal = RollingCalibrator("lwr", capacity=4, min_points=2)
    cal.update([1, 2, 3], [0.1, 0.2, 0.3])
    cal.update([4, 5, 6], [0.4, 0.5, 0.6])
    lengths, rewards = cal.buffer
    np.testing.assert_array_equal(lengths, [3, 4, 5, 6])
    np.testing.assert_array_equal(rewards, [0.3, 0.4, 0.5, 0.6])


def test_lwr_equals_a_one_off_fit_on_the_buffer():
    rng = np.random.default_rng(0)
    cal = RollingCalibrator("lwr", capacity=40, frac=0.5, min_points=10)
    for _ in range(4):  # 60 points pushed, the last 40 kept
        c = rng.integers(5, 80, size=15)
        r = 0.02 * c + rng.normal(size=15)
        out = cal.update(c, r)
    pool_c, pool_r = cal.buffer
    assert pool_c.size == 40
    np.testing.assert_allclose(out, calibrate(r, c, fit_rc_lwr(pool_c, pool_r, 0.5)), atol=1e-12)


def test_rc_mean_by_hand():
    # d = mean gap over all 6 pairs (0, 10, 10, 10, 10, 0) = 20/3, / 4 = 5/3 < 10: each window holds
    # only its own length's two points, whose mean is the bias -> [1, 3] − 2 and [5, 7] − 6
    cal = RollingCalibrator("mean", capacity=10, min_points=2)
    np.testing.assert_allclose(cal.update([0, 0, 10, 10], [1.0, 3.0, 5.0, 7.0]), [-1.0, 1.0, -1.0, 1.0])


def test_rc_mean_leaves_sparse_windows_uncalibrated():
    # same prompt "p" for all: d = mean gap (0, 100, 100) / 4 = 200/3/4 ≈ 16.7, so length 100 sits
    # alone in its window (1 < min_points = 2) and keeps its reward; the pair at 0 is centred
    cal = RollingCalibrator("mean", capacity=10, min_points=2)
    out = cal.update([0, 0, 100], [1.0, 3.0, 9.0], groups=["p", "p", "p"])
    np.testing.assert_allclose(out, [-1.0, 1.0, 9.0])


def test_none_is_the_identity_and_keeps_no_buffer():
    cal = RollingCalibrator("none", capacity=8)
    np.testing.assert_array_equal(cal.update([1, 2], [0.5, -0.5]), [0.5, -0.5])
    assert len(cal) == 0 and cal.curve is None


def test_bad_input_is_named():
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        RollingCalibrator("lowess", capacity=8)
    cal = RollingCalibrator("lwr", capacity=8)
    with pytest.raises(CalibrationError, match="2 lengths but 1 rewards"):
        cal.update([1, 2], [0.5])
    with pytest.raises(CalibrationError, match="NaN"):
        cal.update([1, 2], [0.5, float("nan")])
