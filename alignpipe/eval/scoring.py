"""Scores for generated responses: the learned reward model's, and the world's gold checker's.

The RM sees a (prompt, response) exactly as in its training (`chat.encode`: template, response,
EOS; right-padded by `chat.collate`), so its scores here are comparable with those it was fit on.
"""

from __future__ import annotations

import torch

from alignpipe.data import world
from alignpipe.data.chat import collate, encode
from alignpipe.eval.generation import length_sorted_batches
from alignpipe.models.reward import RewardModel


def reward_scores(
    rm: RewardModel, tokenizer, prompts: list[str], responses: list[str], *, max_length: int, batch_size: int = 16,
) -> list[float]:
    """RM score of each (prompt, response), in input order. Raw rewards (rm.mean/std not applied).

    Encoded with `chat.encode` (truncated to max_length as in training), batched by length and
    right-padded via `collate`; per batch input_ids, attention_mask (b, t) -> rewards (b,), under
    inference_mode. The RM pools the last attended position, so padding does not move a score.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    encoded = [encode(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    device = next(rm.parameters()).device
    scores = [0.0] * len(encoded)
    with torch.inference_mode():
        for batch in length_sorted_batches([len(e.input_ids) for e in encoded], batch_size):
            b = collate([encoded[i] for i in batch], tokenizer.pad_token_id)
            rewards = rm(b["input_ids"].to(device), b["attention_mask"].to(device))
            for i, r in zip(batch, rewards.float().tolist(), strict=True):
                scores[i] = r
    return scores


def gold_scores(rows: list[dict], responses: list[str]) -> list[float]:
    """Gold score in [0, 1] of each response for its prompt row: world.gold_score(row["family"], row["spec"], response);
    NaN for an external prompt (family "external"), which has no gold checker."""
    if len(rows) != len(responses):
        raise ValueError(f"{len(rows)} prompt rows but {len(responses)} responses")
    return [float("nan") if row["family"] == "external" else world.gold_score(row["family"], row["spec"], r)
            for row, r in zip(rows, responses, strict=True)]
