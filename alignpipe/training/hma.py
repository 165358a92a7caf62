"""Heterogeneous Model Averaging with learned block ratios (ALGORITHMS §4, Lin et al. 2024).

θ = θ_rl + α_k·(θ_sft − θ_rl) for the tensors of block k, α_k = hma_alphas(s, α, ε) so that
mean_k α_k = α (until clamping). Only the K scores s_k are trained, by minimising the merged model's
NLL of high-reward RLHF responses (a proxy for maximising reward), plus an optional L1 pull
l1_weight·Σ_k |α_k − α| toward α. The final norm, lm_head and the embeddings keep α (§4, and the
rule of `merging.blocks` shared with MA and part-wise MA). The result is exported as an ordinary
checkpoint by the streaming merge, so it is evaluated exactly like an MA model.

Simplified, and why:
  - the merged model runs through `torch.func.functional_call` with full-vocabulary logits, not the
    head-only forward of `training.forward`: simpler, at the cost of the full log-softmax (about a
    fifth of SmolLM2-135M's FLOPs, and most of the activation memory at long responses);
  - plain Adam at a constant lr: K scalars need no warm-up, schedule or clipping;
  - one L1 weight for every block (§4 allows per-block w_k; nothing here needs them);
  - batches follow `batch_indices`: ceil(n / batch_size) full batches per epoch, reshuffled each pass.

With the reference lr (2e-5 / 4e-5) and one epoch the scores barely move: Adam moves a scalar by
about lr per step, so one epoch of 2,000 samples at batch 8 (250 steps) moves each s_k by ≤ 250·lr.
Measured on the tiny Llama (2 layers, K = 2, α = 0.2, lr 4e-5, 250 steps, with a strong and
consistent gradient: the RLHF side's layer 0 was noise): Δs = (+0.0100, −0.0100), α_k = (0.2008,
0.1992), i.e. |Δα_k| = 8e-4. Raise lr or epochs for the learned ratios to differ noticeably from MA.

Memory: the two frozen state dicts (the RLHF side is the skeleton's own weights, not a copy) plus
the merged parameters and their graph ≈ 3 models, plus activations; fine for 135M on CPU.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor
from torch.func import functional_call

from alignpipe.config import HMAConfig
from alignpipe.data.chat import collate, encode
from alignpipe.losses.logprobs import masked_mean, shifted, token_logps
from alignpipe.merging.average import MergeError, check_compatible
from alignpipe.merging.blocks import (
    BlockSpec,
    alpha_for,
    block_index,
    default_boundaries,
    hma_alphas,
    layer_count,
    validate,
)
from alignpipe.merging.stream import Header, check_headers, merge_files, read_header
from alignpipe.models import load_policy
from alignpipe.store import StageResult
from alignpipe.tracking import MetricLogger
from alignpipe.training.optim import batch_indices, seed_everything


def merged_parameters(sft: Mapping[str, Tensor], rl: Mapping[str, Tensor], block_alphas: Tensor,
                      spec: BlockSpec) -> dict[str, Tensor]:
    """θ_rl + α_key·(θ_sft − θ_rl) per tensor, differentiable in `block_alphas` (K,) only.

    α_key is block_alphas[k] for the tensors of block k (`block_index`), spec.head_alpha /
    spec.embed_alpha (floats) for the rest; spec.alphas is ignored. Computed in float32 and cast to
    the RLHF dtype, like `merge_blocks`, which this equals for the same (detached) alphas.
    """
    check_compatible(sft, rl)
    validate(replace(spec, alphas=tuple(block_alphas.detach().tolist())), layer_count(rl))
    weights = block_alphas.float()
    out = {}
    for key, t_rl in rl.items():
        if not t_rl.is_floating_point():
            out[key] = t_rl
            continue
        k = block_index(key, spec.boundaries)
        a = weights[k] if k is not None else alpha_for(key, spec)  # embeddings, final norm, head: floats
        out[key] = torch.lerp(t_rl.float(), sft[key].float(), a).to(t_rl.dtype)
    return out


def select_top_samples(rows: list[dict], rewards: list[float], pool: int, n: int, seed: int) -> list[dict]:
    """n rows drawn uniformly without replacement (seeded) from the `pool` highest-reward rows (§4).

    Ties keep the input order. With fewer than n rows in the pool, all of them come back, shuffled.
    """
    if len(rows) != len(rewards):
        raise ValueError(f"{len(rows)} rows but {len(rewards)} rewards: need one reward per row")
    ranked = sorted(range(len(rows)), key=lambda i: -rewards[i])[:pool]
    picked = random.Random(seed).sample(ranked, min(n, len(ranked)))
    return [rows[i] for i in picked]


def _frozen_weights(model, sft_header: Header, rl_header: Header) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(sft, rl) over the checkpoints' tensor names, in the model's dtypes and device, without grad.

    The RLHF side is the skeleton's own weights (`model` was loaded from the RLHF dir), so it is not copied.
    """
    own = model.state_dict()  # detached views of the parameters
    missing = sorted(set(rl_header) - set(own))
    if missing:
        raise MergeError(f"the RLHF checkpoint holds tensors its loaded model does not: {missing[:5]}")
    rl = {key: own[key] for key in rl_header}
    by_shard: dict[Path, list[str]] = {}
    for key, (shard, _, _) in sft_header.items():
        by_shard.setdefault(shard, []).append(key)
    sft = {}
    for shard, keys in by_shard.items():
        with safe_open(shard, framework="pt", device=str(model.device)) as f:
            sft |= {key: f.get_tensor(key).to(rl[key].dtype) for key in keys}
    return sft, rl


def run(cfg: HMAConfig, sft_dir: Path, rl_dir: Path, samples: list[dict], out_dir: Path, log: MetricLogger,
        *, max_length: int, seed: int) -> StageResult:
    """Learn K block ratios on samples {prompt, response}; write out_dir/hma.json and out_dir/model."""
    if not samples:
        raise ValueError("HMA needs at least one (prompt, response) sample to fit the block ratios")
    seed_everything(seed)
    model, tok = load_policy(rl_dir)
    model.requires_grad_(False)
    sft_header, rl_header = read_header(sft_dir), read_header(rl_dir)
    boundaries = default_boundaries(layer_count(rl_header), cfg.blocks)
    spec = BlockSpec(boundaries, (cfg.alpha,) * cfg.blocks, head_alpha=cfg.alpha, embed_alpha=cfg.alpha)
    check_headers(sft_header, rl_header, spec)  # fail before any compute
    sft, rl = _frozen_weights(model, sft_header, rl_header)
    examples = [encode(tok, r["prompt"], r["response"], max_length) for r in samples]
    # s_k = logit(α) (reference init); the eps keeps α ∈ {0, 1} finite — equal scores give α_k = α anyway
    init = torch.logit(torch.tensor(cfg.alpha), eps=1e-6).item()
    scores = torch.nn.Parameter(torch.full((cfg.blocks,), init, device=model.device))
    opt = torch.optim.Adam([scores], lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(examples) / cfg.batch_size)
    loss = torch.tensor(float("nan"))
    for step, idx in enumerate(batch_indices(len(examples), cfg.batch_size, steps, seed)):
        batch = collate([examples[i] for i in idx], tok.pad_token_id, model.device)
        alphas = hma_alphas(scores, cfg.alpha, cfg.eps)
        params = merged_parameters(sft, rl, alphas, spec)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits, targets, mask = shifted(functional_call(model, params, args=(), kwargs=inputs).logits, batch["labels"])
        nll = -masked_mean(token_logps(logits, targets), mask)  # mean over the batch's response tokens
        loss = nll + cfg.l1_weight * (alphas - cfg.alpha).abs().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.log({"loss": loss.item(), "nll": nll.item(), **{f"alpha_{k}": a for k, a in enumerate(alphas.tolist())}}, step)
    with torch.no_grad():
        final = tuple(hma_alphas(scores, cfg.alpha, cfg.eps).tolist())  # clamped to [0, 1]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hma.json").write_text(json.dumps({
        "boundaries": list(boundaries), "alphas": list(final), "alpha": cfg.alpha, "eps": cfg.eps,
        "scores": scores.detach().tolist(),
    }, indent=2))
    merge_files(sft_dir, rl_dir, BlockSpec(boundaries, final, head_alpha=cfg.alpha, embed_alpha=cfg.alpha), out_dir / "model")
    return StageResult(metrics={
        "final_loss": loss.item(), **{f"alpha_{k}": a for k, a in enumerate(final)}, "samples": len(examples),
    })
