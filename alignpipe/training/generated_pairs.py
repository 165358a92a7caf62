"""DPO on pairs the pipeline builds itself (issue #4): the SFT policy's own samples, labelled by the
(length-calibrated) reward model or by the built-in world's annotator, then the DPO loop of training/dpo.py
(reference = the SFT policy).

`annotate_pairs` (generated_pairs.labeller = annotator): the same n samples per prompt, labelled by
world.label_samples (the highest- vs the lowest-gold sample; the longer one with probability
data.world.length_bias), as InstructGPT's labellers compared SFT samples. No RM and no calibration. Its
diagnostics (`annotated_stats`) say how much the samples differ: mean, best-of-n and worst-of-n gold.

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
from alignpipe.data import world
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


def sample(policy, tok, prompts: list[str], cfg: GeneratedPairsConfig, *, seed: int) -> list[list[str]]:
    """cfg.n seeded temperature samples per prompt (batched, KV-cached) -> one list of n responses per prompt."""
    flat = [p for p in prompts for _ in range(cfg.n)]
    policy.eval()
    responses = generate_responses(policy, tok, flat, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                   batch_size=GENERATION_BATCH, seed=seed)
    return [responses[i * cfg.n : (i + 1) * cfg.n] for i in range(len(prompts))]


def build_pairs(policy, tok, rm: RewardModel, rm_tok, prompts: list[str], cfg: GeneratedPairsConfig,
                calibration: Method, *, frac: float, max_length: int, seed: int,
                lam: float = 1.0, min_points: int = 20) -> tuple[list[dict], dict[str, float], BiasCurve | None]:
    """Sample cfg.n responses per prompt from `policy`, score, calibrate on the pool, label best vs worst.

    -> (rows as `label_pairs`, `pair_stats`, the fitted bias curve or None). Raises ValueError when
    every prompt's samples tie (no pair to train on).
    """
    samples = sample(policy, tok, prompts, cfg, seed=seed)
    flat = [p for p in prompts for _ in range(cfg.n)]
    responses = [r for row in samples for r in row]
    raw, z = rm_rewards(rm, rm_tok, RollingCalibrator("none", 1), flat, responses, max_length)  # z = (raw − μ)/σ
    shape = (len(prompts), cfg.n)
    lengths = np.array([len(r) for r in responses]).reshape(shape)
    calibrated, curve = calibrate_pool(lengths, z.reshape(shape), calibration, frac=frac, lam=lam,
                                       min_points=min_points)
    rows, stats = label_pairs(prompts, samples, raw.reshape(shape), calibrated)
    if not rows:
        raise ValueError(f"all {len(prompts)} prompts' {cfg.n} samples tied on the reward: no DPO pair to train on "
                         "(raise rlhf.generated_pairs.n or .temperature)")
    return rows, stats, curve


def annotated_stats(rows: list[dict], samples: list[list[str]], golds: list[list[float]]) -> dict[str, float]:
    """What the annotator saw and picked: pairs kept / dropped (all samples tied in gold), the samples' mean gold and
    best / worst-of-n gold, the trained pairs' chosen / rejected gold and length (characters), the share of pairs
    whose chosen side is the longer, and the share whose label follows gold (1 unless the annotator is length-biased)."""
    kept = len(rows)
    mean = lambda xs: float(np.mean(xs)) if len(xs) else math.nan  # noqa: E731
    return {"pairs_kept": float(kept), "pairs_dropped": float(len(samples) - kept),
            "sample_gold": mean([g for row in golds for g in row]), "best_of_n_gold": mean([max(g) for g in golds]),
            "worst_of_n_gold": mean([min(g) for g in golds]),
            "chosen_gold": mean([r["chosen_gold"] for r in rows]), "rejected_gold": mean([r["rejected_gold"] for r in rows]),
            "chosen_length": mean([len(r["chosen"]) for r in rows]), "rejected_length": mean([len(r["rejected"]) for r in rows]),
            "chosen_longer": mean([len(r["chosen"]) > len(r["rejected"]) for r in rows]),
            "gold_agrees": mean([r["gold_agrees"] for r in rows])}


def annotate_pairs(policy, tok, prompts: list[dict], cfg: GeneratedPairsConfig, *, seed: int,
                   length_bias: float = 0.0) -> tuple[list[dict], dict[str, float]]:
    """Sample cfg.n responses per prompt and let the built-in world's annotator label them (world.label_samples:
    highest- vs lowest-gold sample, the longer one with probability `length_bias`): on-policy preference data as
    human labellers give it. prompts: rows {prompt, family, spec}. -> (rows, `annotated_stats`)."""
    samples = sample(policy, tok, [p["prompt"] for p in prompts], cfg, seed=seed)
    asked = [{"instruction": p["prompt"], "family": p["family"], "spec": p["spec"]} for p in prompts]
    golds = [[world.gold_score(p["family"], p["spec"], r) for r in row] for p, row in zip(prompts, samples, strict=True)]
    rows = world.label_samples(asked, samples, seed, length_bias, golds)  # scored once, for the labels and the stats
    if not rows:
        raise ValueError(f"all {len(prompts)} prompts' {cfg.n} samples tied in gold: no DPO pair to train on "
                         "(raise rlhf.generated_pairs.n or .temperature)")
    return rows, annotated_stats(rows, samples, golds)


def prompt_rows(pairs: list[dict], labeller: str) -> list[dict]:
    """The pairs' distinct prompts, first occurrence kept. For the annotator each row also carries its family and
    spec (the built-in world's pairs have them); ValueError naming the first row without them."""
    rows = list({r["prompt"]: r for r in pairs}.values())
    if labeller == "annotator":
        for i, r in enumerate(rows):
            missing = [k for k in ("family", "spec") if not r.get(k)]
            if missing:
                raise ValueError(f"rlhf.generated_pairs.labeller 'annotator' labels by the built-in world's gold score: "
                                 f"pair prompt {i} ({r['prompt']!r:.60}) has no {' / '.join(missing)} (external pairs "
                                 "have no annotator; use labeller 'reward_model')")
    return rows


def run(cfg: RLHFConfig, policy_dir: Path, rm_dir: Path | None, pairs: list[dict], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int, length_bias: float = 0.0) -> StageResult:
    """DPO of the policy in `policy_dir` on pairs of its own samples, labelled by the RM in `rm_dir` or by the
    built-in world's annotator (cfg.generated_pairs.labeller; `length_bias`: the annotator's, data.world.length_bias).

    Takes cfg.generated_pairs.prompts of the distinct prompts of `pairs` (a seeded draw); writes
    generated_pairs.parquet (and calibration_curve.json when a curve was fitted) beside the DPO model in out_dir.
    """
    gp = cfg.generated_pairs
    prompts = prompt_rows(pairs, gp.labeller)
    if not prompts:
        raise ValueError("DPO on generated pairs needs at least one prompt")
    seed_everything(seed)
    picked = [prompts[i] for i in next(batch_indices(len(prompts), min(gp.prompts, len(prompts)), 1, seed))]
    policy, tok = load_policy(policy_dir)
    curve = None
    if gp.labeller == "annotator":
        rows, stats = annotate_pairs(policy, tok, picked, gp, seed=seed, length_bias=length_bias)
    else:
        if rm_dir is None:
            raise ValueError("rlhf.generated_pairs.labeller 'reward_model' needs the reward model")
        rm, rm_tok = RewardModel.load(rm_dir), load_tokenizer(rm_dir)
        rows, stats, curve = build_pairs(policy, tok, rm, rm_tok, [p["prompt"] for p in picked], gp,
                                         cfg.reward_calibration, frac=cfg.calibration_frac, lam=cfg.calibration_lam,
                                         max_length=max_length, seed=seed)
        del rm
    del policy  # DPO loads its own copy of the policy, trained and used as the reference
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"generated_pairs.parquet": write_snapshot(rows, out_dir / "generated_pairs.parquet")}
    if curve is not None:
        (out_dir / "calibration_curve.json").write_text(json.dumps(curve.to_dict()))
    result = dpo.run(cfg, policy_dir, rows, out_dir, log, max_length=max_length, seed=seed)
    return StageResult(metrics=result.metrics | stats, data=result.data | data, info=result.info)
