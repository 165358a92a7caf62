"""Checks of everything a user can get wrong, run before any server, Ray worker or training starts."""

from __future__ import annotations

from pathlib import Path

from alignpipe.config import PipelineConfig
from alignpipe.data.prepare import build_datasets
from alignpipe.data.sources import DataError
from alignpipe.models.loading import SMOLLM2, TINY, resolve_model


def preflight(config: PipelineConfig) -> None:
    """Raise ModelNotFoundError / DataError (naming the path, file, row or key) or return quietly."""
    if config.model.name not in (SMOLLM2, TINY):  # built-ins are built on demand; check the rest now
        resolve_model(config.model.name, Path(config.artifacts_dir) / "models")
    if config.data.sft is not None or config.data.preferences is not None or config.data.eval_prompts is not None:
        build_datasets(config.data, config.seed)  # validates every external row
    hh = config.reward_eval.hh_rlhf
    if hh is not None and not Path(hh).expanduser().is_file():
        raise DataError(f"config key 'reward_eval.hh_rlhf': data file not found: {hh}")
