"""Stage `averaging`: θ = α·θ_sft + (1−α)·θ_rlhf for each α on the grid (α = weight on SFT)."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import AveragingConfig
from alignpipe.merging.export import write_averaged_models
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage


@task(name="averaging", cache_policy=NONE)
def averaging_task(ctx: RunContext, cfg: AveragingConfig, sft: ArtifactRef, rlhf: ArtifactRef) -> ArtifactRef:
    def body(out: Path, log):
        return write_averaged_models(sft.file("model"), rlhf.file("model"), cfg.alphas, out)

    return run_stage(ctx, "averaging", cfg, {"sft": sft, "rlhf": rlhf}, body)


def averaged_model_dir(averaging: ArtifactRef, alpha: float) -> Path:
    """The merged checkpoint for `alpha` (the endpoints point at the SFT and RLHF checkpoints)."""
    return Path(averaging.path) / averaging.manifest()["info"]["models"][f"{alpha:.4g}"]
