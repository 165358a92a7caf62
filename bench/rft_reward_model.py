"""Train RFT's IRL reward model as RFT's first round does, and save it, so bench/best_of_n.py can check
whether it ranks the policy's own samples by gold (issue #3).

RFT (§1b, training/rft.py) climbs a reward model fitted on (demonstration ≻ own sample) pairs; PPO against it
can only raise gold if, among the policy's own samples, the one it scores highest tends to be the better one.
This fits that RM from the starting policy, once per `PAIRSxSTEPS` variant (the first PAIRS pairs; the
pipeline's round 1 uses rft.rm_steps × optim.batch_size pairs for rft.rm_steps steps), on one sample per
demonstration at the PPO rollout temperature and length, and saves each to OUT/s<seed>_<pairs>x<steps>:

    .venv/bin/python bench/rft_reward_model.py --ref /tmp/ref400s2 --seed 2 32x4 256x32
    .venv/bin/python bench/best_of_n.py --policy /tmp/ref400s2/sft --rm /tmp/ref400s2/rm /tmp/rftrm/s2_32x4 \\
        /tmp/rftrm/s2_256x32 --n 4 --temperatures 1.0

--ref as bench/tune_rl.py's (sft/ the policy, data/sft.parquet the demonstrations). Each RM is a full copy
of the backbone (~0.5 GB for SmolLM2-135M).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignpipe.config import ModelConfig, PPOConfig, SFTConfig  # noqa: E402
from alignpipe.data.snapshot import read_snapshot  # noqa: E402
from alignpipe.eval.generation import generate_responses  # noqa: E402
from alignpipe.models import RewardModel, load_policy  # noqa: E402
from alignpipe.training.optim import make_optimizer, seed_everything  # noqa: E402
from alignpipe.training.rft import demonstration_pairs, train_reward_model  # noqa: E402


def variant(text: str) -> tuple[int, int]:
    pairs, _, steps = text.partition("x")
    if not (pairs.isdigit() and steps.isdigit()):
        raise argparse.ArgumentTypeError(f"variant {text!r}: want PAIRSxSTEPS, e.g. 256x32")
    return int(pairs), int(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", type=variant, nargs="+", help="PAIRSxSTEPS, e.g. 32x4 (the old default) 256x32")
    ap.add_argument("--ref", type=Path, default=Path("/tmp/qs_ref"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rftrm"))
    a = ap.parse_args()

    cfg, ppo, max_length = SFTConfig(), PPOConfig(), ModelConfig().max_length
    rows = read_snapshot(a.ref / "data" / "sft.parquet")
    policy, tok = load_policy(a.ref / "sft")
    seed_everything(a.seed)
    t0 = time.time()
    own = generate_responses(policy, tok, [r["prompt"] for r in rows], max_new_tokens=ppo.max_new_tokens,
                             temperature=ppo.temperature, seed=a.seed)
    pairs = demonstration_pairs(rows, own)
    print(f"{len(pairs)} (demonstration ≻ own sample) pairs [{time.time() - t0:.0f} s]", flush=True)
    for n, steps in a.variants:
        t0 = time.time()
        rm = RewardModel.from_pretrained_backbone(a.ref / "sft")
        opt, sched = make_optimizer(rm.parameters(), cfg.optim.model_copy(update={"lr": cfg.rft.rm_lr, "steps": steps}))
        stats = train_reward_model(rm, opt, sched, tok, pairs[:n], cfg.optim, steps, max_length=max_length, seed=a.seed)
        out = a.out / f"s{a.seed}_{n}x{steps}"
        rm.save(out)
        tok.save_pretrained(out)  # as the reward_model stage saves it, so best_of_n can load it
        print(out, {k: round(v, 3) for k, v in stats.items()}, f"[{time.time() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
