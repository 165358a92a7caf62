"""Pure loss math (torch only). Every function documents tensor shapes and cites its equation."""

from alignpipe.losses.logprobs import masked_mean, sequence_logps, token_logps
from alignpipe.losses.preference import bradley_terry_loss, dpo_loss

__all__ = ["bradley_terry_loss", "dpo_loss", "masked_mean", "sequence_logps", "token_logps"]
