"""Stage `evaluate`: one model's RM score, gold score and knowledge-probe accuracy (a task per model)."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import EvaluationConfig
from alignpipe.data.snapshot import read_snapshot
from alignpipe.eval import evaluate
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, run_stage
from alignpipe.training.optim import set_threads
from tasks.averaging import averaged_model_dir


@task(name="evaluate", cache_policy=NONE)
def evaluate_task(ctx: RunContext, cfg: EvaluationConfig, max_length: int, name: str, model: ArtifactRef,
                  alpha: float | None, reward_model: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    """Evaluate `model`'s checkpoint, or with `alpha` the averaging stage's checkpoint for that α."""
    set_threads(cfg.resources.num_cpus)
    model_dir = averaged_model_dir(model, alpha) if alpha is not None else model.file("model")

    def body(out: Path, log):
        prompts, probes = read_snapshot(data.file("eval_prompts.parquet")), read_snapshot(data.file("probes.parquet"))
        return evaluate.run(model_dir, reward_model.file("model"), prompts, probes, cfg, out,
                            max_length=max_length, seed=ctx.seed)

    stage_cfg = {**cfg.model_dump(), "max_length": max_length, "model": name, "alpha": alpha}
    return run_stage(ctx, f"evaluate_{name}", stage_cfg, {"model": model, "reward_model": reward_model, "data": data}, body)
