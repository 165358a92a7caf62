"""Stage `sft`: supervised fine-tuning on the demonstrations."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import SFTConfig
from alignpipe.data.snapshot import read_snapshot
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage
from alignpipe.training import sft
from alignpipe.training.optim import set_threads


@task(name="sft", cache_policy=NONE)
def sft_task(ctx: RunContext, cfg: SFTConfig, max_length: int, base: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    set_threads(cfg.resources.num_cpus)

    def body(out: Path, log):
        rows = read_snapshot(data.file("sft.parquet"))
        return sft.run(cfg, base.file("model"), rows, out, log, max_length=max_length, seed=ctx.seed)

    return run_stage(ctx, "sft", {**cfg.model_dump(), "max_length": max_length}, {"base": base, "data": data}, body)
