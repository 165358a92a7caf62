"""Stages `card_<model>` and `report_card`: the report-card evaluations of one model (trust verticals,
tax benchmarks through lm-eval, win rate against reference responses) — a task per model — and every
model's card in one table with the trust deltas, as Parquet/CSV, PNG and an HTML page on the parent run.
"""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import EvaluationConfig, LinearAlignmentConfig
from alignpipe.eval import card
from alignpipe.eval.report_card import write_card
from alignpipe.store import ArtifactRef, StageResult
from alignpipe.tracking import RunContext, log_artifact, run_stage
from alignpipe.training.optim import set_threads
from tasks.evaluate import load_evaluated


@task(name="card", cache_policy=NONE)
def card_task(ctx: RunContext, cfg: EvaluationConfig, name: str, model: ArtifactRef,
              reward_model: ArtifactRef, merge: tuple[ArtifactRef, dict] | None = None,
              aligner: LinearAlignmentConfig | None = None) -> ArtifactRef:
    """The card of `model` (a checkpoint; with `merge`, a candidate merged in memory; with `aligner`,
    decoded by Linear Alignment), as the `evaluate` stage loads it."""
    set_threads(cfg.resources.num_cpus)
    inputs = {"model": model, "reward_model": reward_model} | ({"sft": merge[0]} if merge else {})

    def body(out: Path, log):
        policy, tok, generate = load_evaluated(model, merge, aligner)
        return card.run(policy, tok, card.under_artifacts(cfg, ctx.artifacts_dir), out, rm_dir=reward_model.file("model"),
                        seed=ctx.seed, generate=generate)

    stage_cfg = {**card.card_config(cfg), "model": name, "merge": merge[1] if merge else None,
                 "aligner": aligner.model_dump(exclude={"enabled"}) if aligner else None}
    return run_stage(ctx, f"card_{name}", stage_cfg, inputs, body)


@task(name="report_card", cache_policy=NONE)
def report_card_task(ctx: RunContext, kinds: dict[str, str], cards: dict[str, ArtifactRef | str]) -> ArtifactRef:
    """`cards` maps each model to its card stage, or to the error it failed with (kept as a row)."""
    done = {n: c for n, c in cards.items() if not isinstance(c, str)}

    def body(out: Path, log):
        rows = [{"model": n, "kind": kinds[n], "error": c if isinstance(c, str) else "",
                 **({} if isinstance(c, str) else c.manifest()["metrics"])} for n, c in cards.items()]
        table = card.card_table(rows)
        write_card(table, out)
        return StageResult(metrics={f"{r['model']}/{k}": float(v) for r in table.to_dict("records")
                                    for k, v in r.items() if isinstance(v, float)})

    errors = {n: c for n, c in cards.items() if isinstance(c, str)}
    ref = run_stage(ctx, "report_card", {"models": kinds, "errors": errors}, done, body)
    for name in ("report_card.html", "report_card.csv", "trust_deltas.png"):
        log_artifact(ctx, ref.file(name))
    return ref
