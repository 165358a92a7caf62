"""Direct Preference Optimisation (ALGORITHMS §3) against a frozen reference.

The reference is the starting policy; its summed response log-probs are precomputed once before
training (the reference never changes), which halves the forward passes per step. Chosen and
rejected go through the policy in one forward pass.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from alignpipe.config import RLHFConfig
from alignpipe.data.chat import Encoded, collate
from alignpipe.losses.preference import dpo_loss
from alignpipe.models import load_policy
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.forward import response_sequence_logps
from alignpipe.training.optim import batch_indices, make_optimizer, seed_everything
from alignpipe.training.reward_model import encode_pairs


def pair_logps(model, pairs: list[tuple[Encoded, Encoded]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected in one forward. -> ((b,), (b,))."""
    batch = collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id, model.device)
    logps = response_sequence_logps(model, batch)
    return logps[: len(pairs)], logps[len(pairs):]


@torch.inference_mode()
def reference_logps(model, pairs: list[tuple[Encoded, Encoded]], pad_id: int, batch_size: int) -> torch.Tensor:
    """(n, 2) reference log-probs [chosen, rejected] for every pair."""
    out = [torch.stack(pair_logps(model, pairs[i : i + batch_size], pad_id), dim=1) for i in range(0, len(pairs), batch_size)]
    return torch.cat(out)


def run(cfg: RLHFConfig, policy_dir: Path, rows: list[dict], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int) -> StageResult:
    """DPO on pairs {prompt, chosen, rejected} starting from (and referenced to) `policy_dir`."""
    seed_everything(seed)
    model, tok = load_policy(policy_dir)
    pairs = encode_pairs(tok, rows, max_length)
    ref = reference_logps(model, pairs, tok.pad_token_id, cfg.optim.batch_size)
    model.train()
    opt, sched = make_optimizer(model.parameters(), cfg.optim)
    t0, tokens = time.time(), 0
    for step, idx in enumerate(batch_indices(len(pairs), cfg.optim.batch_size, cfg.optim.steps, seed)):
        chosen, rejected = pair_logps(model, [pairs[i] for i in idx], tok.pad_token_id)
        loss, r_c, r_r = dpo_loss(chosen, rejected, ref[idx, 0], ref[idx, 1], cfg.beta)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(len(pairs[i][0].input_ids) + len(pairs[i][1].input_ids) for i in idx)
        log.log({"loss": loss.item(), "reward_margin": (r_c - r_r).mean().item(), "reward_accuracy": (r_c > r_r).float().mean().item(),
                 "chosen_reward": r_c.mean().item(), "rejected_reward": r_r.mean().item()}, step)
    model.save_pretrained(out_dir / "model", safe_serialization=True)
    tok.save_pretrained(out_dir / "model")
    return StageResult(metrics={
        "final_loss": loss.item(), "final_reward_margin": (r_c - r_r).mean().item(), "pairs": len(pairs),
        "truncated_pairs": sum(a.truncated or b.truncated for a, b in pairs), "tokens_per_s": tokens / max(time.time() - t0, 1e-9),
    })
