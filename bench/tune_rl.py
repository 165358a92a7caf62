"""Tune PPO / RSF / RFT on the real model: train from a quickstart run's artifacts, then print gold, RM
score and response length on the held-out eval prompts (greedy, 48 new tokens, as the pipeline's
evaluation) and the training wall time.

    .venv/bin/python bench/tune_rl.py ppo                          # defaults from config.py
    .venv/bin/python bench/tune_rl.py ppo rlhf.ppo.kl_coef=0.1     # `a.b=value` overrides (the CLI's grammar)
    .venv/bin/python bench/tune_rl.py rft sft.rft.rounds=3
    .venv/bin/python bench/tune_rl.py sft                          # evaluate the starting checkpoint (also: dpo)

Inputs under --ref (default /tmp/qs_ref): sft/ (SFT policy), rm/ (reward model), dpo/, data/
(eval_prompts, pairs_train and sft parquet snapshots). PPO and RSF start from sft/ and train on the
distinct prompts of pairs_train (the RM's own training prompts, as the pipeline's rlhf stage would);
RFT starts from sft/ too (continuing SFT with IRL on the same demonstrations, sft.parquet).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignpipe.config import load_config  # noqa: E402
from alignpipe.data.snapshot import read_snapshot  # noqa: E402
from alignpipe.eval.generation import generate_responses  # noqa: E402
from alignpipe.eval.scoring import gold_scores, reward_scores  # noqa: E402
from alignpipe.models import RewardModel, load_policy, load_tokenizer  # noqa: E402
from alignpipe.training import ppo, rft, rsf  # noqa: E402


class PrintLogger:
    """Prints a few keys of every logged step, so a tuning run can be followed."""

    KEYS = ("reward", "score", "kl", "entropy", "clipfrac", "approx_kl", "value_loss", "response_length", "eos_fraction",
            "best_reward", "sample_reward", "kept_length", "sft_loss", "rm_loss", "rm_accuracy", "rm_accuracy_after")

    def __init__(self):
        self.t0 = time.time()

    def log(self, metrics, step):
        shown = " ".join(f"{k}={metrics[k]:.3g}" for k in self.KEYS if k in metrics)
        print(f"  [{time.time() - self.t0:6.1f}s] step {step} {shown}", flush=True)


def reference_step_s(model_dir: Path) -> float:
    """Seconds of one forward + backward of the model on 8×128 tokens (full logits), after one warm-up.

    The machine is shared, so wall times swing with other load; the brief's budget is stated against
    this step (~2.5 s on an idle machine), and `train_s_normalised` rescales the run's time to it.
    """
    model, _ = load_policy(model_dir)
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(2):
        t = time.time()
        model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)
        times.append(time.time() - t)
    return times[-1]


def evaluate(model_dir: Path, ref: Path, max_length: int) -> dict[str, float]:
    """Greedy responses to the eval prompts -> mean gold, mean raw RM score, mean length in characters."""
    rows = read_snapshot(ref / "data" / "eval_prompts.parquet")
    model, tok = load_policy(model_dir)
    responses = generate_responses(model, tok, [r["prompt"] for r in rows], max_new_tokens=48, batch_size=20)
    rm, rm_tok = RewardModel.load(ref / "rm"), load_tokenizer(ref / "rm")
    rm_scores = reward_scores(rm, rm_tok, [r["prompt"] for r in rows], responses, max_length=max_length)
    gold = gold_scores(rows, responses)
    by_family = {f: round(float(np.mean([g for g, r in zip(gold, rows, strict=True) if r["family"] == f])), 3)
                 for f in sorted({r["family"] for r in rows})}
    return {"gold": float(np.mean(gold)), "rm": float(np.mean(rm_scores)),
            "length": float(np.mean([len(r) for r in responses])), "gold_by_family": by_family}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=["ppo", "rsf", "rft", "sft", "dpo"])
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. rlhf.ppo.kl_coef=0.1")
    ap.add_argument("--ref", type=Path, default=Path("/tmp/qs_ref"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--normalise", action="store_true",
                    help="time a reference 8×128 forward+backward before and after, and rescale train_s to 2.5 s per step")
    ap.add_argument("--keep", type=Path, default=None, help="write the trained model here instead of a temp dir")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(None, [f"rlhf.method={args.method}" if args.method in ("ppo", "rsf") else "sft.method=rft", *args.overrides]
                      if args.method in ("ppo", "rsf", "rft") else args.overrides)
    max_length = cfg.model.max_length
    if args.method in ("sft", "dpo"):
        print(json.dumps({"method": args.method, **evaluate(args.ref / args.method, args.ref, max_length)}))
        return
    out = args.keep or Path(tempfile.mkdtemp(prefix=f"tune_{args.method}_"))
    out.mkdir(parents=True, exist_ok=True)
    step_before = reference_step_s(args.ref / "sft") if args.normalise else None
    t0 = time.time()
    if args.method == "rft":
        demos = read_snapshot(args.ref / "data" / "sft.parquet")
        print(cfg.sft.rft.model_dump(), cfg.sft.optim.model_dump(), flush=True)
        result = rft.run(cfg.sft, args.ref / "sft", demos, out, PrintLogger(), max_length=max_length, seed=args.seed)
    else:
        prompts = list(dict.fromkeys(r["prompt"] for r in read_snapshot(args.ref / "data" / "pairs_train.parquet")))
        section = cfg.rlhf.ppo if args.method == "ppo" else cfg.rlhf.rsf
        print(section.model_dump(), cfg.rlhf.optim.model_dump(), f"calibration={cfg.rlhf.reward_calibration}", flush=True)
        loop = ppo if args.method == "ppo" else rsf
        result = loop.run(cfg.rlhf, args.ref / "sft", args.ref / "rm", prompts, out, PrintLogger(), max_length=max_length, seed=args.seed)
    train_s = time.time() - t0
    timing = {"train_s": round(train_s, 1)}
    if args.normalise:
        step_s = (step_before + reference_step_s(args.ref / "sft")) / 2
        timing |= {"ref_step_s": round(step_s, 2), "train_s_normalised": round(train_s * 2.5 / step_s, 1)}
    scores = evaluate(out / "model", args.ref, max_length)
    print(json.dumps({"method": args.method, "overrides": args.overrides, **scores, **timing,
                      "threads": torch.get_num_threads(), **{k: round(v, 4) for k, v in result.metrics.items()}}))


if __name__ == "__main__":
    main()
