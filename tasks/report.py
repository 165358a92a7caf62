"""Stage `report`: the evaluation table (evaluation.parquet) and reward-vs-tax plots, also on the parent run."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.eval import summary
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, log_artifact, run_stage


@task(name="report", cache_policy=NONE)
def report_task(ctx: RunContext, models: dict[str, float | None], evaluations: list[ArtifactRef]) -> ArtifactRef:
    """`models` maps each evaluated model's name to its α (None outside the averaging family), in the order of `evaluations`."""

    def body(out: Path, log):
        entries = [{"model": name, "alpha": alpha, "path": ev.path, **ev.manifest()["metrics"]}
                   for (name, alpha), ev in zip(models.items(), evaluations, strict=True)]
        return summary.run(entries, out)

    ref = run_stage(ctx, "report", {"models": models}, {n: e for n, e in zip(models, evaluations, strict=True)}, body)
    for name in ("evaluation.parquet", "reward_vs_tax.png", "rm_reward_vs_tax.png"):
        log_artifact(ctx, ref.file(name))
    return ref
