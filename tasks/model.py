"""Stage `model`: resolve the starting model (built-in, hub id or local dir) into the stage store."""

import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import ModelConfig
from alignpipe.models import resolve_model
from alignpipe.store import ArtifactRef, StageResult, directory_digest
from alignpipe.tracking import RunContext, run_stage


@task(name="model", cache_policy=NONE)
def model_task(ctx: RunContext, cfg: ModelConfig) -> ArtifactRef:
    source = resolve_model(cfg.name, Path(ctx.artifacts_dir) / "models")
    digest = directory_digest(source)

    def body(out: Path, log) -> StageResult:
        (out / "model").mkdir()
        for f in source.iterdir():  # hard links: no copy of the weights when on the same filesystem
            try:
                os.link(f, out / "model" / f.name)
            except OSError:
                (out / "model" / f.name).write_bytes(f.read_bytes())
        return StageResult(metrics={"checkpoint_mb": sum(f.stat().st_size for f in source.iterdir()) / 2**20},
                           data={"model": digest})

    return run_stage(ctx, "model", {**cfg.model_dump(), "source": str(source), "digest": digest}, {}, body)
