"""RSF / RAFT (ALGORITHMS §3): rejection-sampling fine-tuning, the HMA paper's main RLHF algorithm.

Per iteration: sample `n` responses for each of `prompts_per_iteration` prompts (temperature
cfg.rsf.temperature, batched KV-cached generation), score them with the RM — normalised with the
RM's stored mean/std and length-calibrated on a rolling buffer when `reward_calibration` is set,
exactly the reward PPO optimises (`ppo.rm_rewards`; a prompt's n samples form one RC-Mean group) —
keep the best per prompt (rl.selection), and fine-tune on the kept set with the SFT loss (mean over
response tokens, as training/sft.py) for `steps_per_iteration` steps.

Simplifications: one lr schedule (warm-up + cosine, cfg.optim.lr) spans all iterations' SFT steps;
there is no KL term or reference model (RAFT has none); a sample cut off at max_new_tokens competes
like any other (the kept response is trained on with an EOS appended, as every SFT example is).
Resumable at iteration boundaries (training/checkpoint.py); wall_time_s counts the last invocation.
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from alignpipe.calibration.rolling import RollingCalibrator
from alignpipe.config import RLHFConfig, RSFConfig
from alignpipe.data.chat import collate, encode
from alignpipe.eval.generation import generate_responses
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.rl.selection import best_of_n
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints
from alignpipe.training.forward import response_token_logps
from alignpipe.training.optim import batch_indices, make_optimizer, seed_everything
from alignpipe.training.ppo import rm_rewards
from alignpipe.training.progress import Progress

GENERATION_BATCH = 64


def sample_and_select(model, tok, rm: RewardModel, rm_tok, calibrator: RollingCalibrator, prompts: list[str],
                      cfg: RSFConfig, *, max_length: int, seed: int) -> dict:
    """n samples per prompt, scored; the best of each prompt kept.

    -> samples (p lists of n), raw (p, n) RM scores, scores (p, n) the rewards selected on
    (normalised, calibrated), best (p,) index of the kept sample, kept (p responses).
    """
    flat = [p for p in prompts for _ in range(cfg.n)]
    model.eval()
    responses = generate_responses(model, tok, flat, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                   batch_size=GENERATION_BATCH, seed=seed)
    raw, scores = rm_rewards(rm, rm_tok, calibrator, flat, responses, max_length)
    samples = [responses[i * cfg.n : (i + 1) * cfg.n] for i in range(len(prompts))]
    best = best_of_n(torch.as_tensor(scores).view(len(prompts), cfg.n)).numpy()
    return {"samples": samples, "raw": raw.reshape(len(prompts), cfg.n), "scores": scores.reshape(len(prompts), cfg.n),
            "best": best, "kept": [row[j] for row, j in zip(samples, best, strict=True)]}


def run(cfg: RLHFConfig, policy_dir: Path, rm_dir: Path, prompts: list[str], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int, checkpoints: Checkpoints = NO_CHECKPOINTS) -> StageResult:
    """RSF of the policy in `policy_dir` against the RM in `rm_dir` on `prompts`; saved to out_dir/model."""
    if not prompts:
        raise ValueError("RSF needs at least one prompt")
    seed_everything(seed)
    rsf = cfg.rsf
    model, tok = load_policy(policy_dir)
    rm, rm_tok = RewardModel.load(rm_dir), load_tokenizer(rm_dir)
    calibrator = RollingCalibrator(cfg.reward_calibration, cfg.calibration_buffer, frac=cfg.calibration_frac,
                                   lam=cfg.calibration_lam)
    opt, sched = make_optimizer(model.parameters(), cfg.optim.model_copy(update={"steps": rsf.iterations * rsf.steps_per_iteration}))
    state = {"model": model, "optimizer": opt, "scheduler": sched}
    start, saved, log = checkpoints.resume("rsf", state, log)
    calibrator.load_state(saved.get("calibration", []))
    t0, history, progress = time.time(), saved.get("history", []), Progress("rsf", rsf.iterations, start)
    batches = batch_indices(len(prompts), min(rsf.prompts_per_iteration, len(prompts)), rsf.iterations, seed)
    for it, idx in islice(enumerate(batches), start, None):
        batch_prompts = [prompts[i] for i in idx]
        sel = sample_and_select(model, tok, rm, rm_tok, calibrator, batch_prompts, rsf, max_length=max_length, seed=seed + it)
        examples = [encode(tok, p, r, max_length) for p, r in zip(batch_prompts, sel["kept"], strict=True)]
        model.train()
        losses = []
        for ex_idx in batch_indices(len(examples), cfg.optim.batch_size, rsf.steps_per_iteration, seed + it):
            batch = collate([examples[i] for i in ex_idx], tok.pad_token_id, model.device)
            logps, _ = response_token_logps(model, batch)
            loss = -logps.mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        rows = np.arange(len(idx))
        metrics = {
            "best_reward": float(sel["raw"][rows, sel["best"]].mean()), "sample_reward": float(sel["raw"].mean()),
            "best_score": float(sel["scores"][rows, sel["best"]].mean()), "sample_score": float(sel["scores"].mean()),
            "kept_length": float(np.mean([len(r) for r in sel["kept"]])),
            "sample_length": float(np.mean([len(r) for row in sel["samples"] for r in row])),
            "sft_loss": float(np.mean(losses)), "sft_loss_last": losses[-1], "lr": sched.get_last_lr()[0],
            "truncated_examples": float(sum(e.truncated for e in examples)),
        }
        log.log(metrics, it)
        history.append(metrics)
        progress.update(it + 1)
        checkpoints.step_done(it + 1, rsf.iterations, state, {"history": history, "calibration": calibrator.state()},
                              updates=rsf.steps_per_iteration)
    model.save_pretrained(out_dir / "model", safe_serialization=True)
    tok.save_pretrained(out_dir / "model")
    last = history[-1]
    return StageResult(metrics={
        **{f"final_{k}": last[k] for k in ("best_reward", "sample_reward", "kept_length", "sft_loss")},
        "first_sample_reward": history[0]["sample_reward"], "iterations": len(history), "wall_time_s": time.time() - t0,
    })
