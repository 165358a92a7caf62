"""Model resolution and loading: built-ins (`smollm2-135m-instruct`, `tiny`), hub ids, local directories."""

from alignpipe.models.loading import (
    ModelNotFoundError,
    default_device,
    load_merged_policy,
    load_policy,
    load_tokenizer,
    resolve_model,
)
from alignpipe.models.reward import RewardModel

__all__ = ["ModelNotFoundError", "RewardModel", "default_device", "load_merged_policy", "load_policy", "load_tokenizer", "resolve_model"]
