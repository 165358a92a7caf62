"""What the bench scripts that drive whole pipeline runs share: run the CLI, read a stage's metrics
back from MLflow, log a result table as an MLflow run of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_pipeline(config: str, artifacts: Path, overrides: list[str]) -> dict:
    """`alignpipe run --config config artifacts_dir=artifacts overrides…` -> {parent_run_id, report}."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "alignpipe.cli", "run", "--config", config, f"artifacts_dir={artifacts}", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(overrides)}):\n{proc.stderr[-3000:]}")
    line = next(x for x in reversed(proc.stdout.splitlines() + proc.stderr.splitlines()) if "pipeline finished" in x)
    return {"parent_run_id": line.split("parent run ")[1].split(";")[0], "report": Path(line.rsplit(" in ", 1)[1])}


def client(config: str, overrides: list[str], artifacts: Path):
    """The MlflowClient of the tracking store the runs of `config` (+ overrides) write to."""
    from mlflow.tracking import MlflowClient

    from alignpipe.config import load_config
    from alignpipe.tracking import resolve_tracking_uri

    return MlflowClient(resolve_tracking_uri(load_config(config, overrides).tracking.uri, artifacts))


def _stage_run(mlflow, parent_run_id: str, stage: str):
    exp = mlflow.get_run(parent_run_id).info.experiment_id
    runs = mlflow.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`alignpipe.stage` = '{stage}'")
    return runs[0] if runs else None


def stage_metrics(mlflow, parent_run_id: str, stage: str) -> dict[str, float]:
    """The metrics of a pipeline run's child run for `stage` (a stage reused from the cache reports the
    metrics, wall time included, of the run that computed it); {} when the run has no such stage."""
    run = _stage_run(mlflow, parent_run_id, stage)
    return dict(run.data.metrics) if run else {}


def stage_params(mlflow, parent_run_id: str, stage: str) -> dict[str, str]:
    """The params (the stage's settings and input hashes) of a pipeline run's child run for `stage`; {} when none."""
    run = _stage_run(mlflow, parent_run_id, stage)
    return dict(run.data.params) if run else {}


def stage_dir(mlflow, parent_run_id: str, stage: str) -> Path:
    """The output directory of a pipeline run's `stage` (its child run's `alignpipe.output_dir` tag)."""
    run = _stage_run(mlflow, parent_run_id, stage)
    if run is None or "alignpipe.output_dir" not in run.data.tags:
        raise SystemExit(f"pipeline run {parent_run_id} has no stage {stage!r} with an output directory")
    return Path(run.data.tags["alignpipe.output_dir"])


def gold_per_prompt(mlflow, parent_run_id: str, model: str):
    """Per-prompt gold scores (a Series by prompt id) of model `model` in a pipeline run: its evaluate stage's responses."""
    import pandas as pd

    return pd.read_parquet(stage_dir(mlflow, parent_run_id, f"evaluate_{model}") / "responses.parquet").set_index("id").gold_score


def log_table(mlflow, experiment: str, name: str, table, params: dict[str, str], metric_columns: list[str],
              key: str) -> str:
    """Log `table` (a DataFrame) as a run `name`: params, metrics `<row[key]>/<column>`, name.csv / name.md."""
    exp = mlflow.get_experiment_by_name(experiment)
    rid = mlflow.create_run(exp.experiment_id, run_name=name, tags={"alignpipe.stage": name}).info.run_id
    for k, v in params.items():
        mlflow.log_param(rid, k, v)
    for _, r in table.iterrows():
        for col in metric_columns:
            mlflow.log_metric(rid, f"{r[key]}/{col}", float(r[col]))
    mlflow.log_text(rid, table.to_csv(index=False), f"{name}.csv")
    mlflow.log_text(rid, table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False),
                    f"{name}.md")
    mlflow.set_terminated(rid)
    return rid


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
