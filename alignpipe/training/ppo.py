"""RLHF-PPO (ALGORITHMS §3): token-level PPO against a reward model, KL-regularised to the start policy.

One step = one rollout batch and its updates (`PPOLearner.step`, reused by RFT):
sample a response per prompt (batched, left-padded, KV-cached `generate` at cfg.temperature), score
it, re-run policy, value head and frozen reference teacher-forced over prompt + response, shape
rewards, GAE, then `epochs` passes of shuffled minibatch updates with the clipped surrogate and the
clipped value loss (losses/ppo.py).

Choices, in the terms of Huang et al.'s "The N implementation details of RLHF with PPO":
- Value head: a scalar linear head (zero-initialised) on the policy's last hidden state, a shared
  trunk whose value-loss gradient (× vf_coef) reaches the trunk, as TRL's
  AutoModelForCausalLMWithValueHead. A separate critic would double the forward/backward cost,
  which on CPU is the whole budget. The head has its own AdamW at `value_lr`.
- Sampling: plain temperature sampling (top-k/top-p off, no minimum length), so the behaviour
  policy is exactly softmax(logits / T). Prompts longer than max_length − max_new_tokens lose tokens
  from the left (counted as truncated_prompts). Rollout prompts come in shuffled passes over the set.
- Reference: a frozen copy of the starting policy, kept for the whole run.
- Log-probs are recomputed in a teacher-forced forward after sampling (never taken from
  `generate`), with logits divided by the sampling temperature for policy and reference alike, so
  they are the log-probs of the distribution the tokens were sampled from. Dropout is off (the
  policy stays in eval mode), so the rollout and update passes see the same function.
- EOS: generation stops at the tokenizer's EOS; everything after a row's first EOS is padding. The
  mask covers the response tokens up to and including that EOS (the model is credited for
  stopping). A response cut off at max_new_tokens without EOS gets `missing_eos_penalty` as its
  score instead of its RM score when that is not None (TRL's `non_eos_penalty` form).
- Score: the RM score normalised with the mean/std stored with the RM (the lm-human-preferences
  reward normalisation, so kl_coef means the same for any RM), length-calibrated on a rolling
  buffer when `reward_calibration` is set (calibration/rolling.py), then the EOS penalty.
- Reward: score on the last masked token minus kl_coef · KL_t on every response token
  (rl.kl.shaped_rewards) with the configured estimator (k1 by default, as the catalogue and TRL);
  `whiten_rewards` rescales the token rewards (no mean shift) before GAE.
- GAE with γ, λ from the config, value after the last response token 0; advantages whitened over
  the batch's masked tokens; losses are token-level masked means (losses/ppo.py).
- Schedule: one warm-up + cosine schedule over all minibatch updates of the run (`optim.steps`
  is DPO's and ignored here). optim.warmup_ratio's 0.03 rounds to one of the default 32 updates,
  so the first update runs at the full lr. Its approx-KL is the run's largest, and most of the
  movement comes early. A 0.25 warm-up did not change the gold gain. Over 4 SFT seeds × 2 training
  seeds on the quickstart world (bench/tune_rl.py; mean over the 8 runs), PPO gained +0.012 (SD 0.010
  per run) with the default warm-up and +0.010 (SD 0.008) with 0.25. A rollout temperature of 0.7
  gave +0.014 (SD 0.012).
- Resumable at rollout boundaries (training/checkpoint.py): policy, value head, both optimisers and
  schedules, RNGs, the calibration buffer and the history; the reference is rebuilt from `policy_dir`.
Logged per step (= per rollout): reward, reward_std (raw RM score of the samples), score (what is
optimised: normalised, calibrated, EOS-penalised), kl (mean over responses of the summed
log π − log π_ref), non_score_reward (the summed KL penalty), response_length (characters),
response_tokens, eos_fraction, value_mean, return_mean, truncated_prompts, lr, and the means over
the step's minibatch updates of entropy, clipfrac, approx_kl, policy_loss, value_loss,
value_clipfrac, grad_norm (and ptx_loss, the demonstrations' token NLL, when PPOLearner has ptx: RFT's sft_weight).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from alignpipe.calibration.rolling import RollingCalibrator
from alignpipe.config import OptimConfig, PPOConfig, RLHFConfig
from alignpipe.data.chat import Encoded, collate, render_prompt
from alignpipe.eval.scoring import reward_scores
from alignpipe.losses.logprobs import masked_mean, token_logps
from alignpipe.losses.ppo import entropy_from_logits, ppo_policy_loss, ppo_value_loss
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.rl.advantages import gae, whiten
from alignpipe.rl.kl import kl_penalty, shaped_rewards
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints
from alignpipe.training.forward import response_token_logps
from alignpipe.training.optim import batch_indices, make_optimizer, seed_everything
from alignpipe.training.progress import Progress

# (prompts, responses) -> (score per response (b,), extra metrics to log)
ScoreFn = Callable[[list[str], list[str]], tuple[Tensor, dict[str, float]]]


@dataclass(frozen=True)
class Rollout:
    """One batch of sampled responses and everything the updates need. b rows, P prompt + L response columns.

    input_ids, attention_mask (b, P + L): prompts left-padded to P, responses right-padded to L.
    response_ids (b, L) with -100 outside the mask; mask (b, L) float, response tokens up to and
    including the first EOS; logps, ref_logps, values (b, L) at rollout time; has_eos (b,) bool.
    """

    input_ids: Tensor
    attention_mask: Tensor
    response_ids: Tensor
    mask: Tensor
    logps: Tensor
    ref_logps: Tensor
    values: Tensor
    has_eos: Tensor
    responses: list[str]
    truncated_prompts: int

    def rows(self, idx: Tensor) -> Rollout:
        """The sub-batch `idx`, its columns trimmed to the span its rows use (padding costs compute)."""
        attn = self.attention_mask[idx]
        prompt_len = self.input_ids.size(1) - self.mask.size(1)
        left = int(attn[:, :prompt_len].argmax(1).min())  # first column any of the rows attends to
        width = max(1, int(self.mask[idx].sum(1).max()))  # the sub-batch's longest response
        cols = slice(left, prompt_len + width)
        return Rollout(self.input_ids[idx, cols], attn[:, cols], self.response_ids[idx, :width], self.mask[idx, :width],
                       self.logps[idx, :width], self.ref_logps[idx, :width], self.values[idx, :width], self.has_eos[idx],
                       [self.responses[i] for i in idx.tolist()], self.truncated_prompts)


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions counted from each row's first attended token, as `generate` does for left padding. (b, t) -> (b, t)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_outputs(model, value_head: nn.Module | None, input_ids: Tensor, attention_mask: Tensor,
                     response_len: int, temperature: float) -> tuple[Tensor, Tensor | None]:
    """Teacher-forced pass: logits / temperature (b, L, v) and values (b, L) at the L response positions.

    Position i of the outputs is the state before response token i (hidden state of the token before
    it). The LM head runs on response positions only; this needs logits = lm_head(hidden).
    """
    cfg = model.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        raise ValueError(f"{cfg.model_type}: PPO needs logits = lm_head(hidden); this model post-processes its logits")
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=position_ids(attention_mask)).last_hidden_state
    h = hidden[:, -response_len - 1 : -1]
    logits = model.get_output_embeddings()(h).float() / temperature
    values = value_head(h.float()).squeeze(-1) if value_head is not None else None
    return logits, values


def response_mask(response_ids: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Which generated tokens belong to the response: up to and including the first EOS, or all of a
    row that has none. response_ids (b, L) -> (mask (b, L) bool, has_eos (b,) bool)."""
    is_eos = response_ids == eos_id
    has_eos = is_eos.any(1)
    last = torch.where(has_eos, is_eos.long().argmax(1), response_ids.size(1) - 1)
    return torch.arange(response_ids.size(1), device=response_ids.device)[None] <= last[:, None], has_eos


@torch.no_grad()  # not inference_mode: these tensors feed the autograd graph of the updates
def sample(model, tok, prompts: list[str], cfg: PPOConfig, max_length: int) -> dict:
    """Sample one response per prompt. -> input_ids, attention_mask (b, P + L), response_ids, mask (b, L),
    has_eos (b,), responses (text before EOS), truncated_prompts (prompts cut from the left to fit)."""
    texts = [render_prompt(tok, p) for p in prompts]
    budget = max(8, max_length - cfg.max_new_tokens)
    saved = tok.padding_side, tok.truncation_side
    tok.padding_side, tok.truncation_side = "left", "left"  # keep the generation prompt at the right edge
    try:
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        enc = tok(texts, padding=True, truncation=True, max_length=budget, add_special_tokens=False, return_tensors="pt")
    finally:
        tok.padding_side, tok.truncation_side = saved
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=cfg.max_new_tokens,
                         do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    mask, has_eos = response_mask(out[:, prompt_ids.size(1):], tok.eos_token_id)
    resp = out[:, prompt_ids.size(1):].masked_fill(~mask, tok.pad_token_id)
    responses = [tok.decode(r[m], skip_special_tokens=True).strip() for r, m in zip(resp, mask, strict=True)]
    return {"input_ids": torch.cat([prompt_ids, resp], 1), "attention_mask": torch.cat([prompt_mask, mask.long()], 1),
            "response_ids": resp.masked_fill(~mask, -100), "mask": mask.float(), "has_eos": has_eos,
            "responses": responses, "truncated_prompts": sum(n > budget for n in lengths)}


def apply_missing_eos_penalty(scores: Tensor, has_eos: Tensor, penalty: float | None) -> Tensor:
    """Responses cut off before EOS score `penalty` (None: unchanged). scores, has_eos (b,) -> (b,)."""
    return scores if penalty is None else torch.where(has_eos, scores, torch.full_like(scores, penalty))


class PPOLearner:
    """Policy with its value head, the frozen reference and both optimisers: what persists across rollouts.

    `total_updates` sets the length of the lr schedule (all minibatch updates of the run).
    `ptx` = (examples, coef) adds coef × the mean token NLL of `minibatch_size` examples, drawn with replacement,
    to every minibatch update (InstructGPT's PPO-ptx; RFT passes its demonstrations). None or coef 0: plain PPO,
    and no draw is made, so the run is bit-identical to one without it.
    """

    def __init__(self, policy, tok, cfg: PPOConfig, optim: OptimConfig, total_updates: int, *, max_length: int,
                 ptx: tuple[list[Encoded], float] | None = None):
        self.policy, self.tok, self.cfg, self.optim, self.max_length = policy.eval(), tok, cfg, optim, max_length
        self.ptx = ptx if ptx and ptx[0] and ptx[1] > 0 else None
        self.ref = copy.deepcopy(policy).requires_grad_(False)
        self.value_head = nn.Linear(policy.config.hidden_size, 1).to(policy.device)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        schedule = optim.model_copy(update={"steps": max(1, total_updates)})
        self.opt, self.sched = make_optimizer(policy.parameters(), schedule)
        self.value_opt, self.value_sched = make_optimizer(self.value_head.parameters(), schedule.model_copy(update={"lr": cfg.value_lr}))

    @torch.no_grad()
    def rollout(self, prompts: list[str]) -> Rollout:
        """Sample, then log-probs of policy and reference and the values, in minibatch-sized chunks."""
        s = sample(self.policy, self.tok, prompts, self.cfg, self.max_length)
        logps, ref_logps, values = [], [], []
        width = s["mask"].size(1)
        for i in range(0, len(prompts), self.cfg.minibatch_size):
            ids, attn, labels = (s[k][i : i + self.cfg.minibatch_size] for k in ("input_ids", "attention_mask", "response_ids"))
            logits, v = response_outputs(self.policy, self.value_head, ids, attn, width, self.cfg.temperature)
            ref_logits, _ = response_outputs(self.ref, None, ids, attn, width, self.cfg.temperature)
            logps.append(token_logps(logits, labels))
            ref_logps.append(token_logps(ref_logits, labels))
            values.append(v)
        cat = torch.cat
        return Rollout(s["input_ids"], s["attention_mask"], s["response_ids"], s["mask"], cat(logps), cat(ref_logps),
                       cat(values) * s["mask"], s["has_eos"], s["responses"], s["truncated_prompts"])

    def update(self, roll: Rollout, advantages: Tensor, returns: Tensor) -> dict[str, float]:
        """`epochs` passes of shuffled minibatch updates on one rollout. advantages, returns (b, L). -> mean stats."""
        stats: dict[str, list[float]] = {}
        b = roll.mask.size(0)
        for _ in range(self.cfg.epochs):
            for idx in torch.randperm(b).split(self.cfg.minibatch_size):
                mb = roll.rows(idx.to(roll.mask.device))
                width = mb.mask.size(1)
                adv, ret = advantages[idx, :width], returns[idx, :width]
                logits, values = response_outputs(self.policy, self.value_head, mb.input_ids, mb.attention_mask, width, self.cfg.temperature)
                logp = token_logps(logits, mb.response_ids)
                pg_loss, clipfrac, approx_kl = ppo_policy_loss(logp, mb.logps, adv, mb.mask, self.cfg.clip)
                vf_loss, vf_clipfrac = ppo_value_loss(values, mb.values, ret, mb.mask, self.cfg.value_clip)
                loss, step = pg_loss + self.cfg.vf_coef * vf_loss, {}
                if self.ptx:
                    examples, coef = self.ptx
                    pick = torch.randint(len(examples), (self.cfg.minibatch_size,)).tolist()
                    logps, _ = response_token_logps(self.policy, collate([examples[i] for i in pick], self.tok.pad_token_id,
                                                                         self.policy.device))
                    ptx_loss = -logps.mean()
                    loss, step = loss + coef * ptx_loss, {"ptx_loss": ptx_loss.item()}
                loss.backward()
                params = [*self.policy.parameters(), *self.value_head.parameters()]
                grad_norm = torch.nn.utils.clip_grad_norm_(params, self.optim.max_grad_norm)
                for opt, sched in ((self.opt, self.sched), (self.value_opt, self.value_sched)):
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                step |= {"policy_loss": pg_loss.item(), "value_loss": vf_loss.item(), "clipfrac": clipfrac.item(),
                        "value_clipfrac": vf_clipfrac.item(), "approx_kl": approx_kl.item(), "grad_norm": float(grad_norm),
                        "entropy": entropy_from_logits(logits.detach(), mb.mask).item()}
                for k, v in step.items():
                    stats.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in stats.items()}

    def step(self, prompts: list[str], score_fn: ScoreFn) -> dict[str, float]:
        """One rollout and its updates. -> the step's diagnostics."""
        roll = self.rollout(prompts)
        scores, extra = score_fn(prompts, roll.responses)
        scores = apply_missing_eos_penalty(scores.to(roll.mask.device, torch.float32), roll.has_eos, self.cfg.missing_eos_penalty)
        rewards = shaped_rewards(scores, roll.logps, roll.ref_logps, roll.mask, self.cfg.kl_coef, self.cfg.kl_estimator)
        if self.cfg.whiten_rewards and roll.mask.sum() >= 2:
            rewards = whiten(rewards, roll.mask, shift_mean=False)
        advantages, returns = gae(rewards, roll.values, roll.mask, self.cfg.gamma, self.cfg.lam)
        if roll.mask.sum() >= 2:
            advantages = whiten(advantages, roll.mask)
        stats = self.update(roll, advantages, returns)
        per_seq = lambda t: (t * roll.mask).sum(1).mean().item()  # noqa: E731
        return {**extra, **stats,
                "score": scores.mean().item(),
                "kl": per_seq(roll.logps - roll.ref_logps),
                "non_score_reward": -self.cfg.kl_coef * per_seq(kl_penalty(roll.logps, roll.ref_logps, self.cfg.kl_estimator)),
                "response_length": float(np.mean([len(r) for r in roll.responses])),
                "response_tokens": roll.mask.sum(1).mean().item(), "eos_fraction": roll.has_eos.float().mean().item(),
                "value_mean": masked_mean(roll.values, roll.mask).item(), "return_mean": masked_mean(returns, roll.mask).item(),
                "truncated_prompts": float(roll.truncated_prompts), "lr": self.sched.get_last_lr()[0]}

    def state(self) -> dict:
        """What a checkpoint holds to continue (the frozen reference is rebuilt from the start policy)."""
        return {"policy": self.policy, "value_head": self.value_head, "optimizer": self.opt, "scheduler": self.sched,
                "value_optimizer": self.value_opt, "value_scheduler": self.value_sched}

    def save(self, out_dir: Path) -> None:
        """Policy (+ tokenizer) to out_dir/model; the value head beside it."""
        self.policy.save_pretrained(out_dir / "model", safe_serialization=True)
        self.tok.save_pretrained(out_dir / "model")
        save_file({k: v.contiguous() for k, v in self.value_head.state_dict().items()}, out_dir / "value_head.safetensors")


def updates_per_rollout(cfg: PPOConfig, batch: int) -> int:
    """Optimizer steps one rollout of `batch` responses takes: epochs × minibatches."""
    return cfg.epochs * math.ceil(batch / cfg.minibatch_size)


def rm_rewards(rm: RewardModel, tok, calibrator: RollingCalibrator, prompts: list[str], responses: list[str],
               max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw RM scores (n,), optimised rewards (n,)): (r − μ)/σ with the RM's stored stats, length-calibrated
    by `calibrator` (response length in characters; a prompt's samples form one group)."""
    raw = np.asarray(reward_scores(rm, tok, prompts, responses, max_length=max_length))
    z = (raw - rm.mean) / rm.std
    return raw, calibrator.update([len(r) for r in responses], z, groups=prompts)


def run(cfg: RLHFConfig, policy_dir: Path, rm_dir: Path, prompts: list[str], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int, checkpoints: Checkpoints = NO_CHECKPOINTS) -> StageResult:
    """PPO of the policy in `policy_dir` against the RM in `rm_dir` on `prompts`; policy saved to out_dir/model."""
    if not prompts:
        raise ValueError("PPO needs at least one prompt")
    seed_everything(seed)
    ppo = cfg.ppo
    policy, tok = load_policy(policy_dir)
    rm, rm_tok = RewardModel.load(rm_dir), load_tokenizer(rm_dir)
    calibrator = RollingCalibrator(cfg.reward_calibration, cfg.calibration_buffer, frac=cfg.calibration_frac,
                                   lam=cfg.calibration_lam)
    batch = min(ppo.prompts_per_rollout, len(prompts))
    learner = PPOLearner(policy, tok, ppo, cfg.optim, ppo.rollouts * updates_per_rollout(ppo, batch), max_length=max_length)

    def score_fn(ps: list[str], responses: list[str]) -> tuple[Tensor, dict[str, float]]:
        raw, scores = rm_rewards(rm, rm_tok, calibrator, ps, responses, max_length)
        return torch.as_tensor(scores), {"reward": float(raw.mean()), "reward_std": float(raw.std())}

    state = learner.state()
    start, saved, log = checkpoints.resume("ppo", state, log)
    calibrator.load_state(saved.get("calibration", []))
    t0, history, progress = time.time(), saved.get("history", []), Progress("ppo", ppo.rollouts, start)
    for step, idx in islice(enumerate(batch_indices(len(prompts), batch, ppo.rollouts, seed)), start, None):
        metrics = learner.step([prompts[i] for i in idx], score_fn)
        log.log(metrics, step)
        history.append(metrics)
        progress.update(step + 1)
        checkpoints.step_done(step + 1, ppo.rollouts, state, {"history": history, "calibration": calibrator.state()},
                              updates=updates_per_rollout(ppo, batch))
    learner.save(out_dir)
    last = history[-1]
    return StageResult(metrics={
        **{f"final_{k}": last[k] for k in ("reward", "score", "kl", "entropy", "response_length", "eos_fraction")},
        "first_reward": history[0]["reward"], "rollouts": len(history), "wall_time_s": time.time() - t0,
        "truncated_prompts": sum(m["truncated_prompts"] for m in history),
    })
