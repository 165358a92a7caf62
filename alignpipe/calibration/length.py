"""Post-hoc length calibration of reward scores (Huang et al. 2024; ALGORITHMS §2b).

Model: r(x) = r*(x) + b(c(x)), c = response length in characters. Fit the bias curve b̂ on a pooled
set of scored responses, then r̂ = r − λ·b̂(c). Two estimators of b̂:

- RC-LWR (main method): b̂ = LOWESS of reward on length (`fit_rc_lwr`).
- RC-Mean: b̂(c_i) = mean reward within |c_j − c_i| ≤ d (`fit_rc_mean`), d from `window_from_pairs`.

LOWESS follows Cleveland (1979) as statsmodels implements it (tricube kernel, local linear fit,
bisquare robustness weights on residuals scaled by 6 × their median). Choices, and where they
differ from statsmodels:

- Neighbourhood size k = floor(frac·n) clamped to [2, n], as in Cleveland's Fortran, R and
  statsmodels (`int(frac*n + 1e-10)`); ceil(frac·n) would not match any of them whenever frac·n
  is not an integer. The radius h is the distance to the k-th nearest point (counting itself).
- Ties in x: the fit is computed once per distinct x, so tied points share one fitted value
  (statsmodels copies the first tied fit the same way). Where k or more points sit exactly at x
  (h = 0), those points get weight 1, as in Cleveland's / R's lowest() (distance ≤ 0.001·h weighs
  1); statsmodels divides 0/0 and returns the first tie's own y, an arbitrary pick among the ties.
- Where the positive-weight points span fewer than 2 distinct x the slope is undefined and the fit
  is their weighted mean (statsmodels uses the point's own y when < 2 weights are non-zero; the two
  agree unless the point's own robustness weight is 0). If every weight is 0 the fit is the plain
  mean of y at x.
- When over half the points are fitted exactly (median |residual| ≈ 0) robustifying stops and the
  current fit is returned, as R's lowess does. statsmodels instead gives weight 1 to residuals
  that are exactly 0 and 0 to the rest, so rounding noise picks the weights and windows can starve.
  Away from these degenerate cases the fit matches statsmodels to ~1e-12.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

_BLOCK_ELEMENTS = 1 << 21  # (queries × points) per LOWESS block, to bound memory at ~16 MB per array


class CalibrationError(ValueError):
    """Input a user can get wrong (NaN reward, mismatched arrays, bad frac); the message names it."""


# ---------------------------------------------------------------- validation


def _as_finite_1d(values: Any, name: str, *, nonnegative: bool = False) -> np.ndarray:
    """values -> float (n,) array; raise naming the first NaN / infinite / negative entry."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise CalibrationError(f"{name} must be a 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise CalibrationError(f"{name} at index {i} is {'NaN' if np.isnan(arr[i]) else 'infinite'}")
    if nonnegative and (arr < 0).any():
        i = int(np.flatnonzero(arr < 0)[0])
        raise CalibrationError(f"{name} at index {i} is negative ({arr[i]:g}); lengths count characters")
    return arr


def _check_same_size(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str, *, min_size: int) -> None:
    """Raise unless a and b have equal length of at least min_size."""
    if a.size != b.size:
        raise CalibrationError(f"{a_name} has {a.size} entries but {b_name} has {b.size}")
    if a.size < min_size:
        raise CalibrationError(f"need at least {min_size} points, got {a.size}")


def _check_scalar(value: float, name: str, low: float, *, low_open: bool = False, high: float = math.inf) -> float:
    """Return float(value) if it is finite and in [low, high] (or (low, high]); else raise naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and (v > low if low_open else v >= low) and v <= high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if math.isfinite(high) else ')'}"
        raise CalibrationError(f"{name} must lie in {interval}, got {value}")
    return v


def _check_int(value: int, name: str, minimum: int) -> int:
    """Return int(value) if it is an integer (Python or numpy, not bool) ≥ minimum; else raise naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise CalibrationError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- LOWESS (Cleveland 1979)


def _tricube(u: np.ndarray) -> np.ndarray:
    """W(u) = (1 − |u|³)³ for |u| < 1, else 0 (Cleveland 1979, §2 step 1). Any shape -> same shape."""
    v = np.minimum(np.abs(u), 1.0)
    v *= v * v  # products, not **: np.power is ~10x slower and this is the LOWESS hot loop
    np.subtract(1.0, v, out=v)
    v *= v * v
    return v


def _robustness_weights(residuals: np.ndarray) -> np.ndarray:
    """Bisquare B(e_i / 6s), s = median |e| > 0 (Cleveland 1979, §2 step 3). residuals (n,) -> (n,)."""
    abs_res = np.abs(residuals)
    u = np.minimum(abs_res / (6.0 * np.median(abs_res)), 1.0)
    return (1.0 - u**2) ** 2


def _fits_exactly(residuals: np.ndarray, y: np.ndarray) -> bool:
    """Are over half the points fitted to rounding level? residuals, y (n,) -> bool.

    Then the bisquare scale 6·median|e| is noise (or 0) and further passes would weight by it, so
    robustifying stops, as R's lowess does when 6·median|e| < 1e-7·mean|e|. The second test catches
    data lying exactly on a line, where every residual is rounding noise (~1e-16·|y|).
    """
    abs_res = np.abs(residuals)
    s = np.median(abs_res)
    return bool(6.0 * s < 1e-7 * np.mean(abs_res) or s <= 1e-11 * np.max(np.abs(y)))


def _knn_radius(xs: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance h from each query to its k-th nearest point, and the start of that k-window.

    xs (n,) sorted, xq (q,) -> h (q,), left (q,) int. The window slides right while the entering
    point is strictly closer than the leaving one (statsmodels' update_neighborhood, vectorised: the
    midpoints (xs[l] + xs[l+k]) / 2 are non-decreasing, so the stopping l is a searchsorted).
    """
    mid = (xs[: xs.size - k] + xs[k:]) / 2.0
    left = np.searchsorted(mid, xq, side="left")
    return np.maximum(xq - xs[left], xs[left + k - 1] - xq), left


def _fit_block(xg: np.ndarray, rw: np.ndarray, ryw: np.ndarray, xq: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Local linear fit at each query from distinct-x groups (Cleveland 1979, §2 step 2).

    xg (m,) distinct x; rw (m,) summed robustness weights and ryw (m,) summed robustness·y per
    group; xq, h (q,) -> (q,), NaN where every weight is 0. Tricube of |x − xq| / h; h = 0 (≥ k
    points tied at xq) weighs the tied group 1. Fewer than 2 positive-weight groups (distinct x):
    the slope is undefined, so the weighted mean.
    """
    u = np.subtract(xg[None, :], xq[:, None])
    np.abs(u, out=u)
    tied = h == 0
    u *= 1.0 / np.where(tied, 1.0, h)[:, None]
    u[tied] = np.where(u[tied] == 0, 0.0, 1.0)
    kern = _tricube(u)
    t = xg - xq.mean()  # centre x so that sxx = S2 − S1²/S0 loses few digits
    s0, s1, s2, t0, t1 = (kern @ np.stack([rw, rw * t, rw * t * t, ryw, ryw * t], axis=1)).T
    n_groups = (kern > 0).astype(np.float32) @ (rw > 0).astype(np.float32)  # exact below 2**24
    with np.errstate(divide="ignore", invalid="ignore"):
        t_bar, y_bar = s1 / s0, t0 / s0
        sxx, sxy = s2 - s1 * t_bar, t1 - s1 * y_bar
        line = y_bar + sxy / sxx * (xq - xq.mean() - t_bar)
    return np.where((n_groups >= 2) & (sxx > 0), line, y_bar)


def _lowess_pass(
    xu: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, rw: np.ndarray, ryw: np.ndarray
) -> np.ndarray:
    """Fit at every distinct x. xu, h, lo, hi, rw, ryw (q,) -> (q,).

    Query i only sees groups lo[i]:hi[i] (its k-window); queries go in blocks whose rows × window
    width stays under _BLOCK_ELEMENTS, so memory is bounded and no (n, n) matrix is built.
    """
    out = np.empty(xu.size)
    s = 0
    while s < xu.size:
        e = min(xu.size, s + max(1, _BLOCK_ELEMENTS // (hi[s] - lo[s])))
        while e - s > 1 and (e - s) * (hi[e - 1] - lo[s]) > _BLOCK_ELEMENTS:
            e = s + (e - s) // 2
        a, b = lo[s], hi[e - 1]
        out[s:e] = _fit_block(xu[a:b], rw[a:b], ryw[a:b], xu[s:e], h[s:e])
        s = e
    return out


def lowess(x: Any, y: Any, frac: float, iterations: int = 3) -> np.ndarray:
    """LOWESS fit of y on x at every x (Cleveland 1979). x, y (n,) -> fitted (n,), input order.

    Tricube kernel on the k = max(2, floor(frac·n)) nearest neighbours, local linear fit, then
    `iterations` robustifying passes with bisquare weights. Matches
    statsmodels.nonparametric.lowess(y, x, frac, it=iterations, delta=0, return_sorted=False) except
    on the degenerate windows listed in the module docstring. Cost O(#distinct x · k) per pass.
    """
    x, y = _as_finite_1d(x, "x"), _as_finite_1d(y, "y")
    _check_same_size(x, "x", y, "y", min_size=2)
    frac = _check_scalar(frac, "frac", 0.0, low_open=True, high=1.0)
    iterations = _check_int(iterations, "iterations", 0)
    k = min(x.size, max(2, int(frac * x.size + 1e-10)))  # floor, like Cleveland / R / statsmodels
    xu, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)  # ties share one fit
    h, left = _knn_radius(np.sort(x), xu, k)
    group_of_sorted, own = np.repeat(np.arange(xu.size), counts), np.arange(xu.size)
    lo = np.minimum(group_of_sorted[left], own)  # groups a query can weigh: its k-window (+ itself)
    hi = np.maximum(group_of_sorted[left + k - 1], own) + 1
    robust = np.ones_like(y)
    for it in range(iterations + 1):
        fit = _lowess_pass(xu, h, lo, hi, np.bincount(inverse, robust), np.bincount(inverse, robust * y))
        # every weight 0 (only after robustifying): fall back to the plain mean of y at that x
        fitted = np.where(np.isnan(fit), np.bincount(inverse, y) / counts, fit)[inverse]
        if it == iterations or _fits_exactly(y - fitted, y):
            return fitted
        robust = _robustness_weights(y - fitted)


# ---------------------------------------------------------------- the bias curve


@dataclass(frozen=True, eq=False)
class BiasCurve:
    """Fitted length bias b̂ at the pooled set's distinct lengths (ALGORITHMS §2b).

    lengths (m,) strictly increasing; bias (m,), NaN where RC-Mean left a length uncalibrated
    (window too sparse); method names the estimator ("rc_lwr" / "rc_mean"). m = 0 is allowed: the
    empty curve has bias 0 everywhere. Arrays are stored read-only; equality is identity (compare
    `to_dict()` outputs to compare curves).
    """

    lengths: np.ndarray
    bias: np.ndarray
    method: str

    def __post_init__(self) -> None:
        lengths, bias = np.array(self.lengths, dtype=float), np.array(self.bias, dtype=float)
        if lengths.ndim != 1 or bias.ndim != 1:
            raise CalibrationError(f"BiasCurve needs 1-D arrays, got shapes {lengths.shape} and {bias.shape}")
        if lengths.size != bias.size:
            raise CalibrationError(f"BiasCurve has {lengths.size} lengths but {bias.size} bias values")
        _as_finite_1d(lengths, "curve length")
        if np.isinf(bias).any():
            raise CalibrationError(f"curve bias at index {int(np.flatnonzero(np.isinf(bias))[0])} is infinite")
        if (np.diff(lengths) <= 0).any():
            raise CalibrationError("curve lengths must be strictly increasing")
        for name, arr in (("lengths", lengths), ("bias", bias)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __call__(self, lengths: Any) -> np.ndarray:
        """b̂ at `lengths` (any shape -> same shape).

        Linear interpolation between neighbouring knots, clamped to the end knots' values beyond the
        ends (the reference code raised past the largest length). A query whose bracketing knot(s)
        include an uncalibrated (NaN) one gets 0, i.e. stays uncalibrated; exactly at a finite knot
        it gets that knot's value, so in-sample points get their own fitted value.
        """
        c = np.asarray(lengths, dtype=float)
        if not np.isfinite(c).all():
            raise CalibrationError(f"query length at flat index {int(np.flatnonzero(~np.isfinite(c))[0])} is not finite")
        finite = np.isfinite(self.bias)
        if not finite.any():
            return np.zeros_like(c)
        value = np.interp(c, self.lengths[finite], self.bias[finite])
        m = self.lengths.size
        hi = np.searchsorted(self.lengths, c, side="left")  # first knot ≥ c
        exact = (hi < m) & (self.lengths[np.minimum(hi, m - 1)] == c)
        lo = np.clip(np.where(exact, hi, hi - 1), 0, m - 1)
        hi = np.minimum(hi, m - 1)
        return np.where(finite[lo] & finite[hi], value, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; NaN (uncalibrated) bias values become None."""
        bias = [None if math.isnan(b) else float(b) for b in self.bias]
        return {"method": self.method, "lengths": [float(c) for c in self.lengths], "bias": bias}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BiasCurve:
        """Inverse of `to_dict`; raise CalibrationError naming a missing key."""
        for key in ("method", "lengths", "bias"):
            if key not in data:
                raise CalibrationError(f"bias curve is missing key '{key}'")
        bias = [math.nan if b is None else b for b in data["bias"]]
        return cls(np.asarray(data["lengths"], float), np.asarray(bias, float), str(data["method"]))


# ---------------------------------------------------------------- estimators


def _validated_pool(lengths: Any, rewards: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pooled (lengths, rewards), each (n,), n ≥ 2, finite, lengths ≥ 0."""
    c = _as_finite_1d(lengths, "length", nonnegative=True)
    r = _as_finite_1d(rewards, "reward")
    _check_same_size(r, "rewards", c, "lengths", min_size=2)
    return c, r


def fit_rc_lwr(lengths: Any, rewards: Any, frac: float = 0.9, iterations: int = 3) -> BiasCurve:
    """RC-LWR (Huang et al. 2024; ALGORITHMS §2b): b̂ = LOWESS of reward on length.

    lengths, rewards (n,) pooled responses -> curve with a knot at each distinct length. frac = 0.9
    for RM benchmarks, 0.3 for large rollout pools. With a single distinct length the curve is the
    (robustly weighted) mean reward: calibration then shifts every reward by one constant.
    """
    c, r = _validated_pool(lengths, rewards)
    fitted = lowess(c, r, frac, iterations)
    knots, first = np.unique(c, return_index=True)
    return BiasCurve(knots, fitted[first], "rc_lwr")


def fit_rc_mean(lengths: Any, rewards: Any, d: float, min_points: int = 20) -> BiasCurve:
    """RC-Mean (Huang et al. 2024; ALGORITHMS §2b): b̂(c) = mean reward of points with |c_j − c| ≤ d.

    lengths, rewards (n,) -> curve with a knot at each distinct length. Where the closed window
    [c − d, c + d] holds fewer than `min_points` points the knot's bias is NaN ("leave
    uncalibrated"): `BiasCurve.__call__` returns 0 there. If n < min_points every knot is NaN and
    calibration is the identity.
    """
    c, r = _validated_pool(lengths, rewards)
    d = _check_scalar(d, "window d", 0.0)
    min_points = _check_int(min_points, "min_points", 1)
    order = np.argsort(c, kind="stable")
    c_sorted, cum = c[order], np.concatenate([[0.0], np.cumsum(r[order])])
    knots = np.unique(c)
    lo = np.searchsorted(c_sorted, knots - d, side="left")
    hi = np.searchsorted(c_sorted, knots + d, side="right")
    count = hi - lo  # ≥ 1: the knot's own points
    bias = np.where(count >= min_points, (cum[hi] - cum[lo]) / count, np.nan)
    return BiasCurve(knots, bias, "rc_mean")


def window_from_pairs(chosen_lengths: Any, rejected_lengths: Any) -> float:
    """RC-Mean window d = mean |c(chosen) − c(rejected)| / 4 (ALGORITHMS §2b). Both (p,) -> float."""
    c = _as_finite_1d(chosen_lengths, "chosen length", nonnegative=True)
    r = _as_finite_1d(rejected_lengths, "rejected length", nonnegative=True)
    _check_same_size(c, "chosen lengths", r, "rejected lengths", min_size=1)
    return float(np.mean(np.abs(c - r)) / 4.0)


def calibrate(rewards: Any, lengths: Any, curve: BiasCurve, lam: float = 1.0) -> np.ndarray:
    """r̂ = r − λ·b̂(c) (ALGORITHMS §2b). rewards, lengths (n,), any n ≥ 0 -> calibrated (n,).

    In-sample points (the lengths the curve was fitted on) get their own fitted value; uncalibrated
    RC-Mean lengths keep their reward.
    """
    r = _as_finite_1d(rewards, "reward")
    c = _as_finite_1d(lengths, "length", nonnegative=True)
    _check_same_size(r, "rewards", c, "lengths", min_size=0)
    lam = _check_scalar(lam, "lam", 0.0)
    return r - lam * curve(c)


# ---------------------------------------------------------------- evaluation


def calibrated_pair_accuracy(chosen_rewards: Any, rejected_rewards: Any) -> float:
    """Fraction of pairs with margin r_chosen − r_rejected > 0; ties count as wrong. (p,), (p,) -> float."""
    c = _as_finite_1d(chosen_rewards, "chosen reward")
    r = _as_finite_1d(rejected_rewards, "rejected reward")
    _check_same_size(c, "chosen rewards", r, "rejected rewards", min_size=1)
    return float(np.mean(c - r > 0))


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks. (n,) -> (n,)."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation with average ranks for ties. x, y (n,), n ≥ 2 -> float in [−1, 1].

    If x or y is constant the correlation is 0/0; we return 0.0, since a constant carries no
    ordering and so no monotone relation with the other variable can be measured.
    """
    x, y = _as_finite_1d(x, "x"), _as_finite_1d(y, "y")
    _check_same_size(x, "x", y, "y", min_size=2)
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return 0.0 if denom == 0 else float(np.clip((rx @ ry) / denom, -1.0, 1.0))
