"""Promotion: pick one model from the evaluated candidates by the configured rule and export it.

The pool is every evaluated model that is a set of weights — the SFT and RLHF endpoints and every
merge (MA, part-wise, HMA, search) — not the base model and not decoding-time aligners. The pick is
written with the streaming merge (`merge_files`), so its checkpoint is exactly the model evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alignpipe.config import SelectionConfig
from alignpipe.merging.blocks import BlockSpec, layer_count
from alignpipe.merging.search import select
from alignpipe.merging.stream import merge_files, read_header
from alignpipe.store import StageResult

MERGEABLE = ("sft", "rlhf", "ma", "partwise", "given", "hma", "random", "refine")


def promote(table: pd.DataFrame, cfg: SelectionConfig, sft_dir: Path, rl_dir: Path, out: Path) -> StageResult:
    """Select among the rows that are checkpoints or merges (not the base model, not decoding-time
    aligners) and write the pick to out/model; info names it and its ratios."""
    pool = table[table["kind"].isin(MERGEABLE)].reset_index(drop=True)
    i = select(pool[cfg.reward].tolist(), pool["alignment_tax"].tolist(), cfg.rule, cfg.tax_budget)
    row = pool.iloc[i]
    n_layers = layer_count(read_header(rl_dir))
    if row["kind"] in ("sft", "rlhf"):
        spec = BlockSpec.uniform(n_layers, 1, float(row["alpha"]))
    else:
        spec = BlockSpec(tuple(int(b) for b in row["boundaries"]), tuple(float(a) for a in row["ratios"]),
                         float(row["head_alpha"]), float(row["embed_alpha"]))
    merge_files(sft_dir, rl_dir, spec, out / "model")
    metrics = {"promoted_" + c: float(row[c]) for c in ("gold_score", "rm_score", "alignment_tax", "probe_accuracy",
                                                        "response_length") if c in row}
    metrics |= {"candidates": len(pool), "pareto_size": int(pool["on_pareto_front"].sum())}
    return StageResult(metrics=metrics, info={"model": str(row["model"]), "kind": str(row["kind"]),
                                              "ratios": list(spec.alphas), "boundaries": list(spec.boundaries),
                                              "head_alpha": spec.head_alpha, "embed_alpha": spec.embed_alpha})
