"""Stage `data`: build and snapshot every dataset of the run (Parquet + content hashes)."""

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import DataConfig
from alignpipe.data import prepare
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage


@task(name="data", cache_policy=NONE)
def data_task(ctx: RunContext, cfg: DataConfig) -> ArtifactRef:
    # Fail before any training on a malformed row: build_datasets validates every external row.
    return run_stage(ctx, "data", cfg, {}, lambda out, log: prepare.run(cfg, ctx.seed, out))
