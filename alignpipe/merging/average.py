"""Linear model averaging (ALGORITHMS §4, MA): θ = α·θ_sft + (1 − α)·θ_rl over every tensor.

Convention: α is the weight on the SFT model (α = 1 -> SFT, α = 0 -> RLHF), as in the HMA
reference code. Embeddings and norms are averaged with the same α as every other tensor; the
per-block rule of HMA (issue #5) must keep that rule so MA and HMA stay comparable.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


class MergeError(ValueError):
    """The two state dicts cannot be averaged; the message names what differs."""


def check_compatible(sft: Mapping[str, Tensor], rl: Mapping[str, Tensor]) -> None:
    """Raise MergeError naming the first differing key set or tensor shape/dtype."""
    only_sft, only_rl = sorted(set(sft) - set(rl)), sorted(set(rl) - set(sft))
    if only_sft or only_rl:
        raise MergeError(f"state dicts differ in keys: only in SFT {only_sft[:5]}, only in RLHF {only_rl[:5]}")
    for k in sorted(sft):
        if sft[k].shape != rl[k].shape:
            raise MergeError(f"tensor '{k}' has shape {tuple(sft[k].shape)} in SFT but {tuple(rl[k].shape)} in RLHF")
        if sft[k].dtype != rl[k].dtype:
            raise MergeError(f"tensor '{k}' has dtype {sft[k].dtype} in SFT but {rl[k].dtype} in RLHF")


def average_state_dicts(sft: Mapping[str, Tensor], rl: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """α·sft + (1 − α)·rl per tensor, computed in float32 and cast back to the RLHF dtype.

    Integer/bool buffers (none in Llama-family checkpoints) are taken from the RLHF model.
    """
    if not 0.0 <= alpha <= 1.0:
        raise MergeError(f"alpha must lie in [0, 1], got {alpha}")
    check_compatible(sft, rl)
    out = {}
    for k, t_rl in rl.items():
        if not t_rl.is_floating_point():
            out[k] = t_rl.clone()
            continue
        merged = torch.lerp(t_rl.float(), sft[k].float(), alpha)  # rl + α(sft − rl)
        out[k] = merged.to(t_rl.dtype)
    return out
