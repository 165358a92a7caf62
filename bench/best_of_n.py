"""How much a reward model's best-of-n beats the policy's own greedy answer, by gold (issue #3).

RSF fine-tunes on the RM's best of n samples, and PPO climbs the same RM from sampled rollouts; the
pipeline then evaluates greedily. Neither can raise greedy gold unless the RM's pick is better than the
greedy answer. This measures that ceiling directly, on fresh world prompts (a seed no data stage uses),
for each sampling temperature: the paired gold difference from greedy (± SE, overall and per family) of
one sample, of the RM's best of n (each --rm; selected as RSF selects: rsf.sample_and_select's scoring and
rl.selection), of that best only where the RM scores it above the greedy answer and the greedy answer
elsewhere (rlhf.rsf.keep=better_than_greedy; the share kept in brackets), and of the gold oracle's best of n
(what a perfect judge would keep).

    .venv/bin/python bench/best_of_n.py --policy ARTIFACTS/stages/sft/<fp>/model \\
        --rm ARTIFACTS/stages/reward_model/<fp>/model [more RMs] [--n 4] [--temperatures 1.0 0.7 0.4] [--prompts 200]

Generation as RSF's (rlhf.rsf.max_new_tokens, batches of 64, seed per temperature); greedy with the same
token budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignpipe.calibration.rolling import RollingCalibrator  # noqa: E402
from alignpipe.config import ModelConfig, RSFConfig  # noqa: E402
from alignpipe.eval.generation import generate_responses  # noqa: E402
from alignpipe.eval.scoring import gold_scores  # noqa: E402
from alignpipe.models import RewardModel, load_policy, load_tokenizer  # noqa: E402
from alignpipe.rl.selection import best_over_baseline  # noqa: E402
from alignpipe.training.ppo import rm_rewards  # noqa: E402
from alignpipe.training.rsf import GENERATION_BATCH  # noqa: E402
from bench.tune_irft_la import fresh_prompts  # noqa: E402


def line(name: str, scores: np.ndarray, greedy: np.ndarray, families: np.ndarray) -> str:
    """`name`: mean gold, its paired difference from greedy ± SE, and that difference per family."""
    d = scores - greedy
    per = " ".join(f"{f} {d[families == f].mean():+.3f}" for f in sorted(set(families)))
    return f"  {name:24s} gold {scores.mean():.3f}  vs greedy {d.mean():+.3f} ± {d.std(ddof=1) / len(d) ** 0.5:.3f}   {per}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", type=Path, required=True, help="the policy RSF / PPO would start from (e.g. the SFT stage's model)")
    ap.add_argument("--rm", type=Path, nargs="+", required=True, help="reward-model directories (a reward_model stage's model)")
    ap.add_argument("--n", type=int, default=RSFConfig().n)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.7, 0.4])
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=RSFConfig().max_new_tokens)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    rows = fresh_prompts(a.prompts)
    prompts, families = [r["prompt"] for r in rows], np.array([r["family"] for r in rows])
    max_length = ModelConfig().max_length
    model, tok = load_policy(a.policy)
    model.eval()
    t0 = time.time()
    greedy_responses = generate_responses(model, tok, prompts, max_new_tokens=a.max_new_tokens, batch_size=GENERATION_BATCH)
    greedy = np.array(gold_scores(rows, greedy_responses))
    rms = []
    for p in a.rm:
        rm, rm_tok = RewardModel.load(p), load_tokenizer(p)
        greedy_scores = rm_rewards(rm, rm_tok, RollingCalibrator("none", 8), prompts, greedy_responses, max_length)[1]
        rms.append((p, rm, rm_tok, greedy_scores))
    print(f"{len(rows)} fresh prompts, n = {a.n}, greedy gold {greedy.mean():.3f}", flush=True)
    flat, flat_rows = [p for p in prompts for _ in range(a.n)], [r for r in rows for _ in range(a.n)]
    for i, temperature in enumerate(a.temperatures):
        responses = generate_responses(model, tok, flat, max_new_tokens=a.max_new_tokens, temperature=temperature,
                                       batch_size=GENERATION_BATCH, seed=a.seed + i)
        gold = np.array(gold_scores(flat_rows, responses)).reshape(len(rows), a.n)
        print(f"T = {temperature}", flush=True)
        print(line("one sample", gold.mean(1), greedy, families))
        print(line(f"oracle best of {a.n}", gold.max(1), greedy, families))
        for path, rm, rm_tok, greedy_scores in rms:
            _, scores = rm_rewards(rm, rm_tok, RollingCalibrator("none", 8), flat, responses, max_length)
            best, keep = best_over_baseline(torch.as_tensor(scores).view(len(rows), a.n), torch.as_tensor(greedy_scores))
            picked = gold[np.arange(len(rows)), best.numpy()]
            label = path.parent.name[:8] if path.name == "model" else path.name[:12]  # a stage's fingerprint, else the dir
            print(line(f"RM best of {a.n} ({label})", picked, greedy, families), flush=True)
            keep = keep.numpy()
            print(line(f"  if above greedy ({keep.mean():.0%})", np.where(keep, picked, greedy), greedy, families), flush=True)
    print(f"[{time.time() - t0:.0f} s]")


if __name__ == "__main__":
    main()
