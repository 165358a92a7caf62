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

Pooling only makes sense if a method ran with the same settings in every table. So the params of each row's
stage (its training stage; evaluate_linear_alignment for LA) are compared across the tables, leaving out
what changes with the seed or machine (input and data hashes, resources). A method whose settings differ
(say, tables built before and after a change of its defaults) stops the script with the keys and values per
table; `--drop METHOD@DIR` leaves that method's row of one table out. Code changes that keep every setting
are not caught: the tables' git commits are printed when they differ.

Logged as run "method-comparison-pooled" in the first directory's tracking store (params: the tables'
directories and the config; metrics <method>/<column>; artifact .csv/.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare_methods import MODEL_ROW  # noqa: E402
from bench.pipeline_runs import client, gold_per_prompt, log_table, stage_params  # noqa: E402

# params that differ between replicates by design: stage inputs and data (hashes change with the seed), hardware
REPLICATE_PARAMS = ("input.", "data.", "output.", "resources.")


def setting_conflicts(settings: dict[str, dict[str, str]]) -> dict[str, dict[str, str | None]]:
    """settings: table -> the params of one method's stage in that table. -> {key: {table: value, None if the
    table's stage has no such param}} for every key outside REPLICATE_PARAMS whose value is not the same in all."""
    keys = sorted({k for params in settings.values() for k in params if not k.startswith(REPLICATE_PARAMS)})
    values = {k: {t: params.get(k) for t, params in settings.items()} for k in keys}
    return {k: v for k, v in values.items() if len(set(v.values())) > 1}


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
    ap.add_argument("--drop", action="append", default=[], metavar="METHOD@DIR",
                    help="leave METHOD's row of table DIR out of the pooling (repeatable)")
    a = ap.parse_args()

    import pandas as pd

    droppable = [m for m in MODEL_ROW if m not in ("base", "sft")]  # every table needs its sft row
    drop = set()
    for item in a.drop:
        method, sep, d = item.partition("@")
        if not sep or method not in droppable or Path(d) not in a.artifacts:
            raise SystemExit(f"--drop {item}: expected METHOD@DIR with METHOD one of {', '.join(droppable)} and DIR "
                             f"one of the tables given")
        drop.add((method, Path(d)))
    diffs: dict[str, list] = {}
    settings: dict[str, dict[str, dict[str, str]]] = {}  # method -> table -> its stage's params
    stores, commits = {}, {}
    for d in a.artifacts:
        path = d / "methods.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: no methods.csv (not a compare_methods --artifacts directory?)")
        table = pd.read_csv(path).set_index("method")
        stores[d] = mlflow = client(a.config, [], d)
        if "sft" not in table.index:
            raise SystemExit(f"{path}: no sft row, so no paired differences")
        commits[d] = mlflow.get_run(table.pipeline_run["sft"]).data.tags.get("alignpipe.git_sha", "?")
        sft = gold_per_prompt(mlflow, table.pipeline_run["sft"], "sft")
        for method, r in table.iterrows():
            if method == "base" or (method, d) in drop:
                continue
            if method not in MODEL_ROW:
                raise SystemExit(f"{path}: unknown method {method!r} (known: {', '.join(MODEL_ROW)})")
            settings.setdefault(method, {})[str(d)] = stage_params(mlflow, r.pipeline_run, r.stage)
            if method != "sft":
                diffs.setdefault(method, []).append((gold_per_prompt(mlflow, r.pipeline_run, MODEL_ROW[method]) - sft).dropna())
    conflicts = {m: c for m, per_table in settings.items() if (c := setting_conflicts(per_table))}
    if conflicts:
        lines = [f"  {m}: {k}: " + ", ".join(f"{t}={v if v is not None else '(absent)'}" for t, v in vals.items())
                 for m, c in conflicts.items() for k, vals in c.items()]
        raise SystemExit("these methods ran with different settings in different tables, so pooling them would mix "
                         "two methods:\n" + "\n".join(lines) + "\nrerun the odd tables or leave rows out with "
                         "--drop METHOD@DIR")
    if len(set(commits.values())) > 1:
        print("tables built by different commits (settings compared; code changes that keep them are not caught): "
              + ", ".join(f"{d}: {c[:7]}" for d, c in commits.items()))
    out = pd.DataFrame(pooled_gains(diffs))
    print(out.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    mlflow = stores[a.artifacts[0]]
    from alignpipe.config import load_config

    rid = log_table(mlflow, load_config(a.config).tracking.experiment, "method-comparison-pooled", out,
                    {"tables": " ".join(str(d) for d in a.artifacts), "config": a.config,
                     "dropped": " ".join(a.drop) or "-"},
                    ["gain", "se_prompts", "se_seed", "se", "z", "positive_tables"], key="method")
    print(f"MLflow run {rid} (method-comparison-pooled, in {a.artifacts[0]})")


if __name__ == "__main__":
    main()
