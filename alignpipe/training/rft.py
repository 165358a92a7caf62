"""RFT: IRL-based SFT with an explicit reward (Li et al. 2024; ALGORITHMS §1b), from demonstrations only.

Each of `cfg.rft.rounds` rounds:
1. sample the policy's own response to a batch of rft.rm_steps × optim.batch_size demonstration
   prompts (at the PPO rollout temperature and length);
2. train the reward model for `rm_steps` Bradley–Terry steps (lr rft.rm_lr, reward centring
   c = 0.01 as §2) on (demonstration ≻ own sample) pairs, dropping pairs whose sample equals the
   demonstration; then set its normalisation stats (mean/std) from this round's pairs;
3. run `ppo_rollouts` PPO rollouts (training/ppo.PPOLearner) against it.
The RM is initialised once from the starting model's backbone and keeps training across rounds
(the alternating max-min of maximum-likelihood IRL); the PPO learner (policy, value head,
reference = the starting model) persists across rounds too.

PPO settings: `PPOConfig()` defaults with rollouts = rft.ppo_rollouts and kl_coef = rft.kl_coef (the
penalty is to the starting model); the policy's optimiser is cfg.optim (warm-up, clipping) at lr
rft.policy_lr, its schedule spanning every PPO update of the run (optim.steps is plain SFT's and ignored
here). No reward calibration (the RM is re-fitted every round anyway). rft.sft_weight (default 1) adds
that multiple of the demonstrations' token NLL to every PPO update (PPO-ptx on the demonstrations, as
sft.irft.sft_weight does for IRFT; logged as ptx_loss); 0 is §1b's RFT exactly.
Logged: rm_loss, rm_accuracy, rm_margin (means over the round's RM steps, measured before each
update), rm_pairs at step = round; the PPO diagnostics (training/ppo.py) at step = rollout index.
Resumable at round boundaries (training/checkpoint.py): policy, value head, RM (and its mean/std),
their optimisers and schedules, RNGs and the histories; wall_time_s counts the last invocation.
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from alignpipe.calibration.rolling import RollingCalibrator
from alignpipe.config import OptimConfig, PPOConfig, SFTConfig
from alignpipe.data.chat import encode
from alignpipe.eval.generation import generate_responses
from alignpipe.losses.preference import bradley_terry_loss
from alignpipe.models import RewardModel, load_policy
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints
from alignpipe.training.optim import batch_indices, make_optimizer, seed_everything
from alignpipe.training.ppo import PPOLearner, rm_rewards, updates_per_rollout
from alignpipe.training.progress import Progress
from alignpipe.training.reward_model import encode_pairs, pair_rewards, score_pairs

CENTER_COEF = 0.01  # reward centring (§2)


def demonstration_pairs(rows: list[dict], own: list[str]) -> list[dict]:
    """(demonstration ≻ own sample) pairs {prompt, chosen, rejected}, dropping those whose sample equals the demonstration."""
    return [{"prompt": r["prompt"], "chosen": r["response"], "rejected": o}
            for r, o in zip(rows, own, strict=True) if o.strip() != r["response"].strip()]


def train_reward_model(rm: RewardModel, opt, sched, tok, pairs: list[dict], optim: OptimConfig, steps: int,
                       *, max_length: int, seed: int) -> dict[str, float]:
    """`steps` Bradley–Terry steps on pairs {prompt, chosen, rejected}; then rm.mean/std from their rewards."""
    encoded = encode_pairs(tok, pairs, max_length)
    rm.train()
    stats: dict[str, list[float]] = {"rm_loss": [], "rm_accuracy": [], "rm_margin": []}
    for idx in batch_indices(len(encoded), optim.batch_size, steps, seed):
        chosen, rejected = pair_rewards(rm, [encoded[i] for i in idx], tok.pad_token_id)
        loss = bradley_terry_loss(chosen, rejected, 0.0, CENTER_COEF)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for k, v in (("rm_loss", loss), ("rm_accuracy", (chosen > rejected).float().mean()), ("rm_margin", (chosen - rejected).mean())):
            stats[k].append(v.item())
    rm.eval()
    c, r = score_pairs(rm, encoded, tok.pad_token_id)
    rewards = torch.cat([c, r])
    rm.mean, rm.std = rewards.mean().item(), rewards.std().clamp(min=1e-6).item()
    return {**{k: float(np.mean(v)) for k, v in stats.items()}, "rm_pairs": float(len(encoded)),
            "rm_accuracy_after": (c > r).float().mean().item()}


def run(cfg: SFTConfig, model_dir: Path, rows: list[dict], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int, checkpoints: Checkpoints = NO_CHECKPOINTS) -> StageResult:
    """RFT of the model in `model_dir` on demonstrations {prompt, response}; policy saved to out_dir/model."""
    if not rows:
        raise ValueError("RFT needs at least one demonstration")
    seed_everything(seed)
    rft = cfg.rft
    policy, tok = load_policy(model_dir)
    rm = RewardModel.from_pretrained_backbone(model_dir)
    ppo_cfg = PPOConfig(rollouts=rft.ppo_rollouts, kl_coef=rft.kl_coef)
    ppo_batch = min(ppo_cfg.prompts_per_rollout, len(rows))
    policy_optim = cfg.optim.model_copy(update={"lr": rft.policy_lr})
    demos = [encode(tok, r["prompt"], r["response"], max_length) for r in rows] if rft.sft_weight > 0 else []
    learner = PPOLearner(policy, tok, ppo_cfg, policy_optim, rft.rounds * rft.ppo_rollouts * updates_per_rollout(ppo_cfg, ppo_batch),
                         max_length=max_length, ptx=(demos, rft.sft_weight))
    rm_opt, rm_sched = make_optimizer(rm.parameters(), cfg.optim.model_copy(update={"lr": rft.rm_lr, "steps": rft.rounds * rft.rm_steps}))
    no_calibration = RollingCalibrator("none", 1)
    prompts = [r["prompt"] for r in rows]

    def score_fn(ps: list[str], responses: list[str]):
        raw, scores = rm_rewards(rm, tok, no_calibration, ps, responses, max_length)
        return torch.as_tensor(scores), {"reward": float(raw.mean()), "reward_std": float(raw.std())}

    state = {**learner.state(), "reward_model": rm, "rm_optimizer": rm_opt, "rm_scheduler": rm_sched}
    start, saved, log = checkpoints.resume("rft", state, log)
    rm.mean, rm.std = saved.get("rm_mean", rm.mean), saved.get("rm_std", rm.std)
    t0, rm_stats, ppo_stats = time.time(), saved.get("rm_stats", []), saved.get("ppo_stats", [])
    rm_batches = batch_indices(len(rows), min(rft.rm_steps * cfg.optim.batch_size, len(rows)), rft.rounds, seed)
    ppo_batches = islice(batch_indices(len(rows), ppo_batch, rft.rounds * rft.ppo_rollouts, seed + 1), start * rft.ppo_rollouts, None)
    progress = Progress("rft", rft.rounds, start)
    for rnd, idx in islice(enumerate(rm_batches), start, None):
        own = generate_responses(learner.policy, tok, [prompts[i] for i in idx], max_new_tokens=ppo_cfg.max_new_tokens,
                                 temperature=ppo_cfg.temperature, seed=seed + rnd)
        pairs = demonstration_pairs([rows[i] for i in idx], own)
        if not pairs:  # the policy reproduces every demonstration: nothing left to learn from
            break
        stats = train_reward_model(rm, rm_opt, rm_sched, tok, pairs, cfg.optim, rft.rm_steps, max_length=max_length, seed=seed + rnd)
        log.log(stats, rnd)
        rm_stats.append(stats)
        for _ in range(rft.ppo_rollouts):
            metrics = learner.step([prompts[i] for i in next(ppo_batches)], score_fn)
            log.log(metrics, len(ppo_stats))
            ppo_stats.append(metrics)
        progress.update(rnd + 1)
        checkpoints.step_done(rnd + 1, rft.rounds, state, {"rm_mean": rm.mean, "rm_std": rm.std, "rm_stats": rm_stats,
                                                           "ppo_stats": ppo_stats},
                              updates=rft.rm_steps + rft.ppo_rollouts * updates_per_rollout(ppo_cfg, ppo_batch))
    learner.save(out_dir)
    metrics = {"rounds": len(rm_stats), "wall_time_s": time.time() - t0}
    if rm_stats:
        metrics |= {"final_rm_accuracy": rm_stats[-1]["rm_accuracy"], "final_rm_loss": rm_stats[-1]["rm_loss"]}
    if ppo_stats:
        metrics |= {f"final_{k}": ppo_stats[-1][k] for k in ("reward", "score", "kl", "entropy", "response_length")}
    return StageResult(metrics=metrics)
