"""Gold score of IRFT (§1b) and Linear Alignment (§5) on SmolLM2-135M, against plain SFT.

Needs a quickstart run's artifacts (data/sft.parquet, data/eval_prompts.parquet, the SFT model) and
the converted base model. Greedy responses, 48 new tokens, scored by the world's gold checker.

  HF_HUB_OFFLINE=1 .venv/bin/python bench/tune_irft_la.py sft                      # plain SFT from base
  HF_HUB_OFFLINE=1 .venv/bin/python bench/tune_irft_la.py irft --base SFT_DIR --stages 5 --irft-lr 5e-6 --sft-weight 1
  HF_HUB_OFFLINE=1 .venv/bin/python bench/tune_irft_la.py la --step-sizes 0 1 2 --principles 0 1
  HF_HUB_OFFLINE=1 .venv/bin/python bench/tune_irft_la.py eval --model DIR          # greedy gold of any model
  HF_HUB_OFFLINE=1 .venv/bin/python bench/tune_irft_la.py eval --model SFT A B --fresh 400  # 400 new world prompts;
      # A and B also as the paired per-prompt difference to SFT ± its standard error

The quickstart's 40 eval prompts leave ±0.05 of gold noise (a prompt's gold SD is ~0.33); `--fresh N`
scores on N prompts of the quickstart world that no stage has seen (seed + 11) instead.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from alignpipe.config import IRFTConfig, LinearAlignmentConfig, OptimConfig, SFTConfig
from alignpipe.data.snapshot import read_snapshot
from alignpipe.eval.generation import generate_responses
from alignpipe.eval.linear_alignment import linear_alignment_generator
from alignpipe.eval.scoring import gold_scores
from alignpipe.models import load_policy
from alignpipe.training import irft, sft

PRINCIPLES = (
    LinearAlignmentConfig().principle,  # 0: the config default
    "Follow the instruction exactly. Write exactly the number of words or items asked for, include every "
    "word it names, use only lowercase letters when asked, and answer arithmetic with the number only.",
    "Answer with one short sentence or a short comma-separated list. Obey every constraint exactly: "
    "word counts, required words, lowercase, number of items. For arithmetic, give only the correct number.",
    "Follow every constraint of the instruction exactly.",  # 3: short
    "You are a careful assistant. Follow every constraint of the instruction exactly "  # 4: 0 plus one rule
    "and answer as briefly as the instruction allows. Never add explanations.",
)


class PrintLogger:
    def __init__(self, every: int = 1):
        self.every, self.t0 = every, time.time()

    def log(self, metrics, step):
        if "stage/gap_start" in metrics or step % self.every == 0:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"  [{time.time() - self.t0:.0f} s] step {step}: {shown}", flush=True)


def gold(model, tok, rows: list[dict], generate=generate_responses) -> tuple[float, dict[str, float], list[float]]:
    """Mean gold score of greedy responses, overall and per family, and the per-prompt scores."""
    responses = generate(model, tok, [r["prompt"] for r in rows], max_new_tokens=48, batch_size=20)
    scores = gold_scores(rows, responses)
    fams = sorted({r["family"] for r in rows})
    per = {f: sum(s for r, s in zip(rows, scores, strict=True) if r["family"] == f) / sum(r["family"] == f for r in rows)
           for f in fams}
    return sum(scores) / len(scores), per, scores


def paired(scores: list[float], ref: list[float]) -> str:
    """Mean per-prompt difference to `ref` ± its standard error (the same prompts, so most noise cancels)."""
    d = [a - b for a, b in zip(scores, ref, strict=True)]
    mean = sum(d) / len(d)
    se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5
    return f"{mean:+.4f} ± {se:.4f}"


def fresh_prompts(n: int) -> list[dict]:
    """n prompts of the quickstart world's families from a seed no data stage uses (world seed + 11)."""
    from alignpipe.config import WorldConfig
    from alignpipe.data import world

    w = WorldConfig()
    return [{"prompt": p["instruction"], **p} for p in world.make_prompts(n, w.seed + 11, w.families)]


def report(name: str, score: tuple[float, dict[str, float], list[float]], seconds: float,
           ref: list[float] | None = None) -> None:
    per = " ".join(f"{k}={v:.3f}" for k, v in score[1].items())
    vs = f", vs first model {paired(score[2], ref)}" if ref is not None else ""
    print(f"{name}: gold {score[0]:.4f} ({per}){vs} [{seconds:.0f} s]", flush=True)


def train(args, demos: list[dict], out: Path, optim: OptimConfig) -> tuple[Path, float]:
    """Plain SFT, or IRFT run as T consecutive one-stage runs on the seeded parts: the same algorithm
    (each stage has its own optimizer and batch seed), but a killed run resumes at the first stage
    without a saved model. -> (final model dir, training seconds)."""
    if args.what == "sft":
        t0 = time.time()
        res = sft.run(SFTConfig(optim=optim), args.base, demos, out, PrintLogger(), max_length=160, seed=0)
        print({k: round(v, 4) for k, v in res.metrics.items()}, flush=True)
        return out / "model", time.time() - t0
    cfg = SFTConfig(method="irft", optim=optim,
                    irft=IRFTConfig(stages=1, beta=args.beta, max_new_tokens=args.max_new_tokens, lr=args.irft_lr,
                                    sft_weight=args.sft_weight, temperature=args.temperature))
    start, total = args.base, 0.0
    for epoch in range(args.epochs):
        for t, part in enumerate(irft.split_stages(len(demos), args.stages, seed=epoch)):
            stage_dir = out / f"e{epoch}s{t}"
            if not (stage_dir / "wall_s").is_file():
                t0 = time.time()
                res = irft.run(cfg, start, [demos[i] for i in part], stage_dir, PrintLogger(),
                               max_length=160, seed=epoch * args.stages + t)
                print(f"epoch {epoch} stage {t}:", {k: round(v, 4) for k, v in res.metrics.items()}, flush=True)
                (stage_dir / "wall_s").write_text(str(time.time() - t0))
            total += float((stage_dir / "wall_s").read_text())
            start = stage_dir / "model"
    return start, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sft", "irft", "la", "eval"])
    ap.add_argument("--qs", type=Path, default=Path("/tmp/qs_ref"), help="quickstart artifacts (data/, sft/)")
    ap.add_argument("--base", type=Path, default=Path("artifacts/models/smollm2-135m-instruct"))
    ap.add_argument("--model", type=Path, nargs="+", help="eval: model dirs (each after the first also as the paired "
                    "per-prompt difference to the first); la: one, defaults to <qs>/sft")
    ap.add_argument("--stages", type=int, default=5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=2e-5, help="sft only (IRFT reads --irft-lr)")
    ap.add_argument("--irft-lr", type=float, default=IRFTConfig().lr)
    ap.add_argument("--sft-weight", type=float, default=IRFTConfig().sft_weight, help="irft: λ of the demonstration NLL")
    ap.add_argument("--steps", type=int, default=30, help="sft only")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=IRFTConfig().temperature, help="irft: of the own samples")
    ap.add_argument("--epochs", type=int, default=1, help="irft: passes over the data, each a run of --stages stages")
    ap.add_argument("--step-sizes", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    ap.add_argument("--principles", type=int, nargs="+", default=[0])
    ap.add_argument("--top-p", type=float, default=0.8)
    ap.add_argument("--keep-default-system", choices=["true", "false"], nargs="+",
                    default=[str(LinearAlignmentConfig().keep_default_system).lower()],
                    help="la: linear_alignment.keep_default_system settings to try")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", type=int, default=0, help="score on N new world prompts instead of the run's eval prompts")
    ap.add_argument("--out", type=Path, help="keep the trained model here")
    ap.add_argument("--no-eval", action="store_true", help="sft/irft: train only (score later with eval)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = read_snapshot(args.qs / "data" / "eval_prompts.parquet") if not args.fresh else fresh_prompts(args.fresh)
    demos = read_snapshot(args.qs / "data" / "sft.parquet")
    out = args.out or Path(tempfile.mkdtemp(prefix="tune_irft_la-"))
    optim = OptimConfig(lr=args.lr, steps=args.steps, batch_size=args.batch_size)
    if args.what in ("sft", "irft"):
        final, train_s = train(args, demos, out, optim)
        if args.no_eval:
            print(f"{args.what}: trained in {train_s:.0f} s, model {final}", flush=True)
            return
        model, tok = load_policy(final)
        t0 = time.time()
        report(f"{args.what} (train {train_s:.0f} s, model {final})", gold(model, tok, rows), time.time() - t0)
    elif args.what == "eval":
        ref = None
        for path in args.model:
            model, tok = load_policy(path)
            t0 = time.time()
            score = gold(model, tok, rows)
            report(str(path), score, time.time() - t0, ref)
            ref = score[2] if ref is None else ref
    else:
        model, tok = load_policy(args.model[0] if args.model else args.qs / "sft")
        t0 = time.time()
        plain = gold(model, tok, rows)
        report("the policy alone (greedy)", plain, time.time() - t0)
        for keep, p, r in itertools.product(args.keep_default_system, args.principles, args.step_sizes):
            cfg = LinearAlignmentConfig(principle=PRINCIPLES[p], step_size=r, top_p=args.top_p,
                                        keep_default_system=keep == "true")
            t0 = time.time()
            report(f"LA principle {p} step {r} top_p {args.top_p} keep_default_system {keep}",
                   gold(model, tok, rows, linear_alignment_generator(cfg)), time.time() - t0, plain[2])


if __name__ == "__main__":
    main()
