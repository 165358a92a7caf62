"""Pure loss math (torch only). Every function documents tensor shapes and cites its equation."""

from alignpipe.losses.irft import irft_loss
from alignpipe.losses.logprobs import masked_mean, sequence_logps, token_logps
from alignpipe.losses.ppo import entropy_from_logits, ppo_policy_loss, ppo_value_loss
from alignpipe.losses.preference import bradley_terry_loss, dpo_loss, per_token_nll

__all__ = [
    "bradley_terry_loss", "dpo_loss", "entropy_from_logits", "irft_loss", "masked_mean", "per_token_nll",
    "ppo_policy_loss", "ppo_value_loss", "sequence_logps", "token_logps",
]
