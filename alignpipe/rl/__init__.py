"""Pure RL math for the preference-alignment stage (torch only; ALGORITHMS §3, §5).

GAE and whitening (`advantages`), KL estimators and KL-shaped rewards (`kl`), best-of-n selection
for RSF/RAFT (`selection`) and the Linear Alignment decoding rule (`linear_alignment`). The PPO and
IRFT losses live in `alignpipe.losses.ppo` and `alignpipe.losses.irft`.
"""

from alignpipe.rl.advantages import gae, whiten
from alignpipe.rl.kl import kl_penalty, shaped_rewards
from alignpipe.rl.linear_alignment import linear_alignment_logits
from alignpipe.rl.selection import best_of_n, best_over_baseline, select_best

__all__ = [
    "best_of_n",
    "best_over_baseline",
    "gae",
    "kl_penalty",
    "linear_alignment_logits",
    "select_best",
    "shaped_rewards",
    "whiten",
]
