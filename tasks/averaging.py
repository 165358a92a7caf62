"""Stages of the ratio search (ALGORITHMS §4): `hma_learn` fits HMA's block ratios, the candidates are
evaluated by `evaluate` tasks (in-memory merges), and `promote` exports and registers the pick."""

import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import AveragingConfig
from alignpipe.data.snapshot import read_snapshot, write_snapshot
from alignpipe.eval.report import plot_reward_vs_tax
from alignpipe.merging import search
from alignpipe.merging.blocks import layer_count
from alignpipe.merging.promote import promote
from alignpipe.merging.stream import read_header
from alignpipe.store import ArtifactRef, StageResult
from alignpipe.tracking import RunContext, log_artifact, register_model, run_stage
from alignpipe.training import hma
from alignpipe.training.optim import set_threads


@task(name="hma_learn", cache_policy=NONE)
def hma_learn_task(ctx: RunContext, cfg: AveragingConfig, max_length: int, sft: ArtifactRef, rlhf: ArtifactRef,
                   reward_model: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    """Sample the RLHF model, keep its highest-reward responses, fit K block ratios at each α of hma.alphas."""
    set_threads(cfg.resources.num_cpus)

    def body(out: Path, log) -> StageResult:
        prompts = list(dict.fromkeys(r["prompt"] for r in read_snapshot(data.file("pairs_train.parquet"))))
        rows, rewards = hma.rlhf_samples(cfg.hma, rlhf.file("model"), reward_model.file("model"), prompts,
                                         max_length=max_length, seed=ctx.seed)
        scored = [r | {"reward": x} for r, x in zip(rows, rewards, strict=True)]
        picked = hma.select_top_samples(scored, rewards, cfg.hma.pool, cfg.hma.samples, ctx.seed)
        result = hma.run(cfg.hma, cfg.blocks, sft.file("model"), rlhf.file("model"), picked, out, log,
                         max_length=max_length, seed=ctx.seed)
        result.data["rlhf_samples.parquet"] = write_snapshot(scored, out / "rlhf_samples.parquet")
        result.metrics |= {"sample_reward_mean": sum(rewards) / len(rewards),
                           "picked_reward_mean": sum(r["reward"] for r in picked) / len(picked)}
        return result

    stage_cfg = {**cfg.hma.model_dump(), "blocks": cfg.blocks, "max_length": max_length}
    return run_stage(ctx, "hma_learn", stage_cfg, {"sft": sft, "rlhf": rlhf, "reward_model": reward_model, "data": data}, body)


def first_round(cfg: AveragingConfig, rlhf: ArtifactRef, learned: ArtifactRef | None, seed: int) -> list[search.Candidate]:
    """MA grid, part-wise MA, the given vectors, learned HMA and random slice samples, in that order."""
    n_layers = layer_count(read_header(rlhf.file("model")))
    k = cfg.blocks
    cands = search.ma_candidates(n_layers, k, cfg.alphas) + search.partwise_candidates(n_layers, k, cfg.partwise_alphas)
    cands += [search.Candidate("given-" + "-".join(f"{a:.3g}" for a in vec), "given", search.slice_spec(n_layers, vec, sum(vec) / k))
              for vec in cfg.vectors]
    if learned is not None:
        for key, fit in json.loads(learned.file("hma.json").read_text()).items():
            cands.append(search.Candidate(f"hma-{key}", "hma", search.slice_spec(n_layers, fit["alphas"], fit["alpha"])))
    return cands + search.random_candidates(n_layers, k, cfg.hma.alphas, cfg.random, seed)


@task(name="promote", cache_policy=NONE)
def promote_task(ctx: RunContext, cfg: AveragingConfig, report: ArtifactRef, sft: ArtifactRef, rlhf: ArtifactRef) -> ArtifactRef:
    """Pick a model by cfg.select among the evaluated checkpoints and merges, export it (streamed merge),
    draw the Pareto plot, and register it in the MLflow Model Registry under cfg.registry.alias."""

    def body(out: Path, log) -> StageResult:
        table = pd.read_parquet(report.file("evaluation.parquet"))
        result = promote(table, cfg.select, sft.file("model"), rlhf.file("model"), out)
        table["promoted"] = table["model"] == result.info["model"]
        table.to_parquet(out / "candidates.parquet", index=False)
        plot_reward_vs_tax(table, out / "pareto.png", reward_col=cfg.select.reward, chosen=result.info["model"])
        return result

    ref = run_stage(ctx, "promote", cfg.model_dump(include={"select", "registry"}), {"report": report, "sft": sft, "rlhf": rlhf}, body)
    for name in ("candidates.parquet", "pareto.png"):
        log_artifact(ctx, ref.file(name))
    if cfg.registry.enabled:
        info = ref.manifest()["info"]
        tags = {"alignpipe.candidate": info["model"], "alignpipe.kind": info["kind"], "alignpipe.ratios": str(info["ratios"]),
                "alignpipe.pipeline_run": ctx.parent_run_id}
        version = register_model(ctx, ref, "model", cfg.registry.name, cfg.registry.alias,
                                 log_checkpoint=cfg.registry.log_checkpoint, tags=tags)
        print(f"promoted {info['model']} -> model registry '{cfg.registry.name}' version {version} @{cfg.registry.alias}")
    return ref
