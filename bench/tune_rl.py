"""Tune PPO / RSF / DPO / RFT / IRFT / Linear Alignment on the real model: train from a ref's SFT, one run per seed, then
print gold, RM score and response length on the held-out eval prompts (greedy, with the pipeline's
evaluation settings, `evaluation.*`), the paired gold difference from the starting SFT policy on the same
prompts (± its SE over prompts, and per family), and the training wall time. With several seeds, a last
line gives the mean paired difference over seeds ± an SE that counts both prompt-sampling and training-seed
noise (eval.metrics.replicated_paired_gain: every seed is scored on the same prompts, so the seeds' own SEs are
correlated). A gain of 0.01 to 0.02 is about one seed-to-seed swing here, so one seed cannot settle a setting.
All seeds here start from the one SFT policy under --ref, so they leave out the SFT's own seed noise, which
was larger (an RFT setting at +0.007 over three seeds from one SFT gave −0.042 from another): judge a
method across SFT seeds with bench/compare_methods.py `seed=N` and bench/combine_tables.py, or run this
script once per table's stages (--ref) and pool the runs with bench/pool_tune_runs.py. Each run's JSON line
carries what that needs: the ref, a hash of the eval prompts and the per-prompt gold differences from SFT.

    .venv/bin/python bench/tune_rl.py ppo                          # settings of --config (the quickstart's)
    .venv/bin/python bench/tune_rl.py ppo rlhf.ppo.kl_coef=0.1     # `a.b=value` overrides (the CLI's grammar)
    .venv/bin/python bench/tune_rl.py rsf --seed 0 1 2             # one training run per seed
    .venv/bin/python bench/tune_rl.py rft sft.rft.rounds=3
    .venv/bin/python bench/tune_rl.py irft sft.irft.stages=3
    .venv/bin/python bench/tune_rl.py dpo --seed 0 1               # DPO on pairs_train (rlhf.method=dpo)
    .venv/bin/python bench/tune_rl.py la linear_alignment.step_size=1   # no training: the SFT decoded by LA (§5)
    .venv/bin/python bench/tune_rl.py sft                          # evaluate the starting checkpoint
    .venv/bin/python bench/tune_rl.py eval --model /tmp/refc96/sft --label sft96   # any policy vs --ref's SFT
    .venv/bin/python bench/tune_rl.py more_sft sft.optim.lr=1e-5 sft.optim.steps=35   # the control below

Inputs under --ref (default /tmp/qs_ref): sft/ (SFT policy), rm/ (reward model; it scores the RM column and
is the one PPO and RSF climb), data/ (eval_prompts, pairs_train and sft parquet snapshots), as bench/make_ref.py
builds them, or links to a compare_methods run's stages/sft/<fp>/model, stages/reward_model/<fp>/model and
stages/data/<fp>. PPO, RSF and DPO start from sft/ and train as the pipeline's rlhf stage does (tasks.rlhf.train):
PPO and RSF on the distinct prompts of pairs_train (the RM's own training prompts), DPO on the pairs themselves;
`la` trains nothing and decodes sft/ with Linear Alignment under `linear_alignment.*` (seeded by --seed, as the
pipeline's evaluate stage decodes its aligner row); RFT and IRFT start from sft/ too (continuing SFT
with IRL on the same demonstrations, sft.parquet, as the pipeline's sft stage does with sft.irl_init=sft).
The evaluation reproduces the pipeline's evaluate stage's responses exactly (same prompts, decoding, batches), so `sft` here gives the comparison table's SFT gold.

`more_sft` is the control for IRFT and RFT: plain SFT continued from sft/ on the same demonstrations with
sft.optim (its steps, lr, batch), i.e. what the IRL methods add to SFT minus the IRL. IRFT's default pass is
one epoch over the 256 demonstrations at lr 1e-5 (5 stages of 51-52, 7 steps of 8 each, a warm-up + cosine
schedule per stage): `sft.optim.lr=1e-5 sft.optim.steps=35` gives plain SFT the same steps and peak lr. Refs for any seed: bench/make_ref.py.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
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

from alignpipe.config import ConfigError, load_config  # noqa: E402
from alignpipe.data.snapshot import read_snapshot  # noqa: E402
from alignpipe.eval.generation import generate_responses  # noqa: E402
from alignpipe.eval.linear_alignment import linear_alignment_generator  # noqa: E402
from alignpipe.eval.metrics import mean_and_stderr, replicated_paired_gain  # noqa: E402
from alignpipe.eval.scoring import gold_scores, reward_scores  # noqa: E402
from alignpipe.models import RewardModel, load_policy, load_tokenizer  # noqa: E402
from alignpipe.training import irft, rft  # noqa: E402
from alignpipe.training import sft as sft_loop  # noqa: E402
from tasks.rlhf import train as train_rlhf  # noqa: E402


class PrintLogger:
    """Prints a few keys of every logged step, so a tuning run can be followed."""

    KEYS = ("reward", "score", "kl", "entropy", "clipfrac", "approx_kl", "value_loss", "response_length", "eos_fraction",
            "best_reward", "sample_reward", "kept_length", "sft_loss", "ptx_loss", "rm_loss", "rm_accuracy", "rm_accuracy_after")

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


@functools.cache
def judge(rm_dir: Path) -> tuple:
    """The RM that scores the RM column, loaded once for all the evaluations of a run."""
    return RewardModel.load(rm_dir), load_tokenizer(rm_dir)


def evaluate(model_dir: Path, ref: Path, cfg, generate=generate_responses, seed: int | None = None) -> dict:
    """Greedy responses to the eval prompts, decoded as the pipeline's evaluation does -> mean gold, mean raw RM
    score, mean length in characters, the per-prompt gold scores and families (for paired differences) and a
    hash of the prompts (runs are pooled only over the same prompts). `generate`: generate_responses, or a
    linear_alignment_generator; seeded by `seed` (default cfg.seed)."""
    rows = read_snapshot(ref / "data" / "eval_prompts.parquet")
    prompts = [r["prompt"] for r in rows]
    model, tok = load_policy(model_dir)
    e = cfg.evaluation
    responses = generate(model, tok, prompts, max_new_tokens=e.max_new_tokens, temperature=e.temperature,
                         batch_size=e.batch_size, seed=cfg.seed if seed is None else seed)
    rm, rm_tok = judge(ref / "rm")
    rm_scores = reward_scores(rm, rm_tok, prompts, responses, max_length=cfg.model.max_length, batch_size=e.batch_size)
    gold = np.array(gold_scores(rows, responses))
    return {"gold": float(gold.mean()), "rm": float(np.mean(rm_scores)),
            "length": float(np.mean([len(r) for r in responses])),
            "per_prompt": gold, "families": np.array([r["family"] for r in rows]),
            "prompts_sha": hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:12]}


def evaluate_sft(ref: Path, cfg) -> dict:
    """evaluate() of ref/sft, kept in ref/.sft_eval.json and reused while the SFT's weights, the eval prompts and
    the settings that steer the evaluation are those it was computed with (every run of a ref scores the
    same SFT: ~1.7 min saved per run here)."""
    files = [*sorted((ref / "sft").glob("*.safetensors")), ref / "data" / "eval_prompts.parquet"]
    key = json.dumps({"files": [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
                      "evaluation": cfg.evaluation.model_dump(), "seed": cfg.seed, "max_length": cfg.model.max_length},
                     sort_keys=True)
    cache = ref / ".sft_eval.json"
    if cache.is_file():
        kept = json.loads(cache.read_text())
        if kept["key"] == key:
            return kept["scores"] | {"per_prompt": np.array(kept["scores"]["per_prompt"]),
                                     "families": np.array(kept["scores"]["families"])}
    scores = evaluate(ref / "sft", ref, cfg)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "scores": scores | {"per_prompt": scores["per_prompt"].tolist(),
                                                               "families": scores["families"].tolist()}}))
    tmp.replace(cache)
    return scores


def paired(scores: dict, base: dict) -> dict:
    """The paired gold difference from `base` on the same prompts: mean, SE over prompts, mean per family."""
    d = scores["per_prompt"] - base["per_prompt"]
    fam = base["families"]
    mean, se = mean_and_stderr(d)
    return {"gold_vs_sft": round(mean, 4), "se": round(se, 4),
            "by_family": {f: round(float(d[fam == f].mean()), 3) for f in sorted(set(fam))}}


def public(scores: dict) -> dict:
    return {k: round(v, 4) for k, v in scores.items() if k in ("gold", "rm", "length")}


def train(method: str, cfg, ref: Path, out: Path, seed: int):
    if method in ("rft", "irft", "more_sft"):
        demos = read_snapshot(ref / "data" / "sft.parquet")
        loop = {"rft": rft, "irft": irft, "more_sft": sft_loop}[method]
        return loop.run(cfg.sft, ref / "sft", demos, out, PrintLogger(), max_length=cfg.model.max_length, seed=seed)
    return train_rlhf(cfg.rlhf, ref / "sft", ref / "rm", read_snapshot(ref / "data" / "pairs_train.parquet"), out,
                      PrintLogger(), max_length=cfg.model.max_length, seed=seed, length_bias=cfg.data.world.length_bias)


def seed_arg(text: str) -> int:
    """--seed's values: an int; a key=value after them (it would be read as a seed) gets a hint, not argparse's
    bare "invalid int value"."""
    if "=" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is an override: put key=value overrides before --seed")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=["ppo", "rsf", "dpo", "rft", "irft", "more_sft", "la", "sft", "eval"])
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. rlhf.ppo.kl_coef=0.1")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "pipeline" / "quickstart.yaml",
                    help="the pipeline config the --ref artifacts came from (its rlhf / sft / evaluation settings apply)")
    ap.add_argument("--ref", type=Path, default=Path("/tmp/qs_ref"))
    ap.add_argument("--seed", type=seed_arg, nargs="+", default=[0],
                    help="training seeds, one run each (key=value overrides go before --seed)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--normalise", action="store_true",
                    help="time a reference 8×128 forward+backward before and after, and rescale train_s to 2.5 s per step")
    ap.add_argument("--keep", type=Path, default=None, help="write the trained models here (seed_<k>/) instead of temp dirs")
    ap.add_argument("--model", type=Path, default=None,
                    help="with `eval`: the policy to score against --ref's SFT (e.g. another ref's sft/, a --keep model)")
    ap.add_argument("--label", default=None, help="with `eval`: its setting's name for pool_tune_runs, as `eval:LABEL` "
                    "(the same label on several refs pools them; default: the --model path)")
    args = ap.parse_args()
    if (args.method == "eval") != (args.model is not None):
        ap.error("--model goes with `eval`, and `eval` needs --model")
    if args.model is not None and not (args.model / "config.json").is_file():
        ap.error(f"--model {args.model}: no config.json there (not a saved policy)")
    if args.threads:
        torch.set_num_threads(args.threads)
    section = "rlhf" if args.method in ("ppo", "rsf", "dpo") else "sft"
    method = {"more_sft": "sft"}.get(args.method, args.method)  # more_sft trains plain SFT
    try:
        cfg = load_config(args.config, [f"{section}.method={method}", *args.overrides]
                          if args.method not in ("la", "sft", "eval") else args.overrides)
    except ConfigError as e:
        ap.error(str(e))
    sft = evaluate_sft(args.ref, cfg)
    if args.method in ("sft", "eval"):
        model = args.model
        if model is None:  # the SFT itself: not a setting to pool (no seed, no differences)
            print(json.dumps({"method": "sft", "ref": str(args.ref.absolute()), "prompts_sha": sft["prompts_sha"],
                              **public(sft)}))
            return
        scores = evaluate(model, args.ref, cfg)
        print(json.dumps({"method": f"eval:{args.label or model}", "seed": None, "overrides": [],  # no training seed
                          "model": str(model.absolute()),
                          "ref": str(args.ref.absolute()), "prompts_sha": sft["prompts_sha"], **public(scores),
                          **paired(scores, sft), "sft_gold": round(sft["gold"], 4),
                          "gold_diffs": [round(float(x), 4) for x in scores["per_prompt"] - sft["per_prompt"]]}))
        return
    settings = {"ppo": cfg.rlhf.ppo, "rsf": cfg.rlhf.rsf, "dpo": cfg.rlhf, "rft": cfg.sft.rft, "irft": cfg.sft.irft,
                "more_sft": cfg.sft.optim, "la": cfg.linear_alignment}[args.method]
    print(settings.model_dump(), *([] if args.method == "la" else [getattr(cfg, section).optim.model_dump()]),
          f"calibration={cfg.rlhf.reward_calibration}", flush=True)
    gains, diffs = [], []
    for seed in args.seed:
        out = args.keep / f"seed_{seed}" if args.keep else Path(tempfile.mkdtemp(prefix=f"tune_{args.method}_"))
        out.mkdir(parents=True, exist_ok=True)
        step_before = reference_step_s(args.ref / "sft") if args.normalise else None
        t0 = time.time()
        metrics = {} if args.method == "la" else train(args.method, cfg, args.ref, out, seed).metrics
        train_s = time.time() - t0
        timing = {"train_s": round(train_s, 1)}
        if args.normalise:
            step_s = (step_before + reference_step_s(args.ref / "sft")) / 2
            timing |= {"ref_step_s": round(step_s, 2), "train_s_normalised": round(train_s * 2.5 / step_s, 1)}
        if args.method == "la":  # the SFT policy itself, decoded by Linear Alignment with this seed
            scores = evaluate(args.ref / "sft", args.ref, cfg, linear_alignment_generator(cfg.linear_alignment), seed)
        else:
            scores = evaluate(out / "model", args.ref, cfg)
        vs = paired(scores, sft)
        gains.append(vs["gold_vs_sft"])
        diffs.append(scores["per_prompt"] - sft["per_prompt"])
        print(json.dumps({"method": args.method, "seed": seed, "overrides": args.overrides, "ref": str(args.ref.absolute()),
                          "prompts_sha": sft["prompts_sha"],
                          **public(scores), **vs, "sft_gold": round(sft["gold"], 4), **timing,
                          "threads": torch.get_num_threads(), **{k: round(v, 4) for k, v in metrics.items()},
                          "gold_diffs": [round(float(x), 4) for x in diffs[-1]]}), flush=True)
    if len(gains) > 1:
        r = replicated_paired_gain(np.stack(diffs, axis=1))
        print(f"{args.method} {' '.join(args.overrides)}: gold vs SFT over seeds {args.seed} (per seed {gains}): "
              f"{r['gain']:+.4f} ± {r['se']:.4f} (z {r['z']:.2f}; ± {r['se_prompts']:.4f} prompts, ± {r['se_seed']:.4f} "
              "training seeds; eval.metrics.replicated_paired_gain)")


if __name__ == "__main__":
    main()
