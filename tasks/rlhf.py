"""Stage `rlhf`: preference alignment of the SFT policy (DPO; PPO and RSF arrive with issue #3)."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import RLHFConfig
from alignpipe.data.snapshot import read_snapshot
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage
from alignpipe.training import dpo
from alignpipe.training.optim import set_threads


@task(name="rlhf", cache_policy=NONE)
def rlhf_task(ctx: RunContext, cfg: RLHFConfig, max_length: int, sft: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    set_threads(cfg.resources.num_cpus)

    def body(out: Path, log):
        pairs = read_snapshot(data.file("pairs_train.parquet"))
        return dpo.run(cfg, sft.file("model"), pairs, out, log, max_length=max_length, seed=ctx.seed)

    return run_stage(ctx, f"rlhf_{cfg.method}", {**cfg.model_dump(), "max_length": max_length}, {"sft": sft, "data": data}, body)
