"""DPO on pairs the pipeline builds itself (issue #4): the SFT policy's own samples, labelled by the
(length-calibrated) reward model, then the DPO loop of training/dpo.py (reference = the SFT policy).

`build_pairs`: n samples per prompt (temperature sampling, batched KV-cached generation, seeded, as
RSF samples), scored by the RM and normalised with its stored mean/std as PPO and RSF score
rollouts (`ppo.rm_rewards`), length-calibrated (`calibrate_pool`), and per prompt chosen = the
highest calibrated reward, rejected = the lowest (`label_pairs`).

Choices and simplifications:
- Calibration is ONE fit on the pooled scored samples of this round (every prompt × n), made by
  the rolling calibrator with a buffer of exactly that size, i.e. the same estimators: RC-LWR with
  bandwidth `rlhf.calibration_frac`, or RC-Mean with a prompt's n samples as one group (window d =
  mean same-prompt length gap / 4); λ = `rlhf.calibration_lam`. A pool of fewer than 20 samples stays
  uncalibrated (RC-Mean's minimum window), as the rolling calibrator does.
- A prompt whose best and worst calibrated rewards are equal carries no preference: it is dropped
  and counted (`pairs_dropped`). Ties inside a prompt go to the lowest sample index.
- Samples are drawn once, before training (offline DPO on the SFT policy's samples; no
  regeneration as the policy moves). A sample cut off at max_new_tokens competes like any other
  (no EOS penalty, unlike PPO).
- Logged with the DPO metrics: pairs_kept / pairs_dropped, chosen_longer_{raw,calibrated} (share of
  pairs whose chosen side is strictly longer, labelling by the raw or by the calibrated reward),
  chosen_length / rejected_length (characters, the trained pairs), and |Spearman(reward, length)|
  of the pool before and after calibration.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from alignpipe.calibration.length import BiasCurve, spearman
from alignpipe.calibration.rolling import Method, RollingCalibrator
from alignpipe.config import GeneratedPairsConfig, RLHFConfig
from alignpipe.data.snapshot import write_snapshot
from alignpipe.eval.generation import generate_responses
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.rl.selection import best_and_worst
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training import dpo
from alignpipe.training.optim import batch_indices, seed_everything
from alignpipe.training.ppo import rm_rewards

GENERATION_BATCH = 64


def calibrate_pool(lengths: np.ndarray, scores: np.ndarray, method: Method, *, frac: float = 0.3, lam: float = 1.0,
                   min_points: int = 20) -> tuple[np.ndarray, BiasCurve | None]:
    """Scores minus λ × the length bias fitted once on the whole pool. lengths, scores (p, n) -> ((p, n), curve).

    Row i (prompt i's n samples) is one RC-Mean group. The curve is None when nothing was fitted
    (method "none", or fewer than `min_points` samples): the scores come back unchanged.
    """
    if lengths.shape != scores.shape or scores.ndim != 2:
        raise ValueError(f"lengths {lengths.shape} and scores {scores.shape} must be the same (prompts, samples) shape")
    calibrator = RollingCalibrator(method, max(1, scores.size), frac=frac, lam=lam, min_points=min_points)
    groups = np.repeat(np.arange(scores.shape[0]), scores.shape[1]).tolist()
    calibrated = calibrator.update(lengths.ravel(), scores.ravel(), groups=groups)
    return calibrated.reshape(scores.shape), calibrator.curve


def _chosen_longer(lengths: np.ndarray, rewards: np.ndarray) -> float:
    """Share of prompts with a preference under `rewards` whose best sample is strictly longer than its worst."""
    best, worst, distinct = (t.numpy() for t in best_and_worst(torch.as_tensor(rewards)))
    rows = np.flatnonzero(distinct)
    return float(np.mean(lengths[rows, best[rows]] > lengths[rows, worst[rows]])) if rows.size else math.nan


def pair_stats(lengths: np.ndarray, raw: np.ndarray, calibrated: np.ndarray) -> dict[str, float]:
    """Length diagnostics of a pool labelled by raw vs calibrated reward. lengths, raw, calibrated (p, n) -> metrics.

    chosen_length / rejected_length and pairs_kept / pairs_dropped are of the calibrated labelling
    (the pairs trained on); a share over no pairs, or a mean over none, is NaN.
    """
    best, worst, distinct = (t.numpy() for t in best_and_worst(torch.as_tensor(calibrated)))
    rows = np.flatnonzero(distinct)
    kept = rows.size > 0
    c, r = lengths.ravel().astype(float), raw.ravel().astype(float)
    return {
        "pairs_kept": float(rows.size), "pairs_dropped": float(len(distinct) - rows.size),
        "chosen_longer_raw": _chosen_longer(lengths, raw), "chosen_longer_calibrated": _chosen_longer(lengths, calibrated),
        "chosen_length": float(lengths[rows, best[rows]].mean()) if kept else math.nan,
        "rejected_length": float(lengths[rows, worst[rows]].mean()) if kept else math.nan,
        "abs_spearman_length_raw": abs(spearman(r, c)),
        "abs_spearman_length_calibrated": abs(spearman(calibrated.ravel().astype(float), c)),
    }


def label_pairs(prompts: list[str], samples: list[list[str]], raw: np.ndarray,
                calibrated: np.ndarray) -> tuple[list[dict], dict[str, float]]:
    """Per prompt chosen = highest calibrated reward, rejected = lowest; prompts whose samples all tie are dropped.

    prompts (p,), samples p lists of n, raw (p, n) RM scores, calibrated (p, n) the rewards labelled
    by -> rows {prompt, chosen, rejected, {chosen,rejected}_{raw_reward,calibrated_reward,length}}
    (length in characters), and `pair_stats`.
    """
    raw, calibrated = np.asarray(raw, float), np.asarray(calibrated, float)
    if raw.shape != calibrated.shape or raw.ndim != 2 or not len(prompts) == raw.shape[0] == len(samples) \
            or any(len(row) != raw.shape[1] for row in samples):
        raise ValueError(f"rewards {raw.shape} / {calibrated.shape} do not match {len(prompts)} prompts' samples")
    lengths = np.array([[len(s) for s in row] for row in samples])
    best, worst, distinct = (t.tolist() for t in best_and_worst(torch.as_tensor(calibrated)))
    rows = []
    for i, (prompt, row) in enumerate(zip(prompts, samples, strict=True)):
        if not distinct[i]:
            continue
        sides = {"chosen": best[i], "rejected": worst[i]}
        rows.append({"prompt": prompt, **{side: row[j] for side, j in sides.items()},
                     **{f"{side}_raw_reward": float(raw[i, j]) for side, j in sides.items()},
                     **{f"{side}_calibrated_reward": float(calibrated[i, j]) for side, j in sides.items()},
                     **{f"{side}_length": int(lengths[i, j]) for side, j in sides.items()}})
    return rows, pair_stats(lengths, raw, calibrated)


def build_pairs(policy, tok, rm: RewardModel, rm_tok, prompts: list[str], cfg: GeneratedPairsConfig,
                calibration: Method, *, frac: float, max_length: int, seed: int,
                lam: float = 1.0, min_points: int = 20) -> tuple[list[dict], dict[str, float], BiasCurve | None]:
    """Sample cfg.n responses per prompt from `policy`, score, calibrate on the pool, label best vs worst.

    -> (rows as `label_pairs`, `pair_stats`, the fitted bias curve or None). Raises ValueError when
    every prompt's samples tie (no pair to train on).
    """
    flat = [p for p in prompts for _ in range(cfg.n)]
    policy.eval()
    responses = generate_responses(policy, tok, flat, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                   batch_size=GENERATION_BATCH, seed=seed)
    raw, z = rm_rewards(rm, rm_tok, RollingCalibrator("none", 1), flat, responses, max_length)  # z = (raw − μ)/σ
    shape = (len(prompts), cfg.n)
    lengths = np.array([len(r) for r in responses]).reshape(shape)
    calibrated, curve = calibrate_pool(lengths, z.reshape(shape), calibration, frac=frac, lam=lam,
                                   min_points=min_points)
    samples = [responses[i * cfg.n : (i + 1) * cfg.n] for i in range(len(prompts))]
    rows, stats = label_pairs(prompts, samples, raw.reshape(shape), calibrated)
    if not rows:
        raise ValueError(f"all {len(prompts)} prompts' {cfg.n} samples tied on the reward: no DPO pair to train on "
                         "(raise rlhf.generated_pairs.n or .temperature)")
    return rows, stats, curve


def run(cfg: RLHFConfig, policy_dir: Path, rm_dir: Path, prompts: list[str], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int) -> StageResult:
    """DPO of the policy in `policy_dir` on pairs of its own samples labelled by the RM in `rm_dir`.

    Takes cfg.generated_pairs.prompts of `prompts` (a seeded draw); writes generated_pairs.parquet
    (and calibration_curve.json when a curve was fitted) beside the DPO model in out_dir.
    """
    if not prompts:
        raise ValueError("DPO on generated pairs needs at least one prompt")
    seed_everything(seed)
    gp = cfg.generated_pairs
    picked = [prompts[i] for i in next(batch_indices(len(prompts), min(gp.prompts, len(prompts)), 1, seed))]
    policy, tok = load_policy(policy_dir)
    rm, rm_tok = RewardModel.load(rm_dir), load_tokenizer(rm_dir)
    rows, stats, curve = build_pairs(policy, tok, rm, rm_tok, picked, gp, cfg.reward_calibration,
                                     frac=cfg.calibration_frac, lam=cfg.calibration_lam, max_length=max_length, seed=seed)
    del policy, rm  # DPO loads its own copy of the policy, trained and used as the reference
    data = {"generated_pairs.parquet": write_snapshot(rows, out_dir / "generated_pairs.parquet")}
    if curve is not None:
        (out_dir / "calibration_curve.json").write_text(json.dumps(curve.to_dict()))
    result = dpo.run(cfg, policy_dir, rows, out_dir, log, max_length=max_length, seed=seed)
    return StageResult(metrics=result.metrics | stats, data=result.data | data, info=result.info)
