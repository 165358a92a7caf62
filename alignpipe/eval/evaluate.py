"""Evaluate one model: generated responses scored by the RM and the world's gold checker, plus
knowledge-probe accuracy (the ability whose loss is the alignment tax).

Responses are greedy by default (temperature 0): with a few dozen prompts, sampling noise would
swamp the differences between neighbouring averaged models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from alignpipe.config import EvaluationConfig
from alignpipe.data.snapshot import write_snapshot
from alignpipe.eval.generation import generate_responses
from alignpipe.eval.metrics import accuracy, per_group_accuracy
from alignpipe.eval.probes import score_probes
from alignpipe.eval.scoring import gold_scores, reward_scores
from alignpipe.models import RewardModel, load_tokenizer
from alignpipe.store import StageResult


def run(model, tok, rm_dir: Path, prompts: list[dict], probes: list[dict], cfg: EvaluationConfig,
        out_dir: Path, *, max_length: int, seed: int, generate: Callable = generate_responses) -> StageResult:
    """Evaluate a loaded policy (checkpoint, in-memory merge, …); write responses.parquet and
    probes.parquet to out_dir; return the model's metrics.

    `generate(model, tok, prompts, *, max_new_tokens, temperature, batch_size, seed) -> responses` is
    plain decoding by default; a decoding-time aligner (Linear Alignment) passes its own. Probes are
    always scored by the model's own log-likelihoods: the tax is the policy's, not the decoder's.
    """
    torch.manual_seed(seed)
    texts = [p["prompt"] for p in prompts]
    responses = generate(model, tok, texts, max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, batch_size=cfg.batch_size, seed=seed)
    predicted = score_probes(model, tok, probes, batch_size=2 * cfg.batch_size)
    del model
    rm = RewardModel.load(rm_dir)
    rewards = reward_scores(rm, load_tokenizer(rm_dir), texts, responses, max_length=max_length, batch_size=cfg.batch_size)
    gold = gold_scores(prompts, responses)
    rows = [{"id": p["id"], "family": p["family"], "prompt": p["prompt"], "response": r, "gold_score": g,
             "rm_score": s, "length": len(r)} for p, r, g, s in zip(prompts, responses, gold, rewards, strict=True)]
    answers = [p["answer"] for p in probes]
    data = {
        "responses.parquet": write_snapshot(rows, out_dir / "responses.parquet"),
        "probes.parquet": write_snapshot([{"id": p["id"], "family": p["family"], "predicted": y, "answer": p["answer"]}
                                          for p, y in zip(probes, predicted, strict=True)], out_dir / "probes.parquet"),
    }
    metrics = {
        "gold_score": _mean(gold), "rm_score": _mean(rewards),
        "rm_score_normalised": (_mean(rewards) - rm.mean) / rm.std,
        "response_length": _mean([len(r) for r in responses]),
        "probe_accuracy": accuracy(predicted, answers),
        "probe_chance": _mean([1 / len(p["options"]) for p in probes]),  # the floor the base model must beat
    }
    metrics |= {f"probe_accuracy/{k}": v for k, v in per_group_accuracy(predicted, answers, [p["family"] for p in probes]).items()}
    for fam in sorted({p["family"] for p in prompts}):
        metrics[f"gold_score/{fam}"] = _mean([g for p, g in zip(prompts, gold, strict=True) if p["family"] == fam])
    unseen = [g for p, g in zip(prompts, gold, strict=True) if not p.get("seen_in_training", False)]
    if unseen:  # instructions never shown in training: generalisation, not recall
        metrics["gold_score/unseen"] = _mean(unseen)
    return StageResult(metrics=metrics, data=data)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
