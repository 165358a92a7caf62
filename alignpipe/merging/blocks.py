"""Block-wise model averaging (ALGORITHMS §4): MA, part-wise MA and Heterogeneous Model Averaging.

Convention: α is the weight on the SFT model (α = 1 -> SFT, α = 0 -> RLHF). The transformer layers
are split into K contiguous blocks, block k merged with its own ratio α_k.

One rule for embeddings and norms, shared by MA, part-wise MA and HMA so the three are compared on
equal terms (the reference code treated them differently):
  - `model.layers.{i}.*` — linear weights *and* the per-layer norms (input_layernorm,
    post_attention_layernorm) — take the α of the block holding layer i;
  - `model.embed_tokens.*` takes `embed_alpha`;
  - the final `model.norm.*` and `lm_head.*` (absent when embeddings are tied) take `head_alpha`.
Plain MA at α is `BlockSpec` with every α equal to α; it reproduces `average_state_dicts` exactly.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from alignpipe.merging.average import MergeError, average_state_dicts, check_compatible

_LAYER = re.compile(r"model\.layers\.(\d+)\.")
_EMBED = re.compile(r"model\.embed_tokens\.")
_HEAD = re.compile(r"(model\.norm|lm_head)\.")


@dataclass(frozen=True)
class BlockSpec:
    """Per-block SFT weights. Block k covers layers boundaries[k] .. boundaries[k+1] − 1.

    boundaries (K+1,) from 0 to n_layers, strictly increasing; alphas (K,) one per block;
    head_alpha for `model.norm` and `lm_head`; embed_alpha for `model.embed_tokens`.
    """

    boundaries: tuple[int, ...]
    alphas: tuple[float, ...]
    head_alpha: float
    embed_alpha: float

    @classmethod
    def uniform(cls, n_layers: int, k: int, alpha: float) -> BlockSpec:
        """Plain MA at α: every block, the head and the embeddings at the same α."""
        return cls(default_boundaries(n_layers, k), (alpha,) * k, alpha, alpha)


def default_boundaries(n_layers: int, k: int) -> tuple[int, ...]:
    """The reference split: n_layers // k layers in each of the first k − 1 blocks, the rest in the last.

    (26, 3) -> (0, 8, 16, 26), i.e. blocks [0–7], [8–15], [16–25].
    """
    if not 1 <= k <= n_layers:
        raise MergeError(f"cannot split {n_layers} layers into {k} blocks: need 1 <= K <= {n_layers}")
    size = n_layers // k
    return tuple(i * size for i in range(k)) + (n_layers,)


def validate(spec: BlockSpec, n_layers: int) -> None:
    """Raise MergeError naming what is wrong with `spec` for a model of `n_layers` layers."""
    b = spec.boundaries
    if len(b) < 2:
        raise MergeError(f"block boundaries {b} define no block: need at least (0, {n_layers})")
    if b[0] != 0:
        raise MergeError(f"block boundaries {b} must start at layer 0, not {b[0]}")
    if b[-1] != n_layers:
        raise MergeError(
            f"block count does not match the layers: the model has {n_layers} layers "
            f"but the spec's blocks {b} cover {b[-1]}"
        )
    for k in range(len(b) - 1):
        if b[k] >= b[k + 1]:
            raise MergeError(
                f"block boundaries {b} must be strictly increasing: block {k} is [{b[k]}, {b[k + 1]})"
            )
    if len(spec.alphas) != len(b) - 1:
        raise MergeError(
            f"spec has {len(b) - 1} blocks (boundaries {b}) but {len(spec.alphas)} alphas {spec.alphas}"
        )
    for k, a in enumerate(spec.alphas):
        if not 0.0 <= a <= 1.0:
            raise MergeError(f"alpha of block {k} is {a}, outside [0, 1]")
    for name in ("head_alpha", "embed_alpha"):
        if not 0.0 <= getattr(spec, name) <= 1.0:
            raise MergeError(f"{name} is {getattr(spec, name)}, outside [0, 1]")


def block_index(key: str, boundaries: tuple[int, ...]) -> int | None:
    """The block holding state-dict `key`: k for a `model.layers.{i}.*` key with boundaries[k] <= i <
    boundaries[k+1]; None for the embedding, final-norm and head keys (they take embed_alpha/head_alpha).
    """
    if m := _LAYER.match(key):
        layer = int(m.group(1))
        if not boundaries or not boundaries[0] <= layer < boundaries[-1]:
            raise MergeError(f"key '{key}' is layer {layer}, beyond the spec's blocks {boundaries}")
        return bisect.bisect_right(boundaries, layer) - 1
    if _EMBED.match(key) or _HEAD.match(key):
        return None
    raise MergeError(
        f"key '{key}' is not a Llama weight this merge knows "
        "(model.embed_tokens.*, model.layers.{i}.*, model.norm.*, lm_head.*)"
    )


def alpha_for(key: str, spec: BlockSpec) -> float:
    """The SFT weight of state-dict `key` under the module rule above."""
    k = block_index(key, spec.boundaries)
    if k is not None:
        return spec.alphas[k]
    return spec.embed_alpha if _EMBED.match(key) else spec.head_alpha


def layer_count(state_dict: Iterable[str]) -> int:
    """Number of transformer layers, from the `model.layers.{i}.` keys of a state dict (or its key list)."""
    layers = {int(m.group(1)) for key in state_dict if (m := _LAYER.match(key))}
    if not layers:
        return 0
    missing = sorted(set(range(max(layers) + 1)) - layers)
    if missing:
        raise MergeError(f"state dict has model.layers up to {max(layers)} but lacks layer(s) {missing[:5]}")
    return max(layers) + 1


def merge_tensor(key: str, sft: Tensor, rl: Tensor, spec: BlockSpec) -> Tensor:
    """One tensor merged with its block's α: α·sft + (1 − α)·rl in float32, cast to the RLHF dtype."""
    return average_state_dicts({key: sft}, {key: rl}, alpha_for(key, spec))[key]


def merge_blocks(sft: Mapping[str, Tensor], rl: Mapping[str, Tensor], spec: BlockSpec) -> dict[str, Tensor]:
    """The merged state dict, in memory (for ratio search); every key merged with `alpha_for(key, spec)`."""
    check_compatible(sft, rl)
    validate(spec, layer_count(rl))
    return {key: merge_tensor(key, sft[key], t_rl, spec) for key, t_rl in rl.items()}


def partwise_spec(n_layers: int, k: int, block: int, alpha: float) -> BlockSpec:
    """Part-wise MA (§4): block `block` of the default K-split averaged with α, all else at θ_rl.

    "All else" includes the head (`model.norm`, `lm_head`) and the embeddings: they stay at the
    RLHF weights (α = 0), so the run isolates the effect of averaging that one block.
    """
    if not 0 <= block < k:
        raise MergeError(f"block {block} does not exist: K = {k} blocks are numbered 0..{k - 1}")
    alphas = tuple(alpha if i == block else 0.0 for i in range(k))
    spec = BlockSpec(default_boundaries(n_layers, k), alphas, head_alpha=0.0, embed_alpha=0.0)
    validate(spec, n_layers)
    return spec


def hma_alphas(scores: Tensor, alpha: float, eps: float = 0.2) -> Tensor:
    """HMA block ratios from learnable scores. scores (K,) -> (K,), differentiable.

    α_k = α · K · (σ(s_k) + ε) / Σ_j (σ(s_j) + ε), clamped to [0, 1]. This is the reference code's
    parameterisation; the paper's printed Eq. 11 drops the factor K, which would make mean_k α_k = α/K.
    Before clamping mean_k α_k = α exactly; s_k = logit(α) for all k gives α_k = α. Clamping only
    binds when α·K·(1 + ε) > Σ_j(σ(s_j) + ε), and then the mean falls below α.
    """
    if scores.dim() != 1 or scores.numel() == 0:
        raise MergeError(f"HMA scores must be a non-empty vector (K,), got shape {tuple(scores.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise MergeError(f"alpha must lie in [0, 1], got {alpha}")
    w = torch.sigmoid(scores) + eps
    return (alpha * scores.numel() * w / w.sum()).clamp(0.0, 1.0)
