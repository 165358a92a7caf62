"""Stage `report`: the evaluation table (evaluation.parquet) and reward-vs-tax plots, also on the parent run."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.eval import summary
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, log_artifact, run_stage


@task(name="report", cache_policy=NONE)
def report_task(ctx: RunContext, models: dict[str, dict], evaluations: list[ArtifactRef]) -> ArtifactRef:
    """`models` maps each evaluated model's name, in the order of `evaluations`, to {kind, alpha, spec}:
    alpha its mean SFT weight (None outside the averaging family), spec its merge (None if not a merge)."""

    def body(out: Path, log):
        entries = []
        for (name, m), ev in zip(models.items(), evaluations, strict=True):
            spec = m.get("spec") or {}
            entries.append({"model": name, "kind": m["kind"], "alpha": m["alpha"], "path": ev.path,
                            "boundaries": spec.get("boundaries"), "ratios": spec.get("alphas"),
                            "head_alpha": spec.get("head_alpha"), "embed_alpha": spec.get("embed_alpha"),
                            **ev.manifest()["metrics"]})
        return summary.run(entries, out)

    ref = run_stage(ctx, "report", {"models": models}, {n: e for n, e in zip(models, evaluations, strict=True)}, body)
    for name in ("evaluation.parquet", "reward_vs_tax.png", "rm_reward_vs_tax.png"):
        log_artifact(ctx, ref.file(name))
    return ref
