"""Best-of-n selection for rejection-sampling fine-tuning (RSF / RAFT, ALGORITHMS §3), and best-vs-worst
selection for DPO pairs built from a policy's own samples."""

from __future__ import annotations

import torch
from torch import Tensor


def best_of_n(rewards: Tensor) -> Tensor:
    """Index of the highest-reward sample per prompt. rewards (p, n) -> (p,) long.

    Ties go to the lowest index (torch.argmax returns the first maximum), so selection is
    deterministic. Raises ValueError on NaN rewards, which argmax would otherwise pick silently.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, samples), got shape {tuple(rewards.shape)}")
    if torch.isnan(rewards).any():
        raise ValueError("rewards contain NaN")
    return rewards.argmax(dim=1)


def best_over_baseline(rewards: Tensor, baseline: Tensor) -> tuple[Tensor, Tensor]:
    """RAFT's reward filter with a per-prompt threshold: the best sample of each prompt, and whether it
    beats that prompt's baseline reward strictly (a tie keeps nothing: it would teach what the baseline
    already does). rewards (p, n), baseline (p,) -> best (p,) long, keep (p,) bool. Raises ValueError on
    NaN or a shape mismatch.
    """
    best = best_of_n(rewards)
    if baseline.shape != best.shape:
        raise ValueError(f"baseline shape {tuple(baseline.shape)} does not match {best.shape[0]} prompts")
    if torch.isnan(baseline).any():
        raise ValueError("baseline rewards contain NaN")
    return best, rewards.gather(1, best[:, None]).squeeze(1) > baseline


def best_and_worst(rewards: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per prompt the highest- and lowest-reward sample, and whether they form a pair.

    rewards (p, n) -> best (p,) long, worst (p,) long, distinct (p,) bool. Ties go to the lowest
    index on both sides (first maximum, first minimum); a prompt whose best and worst rewards are
    equal (every sample tied) has distinct False: it carries no preference. Raises ValueError on NaN.
    """
    best = best_of_n(rewards)
    worst = rewards.argmin(dim=1)
    return best, worst, rewards.amax(dim=1) > rewards.amin(dim=1)


def select_best(samples: list[list[str]], rewards: Tensor) -> list[str]:
    """The kept set of one RSF iteration: the best of each prompt's n samples.

    samples: p lists of n responses; rewards (p, n), rewards[i, j] scoring samples[i][j] -> p responses.
    """
    rewards = torch.as_tensor(rewards)
    if rewards.dim() != 2 or rewards.shape[0] != len(samples):
        raise ValueError(f"rewards shape {tuple(rewards.shape)} does not match {len(samples)} prompts")
    for i, row in enumerate(samples):
        if len(row) != rewards.shape[1]:
            raise ValueError(f"prompt {i} has {len(row)} samples but {rewards.shape[1]} rewards")
    return [row[j] for row, j in zip(samples, best_of_n(rewards).tolist(), strict=True)]
