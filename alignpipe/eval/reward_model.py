"""Reward-model evaluation on held-out preference pairs, before and after length calibration (§2, §2b).

`evaluate_reward_model` scores every pair's chosen and rejected response with the RM
(`scoring.reward_scores`, encoded exactly as in RM training) and hands the numbers to
`reward_metrics`, which is pure numpy: pairwise accuracy (overall and per subset), reward
distribution, |Spearman(reward, length)|, agreement with gold preferences when the rows carry gold
scores, and, unless calibration is "none", the same after post-hoc length calibration (Huang et al.
2024) with a bias curve fitted on the pooled chosen + rejected responses. Length is in characters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from alignpipe.calibration import (
    BiasCurve,
    CalibrationError,
    calibrate,
    calibrated_pair_accuracy,
    fit_rc_lwr,
    fit_rc_mean,
    spearman,
    window_from_pairs,
)
from alignpipe.eval.scoring import reward_scores
from alignpipe.store import StageResult

Calibration = Literal["none", "mean", "lwr"]
_CALIBRATIONS = ("none", "mean", "lwr")


def _check_calibration(calibration: str) -> None:
    if calibration not in _CALIBRATIONS:
        raise ValueError(f"calibration must be one of {list(_CALIBRATIONS)}, got {calibration!r}")


def _check_pair_count(p: int) -> None:
    if p < 2:
        raise ValueError(f"reward-model evaluation needs at least 2 pairs, got {p}")


def _preference_metrics(
    chosen: np.ndarray, rejected: np.ndarray, lengths: np.ndarray,
    subsets: np.ndarray | None, gold_margin: np.ndarray | None,
) -> dict[str, float]:
    """Accuracy (margin > 0; ties wrong), per-subset accuracy, |Spearman| of pooled reward vs length
    and gold agreement for one set of rewards. chosen, rejected (p,); lengths (2p,) pooled in
    chosen-then-rejected order; subsets (p,) str; gold_margin (p,) gold_chosen − gold_rejected.
    """
    margin = chosen - rejected
    out = {"pairwise_accuracy": calibrated_pair_accuracy(chosen, rejected)}
    if subsets is not None:
        for s in sorted(set(subsets.tolist())):
            out[f"accuracy/{s}"] = float(np.mean(margin[subsets == s] > 0))
    out["abs_spearman"] = abs(spearman(np.concatenate([chosen, rejected]), lengths))
    if gold_margin is not None:
        untied = gold_margin != 0  # a gold tie states no preference, so it cannot be agreed with
        agree = np.sign(margin[untied]) == np.sign(gold_margin[untied])  # an RM tie never agrees
        out["gold_agreement"] = float(np.mean(agree)) if untied.any() else float("nan")
    return out


def reward_metrics(
    chosen_rewards: Sequence[float], rejected_rewards: Sequence[float],
    chosen_lengths: Sequence[float], rejected_lengths: Sequence[float],
    subsets: Sequence[str] | None = None,
    gold: tuple[Sequence[float], Sequence[float]] | None = None,
    *, calibration: Calibration = "lwr", lam: float = 1.0, frac: float = 0.9,
) -> tuple[dict[str, float], BiasCurve | None]:
    """Metrics of p scored preference pairs, and the fitted bias curve (None when calibration="none").

    chosen_rewards, rejected_rewards, chosen_lengths, rejected_lengths (p,), p ≥ 2; subsets (p,)
    names each pair's subset; gold = (chosen_gold, rejected_gold), each (p,). Keys:
    n_pairs, pairwise_accuracy, accuracy/<subset>, reward_{mean,std,p05,p50,p95} (pooled 2p
    rewards, population std), abs_spearman_reward_length (pooled), gold_agreement (fraction of
    pairs with untied gold whose RM margin has the gold margin's sign; NaN if every gold pair ties).
    With calibration "lwr" (RC-LWR, bandwidth frac) or "mean" (RC-Mean, d = window_from_pairs) the
    curve is fitted on the pooled responses, rewards become r − lam·b̂(c), and the same metrics are
    reported as calibrated_pairwise_accuracy, calibrated_accuracy/<subset>,
    calibrated_abs_spearman, calibrated_gold_agreement.

    Raises ValueError for p < 2 or an unknown calibration, and the calibration module's
    CalibrationError (naming the entry) for a NaN/infinite reward or mismatched array sizes.
    """
    _check_calibration(calibration)
    c, r = np.asarray(chosen_rewards, dtype=float), np.asarray(rejected_rewards, dtype=float)
    cl, rl = np.asarray(chosen_lengths, dtype=float), np.asarray(rejected_lengths, dtype=float)
    sizes = {"chosen rewards": c.size, "rejected rewards": r.size, "chosen lengths": cl.size,
             "rejected lengths": rl.size}
    if len(set(sizes.values())) > 1:
        raise CalibrationError(f"pair arrays differ in size: {sizes}")
    _check_pair_count(c.size)
    calibrated_pair_accuracy(c, r)  # refuses NaN / infinite rewards with the entry named
    groups = None if subsets is None else np.asarray([str(s) for s in subsets])
    if groups is not None and groups.size != c.size:
        raise ValueError(f"{groups.size} subset labels for {c.size} pairs")
    gold_margin = None if gold is None else _gold_margin(gold, c.size)

    lengths, pooled = np.concatenate([cl, rl]), np.concatenate([c, r])
    raw = _preference_metrics(c, r, lengths, groups, gold_margin)
    raw["abs_spearman_reward_length"] = raw.pop("abs_spearman")
    p05, p50, p95 = np.percentile(pooled, [5, 50, 95])
    metrics = {"n_pairs": float(c.size), **raw, "reward_mean": float(pooled.mean()),
               "reward_std": float(pooled.std()), "reward_p05": float(p05), "reward_p50": float(p50),
               "reward_p95": float(p95)}
    if calibration == "none":
        return metrics, None

    if calibration == "lwr":
        curve = fit_rc_lwr(lengths, pooled, frac=frac)
    else:
        curve = fit_rc_mean(lengths, pooled, d=window_from_pairs(cl, rl))
    fixed = calibrate(pooled, lengths, curve, lam)
    after = _preference_metrics(fixed[: c.size], fixed[c.size:], lengths, groups, gold_margin)
    metrics.update({f"calibrated_{k}": v for k, v in after.items()})
    return metrics, curve


def _gold_margin(gold: tuple[Sequence[float], Sequence[float]], p: int) -> np.ndarray:
    """gold = (chosen_gold, rejected_gold), each (p,) finite -> chosen − rejected (p,)."""
    gc, gr = (np.asarray(g, dtype=float) for g in gold)
    if gc.shape != (p,) or gr.shape != (p,):
        raise ValueError(f"gold scores must be two arrays of {p}, got shapes {gc.shape} and {gr.shape}")
    if not (np.isfinite(gc).all() and np.isfinite(gr).all()):
        raise ValueError("gold scores must be finite")
    return gc - gr


def _column(pairs: list[dict], keys: tuple[str, ...]) -> list | None:
    """Each row's value for the first of `keys` it has; None if no row has any; ValueError if only some do."""
    values = [next((row[k] for k in keys if k in row), None) for row in pairs]
    missing = [i for i, v in enumerate(values) if v is None]
    if len(missing) == len(values):
        return None
    if missing:
        raise ValueError(f"pair {missing[0]} has none of {list(keys)} but other pairs do")
    return values


def evaluate_reward_model(
    rm, tokenizer, pairs: list[dict], *, max_length: int, batch_size: int = 16,
    calibration: Calibration = "lwr", lam: float = 1.0, frac: float = 0.9,
) -> tuple[dict[str, float], BiasCurve | None]:
    """Score held-out pairs with `rm` (in eval mode) and return `reward_metrics` of them.

    pairs: rows {prompt, chosen, rejected} and optionally subset (or family) and
    chosen_gold/rejected_gold. Both responses of every pair are scored in one `reward_scores` call
    (raw rewards, truncated to max_length as in training); lengths are response characters. Returns
    (metrics, curve); save the curve with `curve.to_dict()` and draw it with `plot_reward_vs_length`.
    """
    _check_calibration(calibration)
    chosen, rejected = score_pairs(rm, tokenizer, pairs, max_length=max_length, batch_size=batch_size)
    return metrics_for_pairs(pairs, chosen, rejected, calibration=calibration, lam=lam, frac=frac)


def score_pairs(rm, tokenizer, pairs: list[dict], *, max_length: int, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Raw RM scores of every pair's chosen and rejected response, in one batched pass."""
    _check_pair_count(len(pairs))
    for i, row in enumerate(pairs):
        for k in ("prompt", "chosen", "rejected"):
            if not isinstance(row.get(k), str):
                raise ValueError(f"pair {i}: field '{k}' must be a string, got {row.get(k)!r:.60}")
    prompts = [row["prompt"] for row in pairs]
    scores = reward_scores(rm, tokenizer, prompts + prompts, [r["chosen"] for r in pairs] + [r["rejected"] for r in pairs],
                           max_length=max_length, batch_size=batch_size)
    return scores[: len(pairs)], scores[len(pairs):]


def metrics_for_pairs(pairs: list[dict], chosen: Sequence[float], rejected: Sequence[float], *,
                      calibration: Calibration, lam: float, frac: float) -> tuple[dict[str, float], BiasCurve | None]:
    """reward_metrics with the lengths, subsets and gold labels taken from the pair rows."""
    gold_c, gold_r = _column(pairs, ("chosen_gold",)), _column(pairs, ("rejected_gold",))
    return reward_metrics(
        chosen, rejected, [len(r["chosen"]) for r in pairs], [len(r["rejected"]) for r in pairs],
        subsets=_column(pairs, ("subset", "family")),
        gold=None if gold_c is None or gold_r is None else (gold_c, gold_r),
        calibration=calibration, lam=lam, frac=frac,
    )


def plot_reward_vs_length(
    lengths: Sequence[float], rewards: Sequence[float], calibrated: Sequence[float] | None,
    curve: BiasCurve | None, out_path: Path,
) -> Path:
    """Reward against response length (characters) before and after calibration; returns out_path.

    lengths, rewards, calibrated (n,) pooled responses. Left panel: raw rewards with the fitted
    bias curve b̂ drawn over them (gaps where RC-Mean left lengths uncalibrated); right panel:
    calibrated rewards. Titles give |Spearman| of each. Without `calibrated` only the left panel.
    PNG (Agg backend).
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: workers have no display
    from matplotlib.figure import Figure

    x, y = np.asarray(lengths, dtype=float), np.asarray(rewards, dtype=float)
    panels = [("raw", y)] if calibrated is None else [("raw", y), ("calibrated", np.asarray(calibrated, dtype=float))]
    for name, values in panels:
        if values.shape != x.shape:
            raise ValueError(f"plot_reward_vs_length: {values.size} {name} rewards for {x.size} lengths")

    fig = Figure(figsize=(6 * len(panels), 4.5))  # a bare Figure keeps pyplot's global state out of library code
    axes = fig.subplots(1, len(panels), sharex=True, squeeze=False)[0]
    for ax, (name, values) in zip(axes, panels, strict=True):
        ax.scatter(x, values, s=6, alpha=0.35, color="tab:blue", label=f"{name} reward")
        rho = abs(spearman(values, x)) if x.size >= 2 else float("nan")
        ax.set(title=f"{name}: |Spearman(reward, length)| = {rho:.3f}", xlabel="response length (characters)",
               ylabel="reward")
        ax.grid(True, alpha=0.3)
    if curve is not None:
        axes[0].plot(curve.lengths, curve.bias, color="tab:red", lw=2, label=f"bias curve ({curve.method})")
    if len(panels) == 2:
        axes[1].axhline(0.0, color="gray", lw=1)
    for ax in axes:
        ax.legend(loc="best")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120, bbox_inches="tight")
    return out_path


def run(cfg, rm_dir: Path, pair_sets: dict[str, list[dict]], out_dir: Path, *, max_length: int) -> StageResult:
    """The reward-model evaluation stage: for each named pair set, metrics prefixed `<set>/`, the
    fitted bias curve (`<set>_curve.json`) and the reward-vs-length plot before/after calibration.

    cfg is a RewardEvalConfig. A set with fewer than 2 pairs is refused (ValueError naming the count).
    """
    from alignpipe.models import RewardModel, load_tokenizer

    rm, tok = RewardModel.load(rm_dir), load_tokenizer(rm_dir)
    metrics: dict[str, float] = {}
    for name, pairs in pair_sets.items():
        chosen, rejected = score_pairs(rm, tok, pairs, max_length=max_length, batch_size=cfg.batch_size)
        set_metrics, curve = metrics_for_pairs(pairs, chosen, rejected, calibration=cfg.calibration, lam=cfg.lam, frac=cfg.frac)
        metrics |= {f"{name}/{k}": v for k, v in set_metrics.items()}
        lengths = [len(r["chosen"]) for r in pairs] + [len(r["rejected"]) for r in pairs]
        rewards = list(chosen) + list(rejected)
        calibrated = None
        if curve is not None:
            (out_dir / f"{name}_curve.json").write_text(json.dumps(curve.to_dict()))
            calibrated = calibrate(rewards, lengths, curve, cfg.lam)
        plot_reward_vs_length(lengths, rewards, calibrated, curve, out_dir / f"{name}_reward_vs_length.png")
    return StageResult(metrics=metrics)
