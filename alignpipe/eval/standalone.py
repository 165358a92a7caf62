"""`alignpipe evaluate`: the pipeline's evaluations on any list of checkpoints, without Prefect or Ray.

Plain library calls, one model after another, with the `evaluation` section of the config; the prompts
and knowledge probes are built from its `data` section exactly as the data stage builds them. MLflow (a
parent run "evaluate", a child run per model) only when tracking is configured (`tracking.uri` or
MLFLOW_TRACKING_URI). Writes comparison.parquet and comparison.csv, a row per model; a model that fails
to evaluate is a row with its error, and the other models are still evaluated.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from alignpipe.config import PipelineConfig
from alignpipe.data.prepare import build_datasets
from alignpipe.eval import card, evaluate, winrate
from alignpipe.models import ModelNotFoundError, load_policy, resolve_model
from alignpipe.models.reward import HEAD_FILE, STATS_FILE
from alignpipe.store import StageResult
from alignpipe.tracking import end_pipeline_run, log_artifact, record_run, start_pipeline_run
from alignpipe.training.optim import set_threads

Evaluation = Callable[[object, object, Path], StageResult]  # (model, tokenizer, out_dir) -> result


def evaluations(config: PipelineConfig, rm_dir: Path) -> dict[str, Evaluation]:
    """The evaluations every model gets, by name, in order; one entry each (add the next evaluation here).

    Builds the datasets and reads the win-rate references once, so a bad data file fails here (DataError
    naming the file and row) before any model is loaded.
    """
    ev, seed, max_length = config.evaluation, config.seed, config.model.max_length
    data = build_datasets(config.data, seed)
    out: dict[str, Evaluation] = {
        "evaluate": lambda m, t, d: evaluate.run(m, t, rm_dir, data["eval_prompts"], data["probes"], ev, d,
                                                 max_length=max_length, seed=seed),
    }
    if ev.win_rate.enabled:  # a bad reference file fails here, before any model is loaded
        winrate.load_references(ev.win_rate.reference, ev.win_rate.n)
    if card.sections(ev):  # trust verticals, tax benchmarks, win rate: the pipeline's report card
        cfg = card.under_artifacts(ev, config.artifacts_dir)
        out["card"] = lambda m, t, d: card.run(m, t, cfg, d, rm_dir=rm_dir, seed=seed)
    return out


def check_reward_model(rm_dir: str | Path) -> Path:
    """`rm_dir` if it holds a reward model (a reward_model stage's `model` directory), else ModelNotFoundError."""
    p = Path(rm_dir).expanduser()
    missing = [f for f in ("config.json", HEAD_FILE, STATS_FILE) if not (p / f).is_file()]
    if missing:
        raise ModelNotFoundError(f"reward model {p}: no {', '.join(missing)} (expected a reward_model stage's model directory)")
    return p


def evaluate_model(name: str, runs: dict[str, Evaluation], out_dir: Path, models_cache: Path) -> dict:
    """One table row: {model, error, wall_time_s/<evaluation>..., metrics...}. Errors are caught and recorded
    (as `Type: first line`), keeping the metrics of the evaluations that finished before."""
    row: dict = {"model": name, "error": None}
    try:
        policy, tok = load_policy(resolve_model(name, models_cache))
        for ev_name, run in runs.items():
            t0 = time.time()
            (out_dir / ev_name).mkdir(parents=True, exist_ok=True)
            row |= run(policy, tok, out_dir / ev_name).metrics
            row[f"wall_time_s/{ev_name}"] = time.time() - t0
    except Exception as e:  # one model's failure must not lose the others' rows
        first = str(e).strip().splitlines()
        row["error"] = f"{type(e).__name__}: {first[0] if first else ''}"
    return row


def evaluate_models(models: list[str], rm_dir: str | Path, config: PipelineConfig, out_dir: str | Path,
                    *, config_text: str = "") -> list[dict]:
    """Evaluate each of `models` (checkpoint directories or built-in names) with `config`; write
    out_dir/comparison.{parquet,csv} and each model's files under out_dir/<i>-<name>/; return the rows."""
    rm_dir, out_dir = check_reward_model(rm_dir), Path(out_dir)
    runs = evaluations(config, rm_dir)
    set_threads(config.evaluation.resources.num_cpus)  # as the evaluate task does
    ctx = _start_tracking(config, config_text)
    rows = []
    for i, name in enumerate(models):
        model_out = out_dir / f"{i}-{_slug(name)}"
        row = evaluate_model(name, runs, model_out, Path(config.artifacts_dir) / "models")
        rows.append(row)
        if ctx is not None:
            metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            record_run(ctx, f"evaluate_{_slug(name)}", {"model": name, "reward_model": str(rm_dir)}, metrics,
                       model_out, row["error"])
    table = write_table(rows, out_dir / "comparison")
    if ctx is not None:
        log_artifact(ctx, table.with_suffix(".csv"))
        end_pipeline_run(ctx, ok=all(r["error"] is None for r in rows))
    return rows


def write_table(rows: list[dict], stem: Path) -> Path:
    """Rows -> stem.parquet and stem.csv, one column per key any row has (missing cells empty); returns the .parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(k for r in rows for k in r))
    full = [{c: r.get(c) for c in columns} for r in rows]
    stem.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(full), stem.with_suffix(".parquet"))
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(full)
    return stem.with_suffix(".parquet")


def format_table(rows: list[dict]) -> str:
    """The comparison as text: a line per model (index, name, error), then a metric per line, a column per model."""
    lines = [f"[{i}] {r['model']}" + (f"  FAILED: {r['error']}" if r["error"] else "") for i, r in enumerate(rows)]
    metrics = list(dict.fromkeys(k for r in rows for k in r if k not in ("model", "error")))
    width = max((len(m) for m in metrics), default=6)
    lines.append(f"{'metric':<{width}}" + "".join(f"{f'[{i}]':>12}" for i in range(len(rows))))
    for m in metrics:
        cells = [r.get(m) for r in rows]
        lines.append(f"{m:<{width}}" + "".join(f"{c:>12.4g}" if isinstance(c, (int, float)) else f"{'-':>12}" for c in cells))
    return "\n".join(lines)


def _slug(name: str) -> str:
    """A short file-name-safe label for a model path: its last two path parts."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(Path(name).parts[-2:])).strip("_") or "model"


def _start_tracking(config: PipelineConfig, config_text: str):
    """The parent MLflow run "evaluate" when tracking is configured, else None."""
    if not (config.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return None
    return start_pipeline_run(config, config_text, "evaluate", config.tracking.experiment, config.tracking.uri,
                              config.artifacts_dir, config.seed, kind="evaluate")
