"""Write averaged checkpoints from two safetensors model directories (no transformers import).

Shards are averaged one file at a time, so peak memory is two shards, not two models. Non-weight
files (config, tokenizer, generation config) are copied from the RLHF model. The grid endpoints
α = 0 and α = 1 are the RLHF and SFT checkpoints themselves and are referenced, not rewritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from alignpipe.merging.average import MergeError, average_state_dicts
from alignpipe.store import StageResult


def write_averaged_model(sft_dir: Path, rl_dir: Path, alpha: float, out: Path) -> Path:
    """out/ = α·sft + (1 − α)·rl, shard by shard, plus the RLHF model's non-weight files."""
    shards = sorted(p.name for p in Path(rl_dir).glob("*.safetensors"))
    if not shards:
        raise MergeError(f"{rl_dir} holds no .safetensors weights")
    missing = [s for s in shards if not (Path(sft_dir) / s).is_file()]
    if missing:
        raise MergeError(f"SFT model {sft_dir} lacks the weight file(s) {missing} that the RLHF model {rl_dir} has")
    out.mkdir(parents=True)
    for name in shards:
        merged = average_state_dicts(load_file(Path(sft_dir) / name), load_file(Path(rl_dir) / name), alpha)
        save_file({k: v.contiguous() for k, v in merged.items()}, out / name, metadata={"format": "pt"})
    for f in Path(rl_dir).iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)
    return out


def write_averaged_models(sft_dir: Path, rl_dir: Path, alphas: tuple[float, ...], out_dir: Path) -> StageResult:
    """Every α of the grid; manifest info maps f"{α:.4g}" to its checkpoint (relative to the stage dir, or absolute)."""
    models = {}
    for alpha in alphas:
        if alpha == 0.0:
            models["0"] = str(rl_dir)
        elif alpha == 1.0:
            models["1"] = str(sft_dir)
        else:
            name = f"alpha-{alpha:.4g}"
            write_averaged_model(sft_dir, rl_dir, alpha, out_dir / name)
            models[f"{alpha:.4g}"] = name  # relative: out_dir is renamed when the stage is published
    return StageResult(metrics={"models": len(models)}, info={"models": models})
