"""Several method-comparison tables (bench/compare_methods.py, one per `seed=`) read as one: each method's
gold gain over plain SFT, per table and pooled, printed and put in MLflow.

    .venv/bin/python bench/combine_tables.py /tmp/x400 /tmp/x400s1 /tmp/x400s2 [--config ...]

Each argument is the --artifacts directory of one compare_methods run (its methods.csv names the pipeline
runs; their evaluate stages hold the per-prompt gold scores). Each table is an independent replicate (the
pair split, SFT, the judge RM and every method's training change with `seed`), but all are scored on the
same eval prompts (the world has its own seed). So a prompt's differences from SFT are correlated across
the tables, and the tables' standard errors cannot be combined as if they were independent. Instead, per
method, over the prompts every table scored (alignpipe.eval.metrics.replicated_paired_gain):
gain (the mean over tables of the paired gold difference from that table's SFT), se_prompts (prompt-sampling
noise, its correlation across tables included), se_seed (training-seed noise, from a two-way prompt × table
analysis; rough with k = 2 or 3), se = √(se_prompts² + se_seed²) and z = gain / se.

Logged as run "method-comparison-pooled" in the first directory's tracking store (params: the tables'
directories and the config; metrics <method>/<column>; artifact .csv/.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare_methods import MODEL_ROW  # noqa: E402
from bench.pipeline_runs import client, gold_per_prompt, log_table  # noqa: E402


def pooled_gains(diffs: dict[str, list]) -> list[dict]:
    """diffs: method -> one per-prompt difference Series (by prompt id) per table. -> one row per method."""
    import pandas as pd

    from alignpipe.eval.metrics import replicated_paired_gain

    rows = []
    for method, per_table in diffs.items():
        joined = pd.concat(per_table, axis=1, join="inner")  # the prompts every table scored
        gains = joined.mean(axis=0)
        rows.append({"method": method, "tables": joined.shape[1], "prompts": len(joined),
                     **replicated_paired_gain(joined.to_numpy()), "positive_tables": int((gains > 0).sum()),
                     "per_table": " ".join(f"{g:+.3f}" for g in gains)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", type=Path, nargs="+", help="compare_methods --artifacts directories, one per table")
    ap.add_argument("--config", default="configs/pipeline/quickstart.yaml")
    a = ap.parse_args()

    import pandas as pd

    diffs: dict[str, list] = {}
    stores = {}
    for d in a.artifacts:
        path = d / "methods.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: no methods.csv (not a compare_methods --artifacts directory?)")
        table = pd.read_csv(path)
        stores[d] = mlflow = client(a.config, [], d)
        by_method = table.set_index("method").pipeline_run
        if "sft" not in by_method:
            raise SystemExit(f"{path}: no sft row, so no paired differences")
        sft = gold_per_prompt(mlflow, by_method["sft"], "sft")
        for method, run_id in by_method.items():
            if method in ("sft", "base"):
                continue
            if method not in MODEL_ROW:
                raise SystemExit(f"{path}: unknown method {method!r} (known: {', '.join(MODEL_ROW)})")
            diffs.setdefault(method, []).append((gold_per_prompt(mlflow, run_id, MODEL_ROW[method]) - sft).dropna())
    out = pd.DataFrame(pooled_gains(diffs))
    print(out.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    mlflow = stores[a.artifacts[0]]
    from alignpipe.config import load_config

    rid = log_table(mlflow, load_config(a.config).tracking.experiment, "method-comparison-pooled", out,
                    {"tables": " ".join(str(d) for d in a.artifacts), "config": a.config},
                    ["gain", "se_prompts", "se_seed", "se", "z", "positive_tables"], key="method")
    print(f"MLflow run {rid} (method-comparison-pooled, in {a.artifacts[0]})")


if __name__ == "__main__":
    main()
