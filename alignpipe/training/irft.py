"""IRFT: implicit-reward inverse-RL fine-tuning on SFT demonstrations (Li et al. 2024; ALGORITHMS §1b).

The demonstrations are split into T stages (a seeded shuffle, then T near-equal parts). At stage t
the current model π_t is the reference: it generates one continuation ỹ per prompt (sampled at
`irft.temperature`, default 1.0, as SPIN and the reference code did; greedy as §1b says at 0), rendered
with the same chat template as training (`generate_responses`), pairs with ỹ == y are dropped, and
π_t's summed log-probs of y and ỹ are precomputed, so no second copy of the model is held. Then
one epoch over the stage's pairs minimises `irft_loss` (DPO with demonstration ≻ own sample).
T = 1 is SPIN.

Choices:
- Each stage is a fresh problem (new reference, new negatives), so it gets a fresh AdamW and its
  own warm-up + cosine schedule over its ceil(pairs / batch_size) steps, as in SPIN's reference
  code, where every iteration is a separate generation run and training run. So T stages equal T
  consecutive one-stage runs on the parts (stage t's batch order is seeded with seed + t).
  `cfg.optim.steps` is not used: the data size and T set the step count (one epoch in total); the
  learning rate is `cfg.irft.lr` (a DPO-like loss wants a DPO-like rate), the rest of cfg.optim applies.
- `cfg.irft.sft_weight` λ adds λ · the demonstrations' per-token NLL to the stage loss (see
  `irft_loss`); 0 is §1b's loss exactly. The default is 1: the logistic term alone lowered the
  gold score well below the SFT model it started from (config.py says by how much).
- Sampled negatives by default: greedy ones of a model that already answers well are often right
  and get pushed down with the wrong ones; sampled at 1.0 with lr 1e-5 IRFT beat its SFT start by
  3× the margin of greedy (config.py has the numbers).
- ỹ is compared with y as stripped text (the form `generate_responses` returns), and encoded like
  every response, followed by EOS, even when generation stopped at `max_new_tokens`.
- Per stage the demonstration-vs-generated gap, mean log π(y|x) − log π(ỹ|x), is measured under
  the current model at the start (= under π_t) and at the end of the stage.
- Resumable at stage boundaries (training/checkpoint.py): a stage's optimiser starts fresh anyway,
  so the model, the RNGs and the running records are all a checkpoint holds. tokens_per_s counts
  the last invocation.
"""

from __future__ import annotations

import math
import random
import time
from itertools import islice
from pathlib import Path

import torch

from alignpipe.config import SFTConfig
from alignpipe.data.chat import Encoded, encode
from alignpipe.data.snapshot import write_snapshot
from alignpipe.eval.generation import generate_responses
from alignpipe.losses.irft import irft_loss
from alignpipe.models import load_policy
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints
from alignpipe.training.dpo import pair_logps, reference_logps
from alignpipe.training.optim import batch_indices, make_optimizer, seed_everything
from alignpipe.training.progress import Progress


def split_stages(n: int, stages: int, seed: int) -> list[list[int]]:
    """Indices 0..n-1 shuffled (deterministic in seed) and cut into `stages` near-equal parts."""
    if n < stages:
        raise ValueError(f"irft.stages={stages} needs at least {stages} demonstrations, got {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[t * n // stages : (t + 1) * n // stages] for t in range(stages)]


def _gap(logps: torch.Tensor) -> float:
    """Mean log π(y|x) − log π(ỹ|x) over pairs; logps (n, 2) [demonstration, generated]."""
    return (logps[:, 0] - logps[:, 1]).mean().item() if len(logps) else float("nan")


def own_sample_pairs(model, tok, stage: list[dict], cfg: SFTConfig, *, max_length: int, seed: int
                     ) -> tuple[list[tuple[Encoded, Encoded]], list[dict]]:
    """(demonstration, own sample) pairs of a stage, ỹ == y dropped; plus one record per row. The sample is
    greedy at `cfg.irft.temperature` 0, else drawn at that temperature seeded with `seed`."""
    generated = generate_responses(model, tok, [r["prompt"] for r in stage], max_new_tokens=cfg.irft.max_new_tokens,
                                   temperature=cfg.irft.temperature, batch_size=2 * cfg.optim.batch_size, seed=seed)
    records = [{"prompt": r["prompt"], "demonstration": r["response"], "generated": g, "kept": g != r["response"].strip()}
               for r, g in zip(stage, generated, strict=True)]
    pairs = [(encode(tok, r["prompt"], r["demonstration"], max_length), encode(tok, r["prompt"], r["generated"], max_length))
             for r in records if r["kept"]]
    return pairs, records


def run(cfg: SFTConfig, model_dir: Path, rows: list[dict], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int, checkpoints: Checkpoints = NO_CHECKPOINTS) -> StageResult:
    """IRFT of the model in `model_dir` on demonstrations {prompt, response}; save to out_dir/model.

    Writes out_dir/negatives.parquet: every stage's (stage, prompt, demonstration, generated, kept).
    """
    seed_everything(seed)
    model, tok = load_policy(model_dir)
    bs, pad = cfg.optim.batch_size, tok.pad_token_id
    state, stages = {"model": model}, cfg.irft.stages
    start, saved, log = checkpoints.resume("irft", state, log)
    step, tokens, t0, loss = saved.get("step", 0), 0, time.time(), torch.tensor(saved.get("loss", float("nan")))
    negatives, gaps = saved.get("negatives", []), [tuple(g) for g in saved.get("gaps", [])]
    kept, truncated, progress = saved.get("kept", 0), saved.get("truncated", 0), Progress("irft", stages, start)
    for t, idx in islice(enumerate(split_stages(len(rows), stages, seed)), start, None):
        model.eval()
        pairs, records = own_sample_pairs(model, tok, [rows[i] for i in idx], cfg, max_length=max_length, seed=seed + t)
        negatives += [{"stage": t} | r for r in records]
        kept, truncated = kept + len(pairs), truncated + sum(a.truncated or b.truncated for a, b in pairs)
        ref = reference_logps(model, pairs, pad, bs) if pairs else torch.empty(0, 2)  # π_t: the model as it is now
        steps = math.ceil(len(pairs) / bs)
        model.train()
        opt, sched = make_optimizer(model.parameters(), cfg.optim.model_copy(update={"steps": max(1, steps), "lr": cfg.irft.lr}))
        for b in batch_indices(len(pairs), bs, steps, seed + t):
            demo, gen = pair_logps(model, [pairs[i] for i in b], pad)
            demo_tokens = torch.tensor([float(pairs[i][0].response_tokens) for i in b], device=demo.device)
            loss, r_d, r_g = irft_loss(demo, ref[b, 0], gen, ref[b, 1], cfg.irft.beta,
                                       demo_tokens=demo_tokens, sft_weight=cfg.irft.sft_weight)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            tokens += sum(len(pairs[i][0].input_ids) + len(pairs[i][1].input_ids) for i in b)
            log.log({"loss": loss.item(), "demo_reward": r_d.mean().item(), "generated_reward": r_g.mean().item(),
                     "reward_margin": (r_d - r_g).mean().item(), "grad_norm": float(grad_norm),
                     "lr": sched.get_last_lr()[0], "stage": t}, step)
            step += 1
        model.eval()
        gaps.append((_gap(ref), _gap(reference_logps(model, pairs, pad, bs) if steps else ref)))
        log.log({"stage/gap_start": gaps[-1][0], "stage/gap_end": gaps[-1][1], "stage/pairs_kept": len(pairs),
                 "stage/pairs_dropped": len(records) - len(pairs), "stage/index": t}, step)
        progress.update(t + 1)
        checkpoints.step_done(t + 1, stages, state, {"step": step, "loss": loss.item(), "negatives": negatives, "gaps": gaps,
                                                     "kept": kept, "truncated": truncated}, updates=steps)
    model.save_pretrained(out_dir / "model", safe_serialization=True)
    tok.save_pretrained(out_dir / "model")
    measured = [(s, e) for s, e in gaps if not math.isnan(s)]
    return StageResult(metrics={
        "final_loss": loss.item(), "steps": step, "pairs_kept": kept, "pairs_dropped": len(negatives) - kept,
        "truncated_pairs": truncated, "first_gap_start": gaps[0][0], "last_gap_end": gaps[-1][1],
        "mean_gap_increase": sum(e - s for s, e in measured) / len(measured) if measured else float("nan"),
        "tokens_per_s": tokens / max(time.time() - t0, 1e-9),
    }, data={"negatives.parquet": write_snapshot(negatives, out_dir / "negatives.parquet")})
