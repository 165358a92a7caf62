"""Write the MA grid's averaged checkpoints from two safetensors model directories.

MA at α is the block-wise merge with every ratio equal (`BlockSpec.uniform`), written by the
streaming merge: shard by shard, checked from the headers first, published atomically, and with the
same embedding/norm rule HMA uses, so MA and HMA stay comparable. The grid endpoints α = 0 and α = 1
are the RLHF and SFT checkpoints themselves and are referenced, not rewritten.
"""

from __future__ import annotations

from pathlib import Path

from alignpipe.merging.blocks import BlockSpec, layer_count
from alignpipe.merging.stream import merge_files, read_header
from alignpipe.store import StageResult


def write_averaged_models(sft_dir: Path, rl_dir: Path, alphas: tuple[float, ...], out_dir: Path) -> StageResult:
    """Every α of the grid; manifest info maps f"{α:.4g}" to its checkpoint (relative to the stage dir, or absolute)."""
    n_layers = layer_count(read_header(rl_dir))
    models = {}
    for alpha in alphas:
        if alpha == 0.0:
            models["0"] = str(rl_dir)
        elif alpha == 1.0:
            models["1"] = str(sft_dir)
        else:
            name = f"alpha-{alpha:.4g}"
            merge_files(sft_dir, rl_dir, BlockSpec.uniform(n_layers, 1, alpha), out_dir / name)
            models[f"{alpha:.4g}"] = name  # relative: out_dir is renamed when the stage is published
    return StageResult(metrics={"models": len(models)}, info={"models": models})
