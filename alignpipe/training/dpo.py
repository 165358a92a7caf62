"""Direct Preference Optimisation (ALGORITHMS §3) against a frozen reference.

The reference is the starting policy; its summed response log-probs are precomputed once before
training (the reference never changes), which halves the forward passes per step. Chosen and
rejected go through the policy in one forward pass that computes each pair's prompt once
(`shared_prompt_batch`): prompts are most of each sequence in the built-in world, so this computes about
a third fewer positions than padding 2b separate sequences, with the same log-probs (checked against
TRL's DPOTrainer in tests/training/test_trl_crosscheck.py). Resumable from mid-training checkpoints
(training/checkpoint.py): the reference log-probs are recomputed from `policy_dir` on resume.
`rlhf.dpo_nll_weight` α > 0 adds α × the chosen responses' mean per-token NLL (RPO), logged as chosen_nll
beside dpo_loss.
"""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import torch

from alignpipe.config import RLHFConfig
from alignpipe.data.chat import IGNORE, Encoded, collate
from alignpipe.losses.preference import dpo_loss, per_token_nll
from alignpipe.models import load_policy
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints
from alignpipe.training.forward import response_sequence_logps
from alignpipe.training.optim import batch_indices, make_optimizer, seed_everything
from alignpipe.training.progress import Progress
from alignpipe.training.reward_model import encode_pairs

# Attention implementations that take an additive (b, 1, t, t) mask; others get padded separate sequences.
_CUSTOM_MASK_ATTENTION = ("sdpa", "eager")


def _can_share_prompt(model, pairs: list[tuple[Encoded, Encoded]]) -> bool:
    """Our mask replaces the model's own: only where it is taken, and where no sliding window would cut in."""
    window = getattr(model.config, "sliding_window", None)
    longest = max(len(e.input_ids) for pair in pairs for e in pair)
    return model.config._attn_implementation in _CUSTOM_MASK_ATTENTION and (not window or longest <= window)


def _shared_prefix(c: Encoded, r: Encoded) -> int:
    """Tokens the two sequences share and may compute once: their common prompt but its last token."""
    prompt = min(c.labels.count(IGNORE), r.labels.count(IGNORE))
    common = next((i for i in range(prompt) if c.input_ids[i] != r.input_ids[i]), prompt)
    return max(common - 1, 0)


def shared_prompt_batch(pairs: list[tuple[Encoded, Encoded]], pad_id: int, dtype: torch.dtype,
                        device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """One row per pair, [prompt[:-1] | prompt[-1], chosen response | prompt[-1], rejected response], right-padded.

    Each branch repeats the prompt's last token (whose hidden state predicts the first response token),
    attends to the shared prompt and to its own earlier tokens only, and has the positions it has in its own
    sequence, so every hidden state is that of the separate sequence, and the prompt is computed once per
    pair instead of twice. Pairs whose prompts differ (truncated differently) share nothing and are two
    independent branches. -> input_ids, labels, position_ids, sequence (b, t): chosen i is sequence i,
    rejected i is b + i; attention_mask (b, 1, t, t) additive, 0 where attended, dtype's min elsewhere.
    """
    n, rows = len(pairs), []
    for i, (c, r) in enumerate(pairs):
        s, lc, lr = _shared_prefix(c, r), len(c.input_ids), len(r.input_ids)
        rows.append((c.input_ids + r.input_ids[s:], c.labels + r.labels[s:], [*range(lc), *range(s, lr)],
                     [0] * s + [1] * (lc - s) + [2] * (lr - s), [i] * lc + [n + i] * (lr - s)))
    width = max(len(row[0]) for row in rows)
    fill = (pad_id, IGNORE, 0, -1, 0)  # segment -1: padding; attends to padding and the prompt, never attended
    ids, labels, pos, seg, seq = (torch.tensor([row[k] + [fill[k]] * (width - len(row[k])) for row in rows]) for k in range(5))
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    attend = causal & ((seg[:, :, None] == seg[:, None, :]) | (seg[:, None, :] == 0))
    mask = torch.zeros(attend.shape, dtype=dtype).masked_fill(~attend, torch.finfo(dtype).min).unsqueeze(1)
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "labels": labels, "position_ids": pos, "sequence": seq, "attention_mask": mask}.items()}


def pair_logps(model, pairs: list[tuple[Encoded, Encoded]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected in one forward. -> ((b,), (b,))."""
    if _can_share_prompt(model, pairs):
        batch = shared_prompt_batch(pairs, pad_id, model.dtype, model.device)
    else:
        batch = collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id, model.device)
    logps = response_sequence_logps(model, batch, 2 * len(pairs))
    return logps[: len(pairs)], logps[len(pairs):]


@torch.inference_mode()
def reference_logps(model, pairs: list[tuple[Encoded, Encoded]], pad_id: int, batch_size: int) -> torch.Tensor:
    """(n, 2) reference log-probs [chosen, rejected] for every pair."""
    out = [torch.stack(pair_logps(model, pairs[i : i + batch_size], pad_id), dim=1) for i in range(0, len(pairs), batch_size)]
    return torch.cat(out)


def run(cfg: RLHFConfig, policy_dir: Path, rows: list[dict], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int, checkpoints: Checkpoints = NO_CHECKPOINTS) -> StageResult:
    """DPO on pairs {prompt, chosen, rejected} starting from (and referenced to) `policy_dir`."""
    seed_everything(seed)
    model, tok = load_policy(policy_dir)
    pairs = encode_pairs(tok, rows, max_length)
    ref = reference_logps(model, pairs, tok.pad_token_id, cfg.optim.batch_size)
    model.train()
    opt, sched = make_optimizer(model.parameters(), cfg.optim)
    state, steps = {"model": model, "optimizer": opt, "scheduler": sched}, cfg.optim.steps
    start, _, log = checkpoints.resume("dpo", state, log)
    progress = Progress("dpo", steps, start)
    chosen_tokens = torch.tensor([c.response_tokens for c, _ in pairs], dtype=ref.dtype)
    t0, tokens = time.time(), 0
    for step, idx in islice(enumerate(batch_indices(len(pairs), cfg.optim.batch_size, steps, seed)), start, None):
        chosen, rejected = pair_logps(model, [pairs[i] for i in idx], tok.pad_token_id)
        loss, r_c, r_r = dpo_loss(chosen, rejected, ref[idx, 0], ref[idx, 1], cfg.beta)
        extra = {}
        if cfg.dpo_nll_weight > 0:  # RPO: keep the chosen responses likely while separating the pairs
            nll = per_token_nll(chosen, chosen_tokens[idx])
            extra = {"dpo_loss": loss.item(), "chosen_nll": nll.item()}
            loss = loss + cfg.dpo_nll_weight * nll
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        n_tokens = sum(len(pairs[i][0].input_ids) + len(pairs[i][1].input_ids) for i in idx)
        tokens += n_tokens
        log.log({"loss": loss.item(), "reward_margin": (r_c - r_r).mean().item(), "reward_accuracy": (r_c > r_r).float().mean().item(),
                 "chosen_reward": r_c.mean().item(), "rejected_reward": r_r.mean().item(), **extra}, step)
        progress.update(step + 1, n_tokens)
        checkpoints.step_done(step + 1, steps, state)
    model.save_pretrained(out_dir / "model", safe_serialization=True)
    tok.save_pretrained(out_dir / "model")
    return StageResult(metrics={
        "final_loss": loss.item(), "final_reward_margin": (r_c - r_r).mean().item(), "pairs": len(pairs),
        "truncated_pairs": sum(a.truncated or b.truncated for a, b in pairs), "tokens_per_s": tokens / max(time.time() - t0, 1e-9),
    })
