"""Evaluation metrics: probe accuracy, alignment tax, the reward/tax Pareto front, error bars.

Pure: stdlib and numpy only, so the analysis side of the pipeline can use it without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def alignment_tax(accuracy: float, reference_accuracy: float) -> float:
    """Drop in probe accuracy vs the reference (SFT) model, as a fraction (0.06 = 6 points): reference − accuracy (positive = ability lost)."""
    return reference_accuracy - accuracy


def _check_same_length(predictions: Sequence, answers: Sequence) -> None:
    """Raise ValueError unless both sequences are non-empty and of equal length."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    if len(predictions) == 0:
        raise ValueError("accuracy of an empty set of predictions is undefined")


def accuracy(predictions: Sequence[int], answers: Sequence[int]) -> float:
    """Fraction of predictions equal to their answer, in [0, 1]. ValueError on length mismatch or empty input."""
    _check_same_length(predictions, answers)
    return sum(int(p) == int(a) for p, a in zip(predictions, answers, strict=True)) / len(answers)


def per_group_accuracy(predictions: Sequence[int], answers: Sequence[int], groups: Sequence[str]) -> dict[str, float]:
    """Accuracy within each group (e.g. probe family), keys sorted. ValueError on length mismatch or empty input."""
    _check_same_length(predictions, answers)
    if len(groups) != len(answers):
        raise ValueError(f"{len(groups)} groups but {len(answers)} answers")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return {
        g: accuracy([predictions[i] for i in idx], [answers[i] for i in idx])
        for g, idx in sorted(members.items())
    }


def pareto_front(rewards: Sequence[float], taxes: Sequence[float]) -> list[int]:
    """Indices of non-dominated points when maximising reward and minimising tax, sorted by tax ascending.

    A point is dominated if another is >= on reward and <= on tax and strictly better on one.
    Exact duplicates do not dominate each other, so both are kept. Ties in tax are broken by
    reward descending, then index. O(n²), which is plenty for a handful of merged models.
    """
    if len(rewards) != len(taxes):
        raise ValueError(f"{len(rewards)} rewards but {len(taxes)} taxes")
    r, t = np.asarray(rewards, dtype=float), np.asarray(taxes, dtype=float)

    def dominated(i: int) -> bool:
        no_worse = (r >= r[i]) & (t <= t[i])
        better = (r > r[i]) | (t < t[i])
        return bool(np.any(no_worse & better))

    front = [i for i in range(len(r)) if not dominated(i)]
    return sorted(front, key=lambda i: (t[i], -r[i], i))


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean): stderr = sample std (ddof=1) / sqrt(n); 0 for n == 1. ValueError if empty."""
    if len(values) == 0:
        raise ValueError("mean of an empty sequence is undefined")
    x = np.asarray(values, dtype=float)
    if len(x) == 1:
        return float(x[0]), 0.0
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
