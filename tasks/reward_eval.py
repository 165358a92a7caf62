"""Stage `reward_eval`: the RM's accuracy, reward distribution and length bias, raw and calibrated,
on the held-out pairs of the run (and on real HH-RLHF pairs, and on fresh built-in-world pairs, when
configured)."""

import hashlib
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import RewardEvalConfig, WorldConfig
from alignpipe.data import world as world_data
from alignpipe.data.hh_rlhf import load_hh_pairs
from alignpipe.data.snapshot import read_snapshot, write_snapshot
from alignpipe.eval import reward_model as rm_eval
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage
from alignpipe.training.optim import set_threads


@task(name="reward_eval", cache_policy=NONE)
def reward_eval_task(ctx: RunContext, cfg: RewardEvalConfig, max_length: int, reward_model: ArtifactRef,
                     data: ArtifactRef, world: WorldConfig | None = None) -> ArtifactRef:
    """`world`: the built-in world's config when the run's pairs come from it (needed for world_pairs)."""
    set_threads(cfg.resources.num_cpus)
    fresh_world = world if cfg.world_pairs and world is not None else None
    hh_digest = hashlib.sha256(Path(cfg.hh_rlhf).expanduser().read_bytes()).hexdigest() if cfg.hh_rlhf else None

    def body(out: Path, log):
        sets = {"heldout": read_snapshot(data.file("pairs_heldout.parquet"))}
        extra_metrics, extra_data = {}, {}
        if cfg.hh_rlhf:
            # rows whose dialogues do not split into a pair are counted, not dropped silently
            sets["hh_rlhf"], extra_metrics["hh_rlhf/skipped_rows"] = load_hh_pairs(cfg.hh_rlhf, cfg.hh_rlhf_limit)
            extra_data["hh_rlhf_pairs.parquet"] = write_snapshot(sets["hh_rlhf"], out / "hh_rlhf_pairs.parquet")
        if fresh_world is not None:
            sets["world_fresh"] = fresh_world_pairs(fresh_world, cfg.world_pairs)
            extra_data["world_fresh_pairs.parquet"] = write_snapshot(sets["world_fresh"], out / "world_fresh_pairs.parquet")
        result = rm_eval.run(cfg, reward_model.file("model"), sets, out, max_length=max_length)
        result.metrics |= extra_metrics
        result.data |= extra_data
        return result

    stage_cfg = {**cfg.model_dump(), "max_length": max_length, "hh_rlhf_sha256": hh_digest,
                 **({"world": fresh_world.model_dump(mode="json")} if fresh_world is not None else {})}
    return run_stage(ctx, "reward_eval", stage_cfg, {"reward_model": reward_model, "data": data}, body)


def fresh_world_pairs(w: WorldConfig, n: int) -> list[dict]:
    """n pairs on new prompts of the run's world (seed w.seed + 4; the data stage uses + 0 to + 3),
    labelled by gold (no annotator noise: what an RM should agree with), ties in gold skipped."""
    prompts = world_data.make_prompts(n, w.seed + 4, w.families)
    return [{"prompt": r["instruction"], "chosen": r["chosen"], "rejected": r["rejected"], "family": r["family"],
             "chosen_gold": r["chosen_gold"], "rejected_gold": r["rejected_gold"]}
            for r in world_data.make_preference_pairs(prompts, w.seed + 4, length_bias=0.0)]
