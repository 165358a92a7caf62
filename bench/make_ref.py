"""Build the stages bench/tune_rl.py starts from (--ref), for one seed, without a pipeline run.

tune_rl, tune_irft_la and rft_reward_model read a "ref" directory: data/ (the data stage's Parquet
snapshots), sft/ (the plain-SFT policy) and rm/ (the judge reward model). Until now a ref was made of links
into a bench/compare_methods.py run (an hour per seed here). This script builds the same three stages by
calling the pipeline's own stage functions (alignpipe.data.prepare, training.sft, training.reward_model)
with compare_methods' settings (its judge RM: base-init, 60 steps) and `seed=N`, at the stage's 2 threads,
so the result is the table's stages of that seed: `--check DIR` compares the built weights with a
compare_methods run's stages in DIR and says whether they are bit-identical (checked for the SFT at seed 4;
at seeds 0-3 tune_rl's `sft` gold equals the old tables' SFT row: 0.604, 0.592, 0.611, 0.587).

    .venv/bin/python bench/make_ref.py --seed 0 --out /tmp/ref400        # ~6.5 min alone here: SFT 80 s, RM 310 s
    .venv/bin/python bench/make_ref.py --seed 4 --out /tmp/ref400s4 --check /tmp/x400s4
    .venv/bin/python bench/tune_rl.py ppo --ref /tmp/ref400 --seed 0
    .venv/bin/python bench/make_ref.py --seed 0 --out /tmp/ref400c sft.optim.steps=96 --from /tmp/ref400

`key=value` overrides change the settings (the CLI's grammar). With overrides of sft.* only, `--from REF` links
REF's data/ and rm/ (REF must be a ref of the same seed, eval prompts and config; not checked) and builds only
the SFT, about 80 s per 30 steps here (256 steps: 10.5 min), instead of retraining the 5-min judge RM as well.

A finished part (its directory present) is not rebuilt, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignpipe.config import ConfigError, load_config  # noqa: E402
from alignpipe.data import prepare  # noqa: E402
from alignpipe.data.snapshot import read_snapshot  # noqa: E402
from alignpipe.models import resolve_model  # noqa: E402
from alignpipe.tracking import NullLogger  # noqa: E402
from alignpipe.training import reward_model, sft  # noqa: E402
from alignpipe.training.optim import set_threads  # noqa: E402
from bench.compare_methods import NO_SEARCH  # noqa: E402


def build(part: str, out: Path, body, keep: str = "") -> Path:
    """body(tmp), then tmp/<keep> becomes out/<part>, unless that is there already. Built in a temp dir first, so a
    killed build leaves no half-written part (the training loops save their model to tmp/model: keep="model")."""
    final = out / part
    if final.exists():
        print(f"{part}: {final} exists, kept", flush=True)
        return final
    tmp = out / f".{part}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.time()
    body(tmp)
    (tmp / keep).rename(final)
    if keep:
        shutil.rmtree(tmp)
    print(f"{part}: built in {time.time() - t0:.0f} s", flush=True)
    return final


def weights_digest(model_dir: Path) -> str:
    """sha256 of the *.safetensors bytes only (alignpipe.store.directory_digest also hashes config and tokenizer
    files, whose metadata may differ where the weights do not)."""
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def check(out: Path, table: Path) -> None:
    """Compare sft/ and rm/ with the single sft / reward_model stage of a compare_methods run at `table`."""
    for part, stage in (("sft", "sft"), ("rm", "reward_model")):
        found = [m.parent / "model" for m in sorted((table / "stages" / stage).glob("*/manifest.json"))  # finished stages:
                 if not m.parent.name.startswith(".") and not m.parent.name.endswith(".partial")]  # not .<fp>.tmp-*, <fp>.partial
        if len(found) != 1:
            print(f"check {part}: want one finished {stage} stage under {table / 'stages' / stage}, found {len(found)}")
            continue
        ours, theirs = weights_digest(out / part), weights_digest(found[0])
        print(f"check {part}: {'bit-identical' if ours == theirs else 'DIFFERENT'} ({ours} vs {theirs} in {found[0]})")


def link_parts(src: Path, out: Path, overrides: list[str]) -> None:
    """Link src's data/ and rm/ into out, so only the SFT is built: allowed when the overrides touch sft.* only (the
    data and the judge RM, trained from the base model, do not depend on them)."""
    other = [o for o in overrides if not o.startswith("sft.")]
    if other:
        raise SystemExit(f"--from {src}: data/ and rm/ would differ under {', '.join(other)}; "
                         "--from takes overrides of sft.* only")
    for part in ("data", "rm"):
        if not (src / part).is_dir():
            raise SystemExit(f"--from {src}: no {part}/ there (not a ref? build one with make_ref first)")
    out.mkdir(parents=True, exist_ok=True)
    for part in ("data", "rm"):
        dst = out / part
        if dst.is_symlink() and dst.resolve() == (src / part).resolve():
            continue
        if dst.exists() or dst.is_symlink():
            raise SystemExit(f"--from {src}: {dst} is there already and is not a link to {src / part}")
        dst.symlink_to((src / part).resolve(), target_is_directory=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default=str(REPO / "configs" / "pipeline" / "quickstart.yaml"))
    ap.add_argument("--eval-prompts", type=int, default=400, help="data.world.n_eval_prompts (the tables' 400)")
    ap.add_argument("--check", type=Path, default=None, help="a compare_methods --artifacts dir of the same seed")
    ap.add_argument("--from", dest="from_ref", type=Path, default=None,
                    help="link data/ and rm/ from this ref (same seed and config; overrides of sft.* only)")
    ap.add_argument("overrides", nargs="*", help="key=value settings, e.g. sft.optim.steps=96")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config, [*NO_SEARCH, f"data.world.n_eval_prompts={args.eval_prompts}",
                                        f"seed={args.seed}", *args.overrides])
    except ConfigError as e:
        ap.error(str(e))
    if args.from_ref is not None:
        link_parts(args.from_ref, args.out, args.overrides)
    if cfg.data.world is None:
        raise SystemExit(f"{args.config}: make_ref builds refs of the built-in world only (data.world is unset)")
    L = cfg.model.max_length
    base = resolve_model(cfg.model.name, REPO / "artifacts" / "models")
    data = build("data", args.out, lambda d: prepare.run(cfg.data, cfg.seed, d))
    set_threads(cfg.sft.resources.num_cpus)
    build("sft", args.out, lambda d: sft.run(cfg.sft, base, read_snapshot(data / "sft.parquet"), d, NullLogger(),
                                               max_length=L, seed=cfg.seed), keep="model")
    set_threads(cfg.reward_model.resources.num_cpus)
    build("rm", args.out, lambda d: reward_model.run(
        cfg.reward_model, base, read_snapshot(data / "pairs_train.parquet"), read_snapshot(data / "pairs_heldout.parquet"),
        d, NullLogger(), max_length=L, seed=cfg.seed), keep="model")
    if args.check:
        check(args.out, args.check)


if __name__ == "__main__":
    main()
