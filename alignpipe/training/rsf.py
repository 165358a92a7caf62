"""RSF / RAFT (ALGORITHMS §3): rejection-sampling fine-tuning, the HMA paper's main RLHF algorithm.

Per iteration: sample `n` responses for each of `prompts_per_iteration` prompts (temperature
cfg.rsf.temperature, batched KV-cached generation), score them with the RM — normalised with the
RM's stored mean/std and length-calibrated on a rolling buffer when `reward_calibration` is set,
exactly the reward PPO optimises (`ppo.rm_rewards`; a prompt's n samples form one RC-Mean group) —
keep the best per prompt (rl.selection), and fine-tune on the kept set with the SFT loss (mean over
response tokens, as training/sft.py) for `steps_per_iteration` steps.

Which best samples are kept (`rsf.keep`):
- "best": every prompt's, RAFT's plain rule.
- "better_than_greedy" (the default): only those that out-score the policy's own greedy answer to
  the same prompt, scored in the same call (one more response in the prompt's calibration group);
  a best sample that is the greedy answer itself is not kept.
  This is RAFT's reward filter with a per-prompt threshold. Evaluation decodes greedily, and at
  temperature 1.0 the RM's best of 4 is worse by gold than the greedy answer on average
  (bench/best_of_n.py: −0.04 on the quickstart world). The plain rule then fine-tunes towards
  answers worse than the ones it is judged on. Worse, it fine-tunes on every prompt, so a template
  the RM over-rates spreads to prompts where it is wrong. The filter keeps only the prompts where a
  sample beats what the policy would already say, and an iteration that keeps none makes no update.

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
from alignpipe.rl.selection import best_over_baseline
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
    """n samples per prompt, scored; each prompt's best, kept per `cfg.keep`.

    -> samples (p lists of n), raw (p, n) RM scores, scores (p, n) the rewards selected on
    (normalised, calibrated), best (p,) index of each prompt's best sample, keep (p,) bool whether
    it is kept, kept (the kept (prompt, response) pairs); with keep "better_than_greedy" also
    greedy (p responses), greedy_raw and greedy_scores (p,).
    """
    p, n = len(prompts), cfg.n
    flat = [q for q in prompts for _ in range(n)]
    model.eval()
    responses = generate_responses(model, tok, flat, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                   batch_size=GENERATION_BATCH, seed=seed)
    greedy = (generate_responses(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=GENERATION_BATCH)
              if cfg.keep == "better_than_greedy" else [])
    raw, scores = rm_rewards(rm, rm_tok, calibrator, flat + (prompts if greedy else []), responses + greedy, max_length)
    samples = [responses[i * n : (i + 1) * n] for i in range(p)]
    # "best" keeps every prompt's best: its threshold is -inf
    baseline = torch.as_tensor(scores[p * n :]) if greedy else torch.full((p,), -torch.inf, dtype=torch.float64)
    best, keep = best_over_baseline(torch.as_tensor(scores[: p * n]).view(p, n), baseline)
    if greedy:  # the greedy answer sampled again is no improvement, whatever float noise its score picked up in another batch
        keep &= torch.tensor([row[j] != g for row, j, g in zip(samples, best.tolist(), greedy, strict=True)])
    out = {"greedy": greedy, "greedy_raw": raw[p * n :], "greedy_scores": scores[p * n :]} if greedy else {}
    best, keep = best.numpy(), keep.numpy()
    kept = [(q, row[j]) for q, row, j, k in zip(prompts, samples, best, keep, strict=True) if k]
    return {"samples": samples, "raw": raw[: p * n].reshape(p, n), "scores": scores[: p * n].reshape(p, n),
            "best": best, "keep": keep, "kept": kept, **out}


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
        examples = [encode(tok, q, r, max_length) for q, r in sel["kept"]]
        model.train()
        losses = []
        # an iteration that keeps nothing makes no update (and does not advance the lr schedule)
        for ex_idx in batch_indices(len(examples), cfg.optim.batch_size, rsf.steps_per_iteration if examples else 0,
                                    seed + it):
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
            "kept_fraction": float(sel["keep"].mean()),
            "sample_length": float(np.mean([len(r) for row in sel["samples"] for r in row])),
            "lr": sched.get_last_lr()[0], "truncated_examples": float(sum(e.truncated for e in examples)),
        }
        if "greedy_raw" in sel:
            metrics |= {"greedy_reward": float(sel["greedy_raw"].mean()), "greedy_score": float(sel["greedy_scores"].mean())}
        if examples:
            metrics |= {"kept_length": float(np.mean([len(r) for _, r in sel["kept"]])), "sft_loss": float(np.mean(losses)),
                        "sft_loss_last": losses[-1]}
        log.log(metrics, it)
        history.append(metrics)
        progress.update(it + 1)
        checkpoints.step_done(it + 1, rsf.iterations, state, {"history": history, "calibration": calibrator.state()},
                              updates=rsf.steps_per_iteration)
    model.save_pretrained(out_dir / "model", safe_serialization=True)
    tok.save_pretrained(out_dir / "model")
    last = history[-1]
    return StageResult(metrics={
        **{f"final_{k}": last[k] for k in ("best_reward", "sample_reward", "kept_fraction", "kept_length", "sft_loss")
           if k in last},
        "first_sample_reward": history[0]["sample_reward"], "iterations": len(history), "wall_time_s": time.time() - t0,
    })
