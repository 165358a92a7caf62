"""Post-hoc reward calibration (numpy only): remove the length bias b̂(c) from reward scores.

`fit_rc_lwr` / `fit_rc_mean` estimate a `BiasCurve` on pooled scored responses, `calibrate` applies
r̂ = r − λ·b̂(c), and `calibrated_pair_accuracy` / `spearman` report the effect (ALGORITHMS §2b).
"""

from alignpipe.calibration.length import (
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

__all__ = [
    "BiasCurve",
    "CalibrationError",
    "calibrate",
    "calibrated_pair_accuracy",
    "fit_rc_lwr",
    "fit_rc_mean",
    "lowess",
    "spearman",
    "window_from_pairs",
]
