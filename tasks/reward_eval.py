"""Stage `reward_eval`: the RM's accuracy, reward distribution and length bias, raw and calibrated,
on the held-out pairs of the run (and on real HH-RLHF pairs when configured)."""

import hashlib
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import RewardEvalConfig
from alignpipe.data.hh_rlhf import load_hh_pairs
from alignpipe.data.snapshot import read_snapshot, write_snapshot
from alignpipe.eval import reward_model as rm_eval
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage
from alignpipe.training.optim import set_threads


@task(name="reward_eval", cache_policy=NONE)
def reward_eval_task(ctx: RunContext, cfg: RewardEvalConfig, max_length: int, reward_model: ArtifactRef,
                     data: ArtifactRef) -> ArtifactRef:
    set_threads(cfg.resources.num_cpus)
    hh_digest = hashlib.sha256(Path(cfg.hh_rlhf).expanduser().read_bytes()).hexdigest() if cfg.hh_rlhf else None

    def body(out: Path, log):
        sets = {"heldout": read_snapshot(data.file("pairs_heldout.parquet"))}
        skipped = 0
        if cfg.hh_rlhf:
            sets["hh_rlhf"], skipped = load_hh_pairs(cfg.hh_rlhf, cfg.hh_rlhf_limit)
            hh_hash = write_snapshot(sets["hh_rlhf"], out / "hh_rlhf_pairs.parquet")
        result = rm_eval.run(cfg, reward_model.file("model"), sets, out, max_length=max_length)
        if cfg.hh_rlhf:
            result.metrics["hh_rlhf/skipped_rows"] = skipped  # rows whose dialogues do not split into a pair
            result.data["hh_rlhf_pairs.parquet"] = hh_hash
        return result

    stage_cfg = {**cfg.model_dump(), "max_length": max_length, "hh_rlhf_sha256": hh_digest}
    return run_stage(ctx, "reward_eval", stage_cfg, {"reward_model": reward_model, "data": data}, body)
