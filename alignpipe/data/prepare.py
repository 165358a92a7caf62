"""The data stage: every dataset a pipeline run needs, snapshotted to Parquet with content hashes.

Files written (each hashed and recorded): sft.parquet {prompt, response}; pairs_train.parquet and
pairs_heldout.parquet {prompt, chosen, rejected[, family, spec, chosen_gold, rejected_gold, length_biased]};
eval_prompts.parquet {id, family, prompt, spec, seen_in_training}; probes.parquet {id, family, question, options, answer}.
The built-in world draws SFT, pair and evaluation prompts from different seeds and prefers
evaluation prompts whose text does not appear in training, so gold scores measure generalisation.
"""

from __future__ import annotations

import random
from pathlib import Path

from alignpipe.config import DataConfig
from alignpipe.data import world
from alignpipe.data.hh_rlhf import load_hh_pairs
from alignpipe.data.snapshot import write_snapshot
from alignpipe.data.sources import PAIR_FIELDS, SFT_FIELDS, load_rows
from alignpipe.store import StageResult

FILES = ("sft", "pairs_train", "pairs_heldout", "eval_prompts", "probes")


def build_datasets(cfg: DataConfig, seed: int) -> dict[str, list[dict]]:
    """All datasets, in memory, validated (external rows raise DataError naming file/row/field)."""
    w = cfg.world
    sft_prompts = world.make_prompts(w.n_sft, w.seed, w.families)
    pair_prompts = world.make_prompts(w.n_pairs, w.seed + 1, w.families)
    sft = _external(cfg.sft, SFT_FIELDS) or [
        {"prompt": r["instruction"], "response": r["response"]} for r in world.make_demonstrations(sft_prompts, w.seed, w.demo_habit)
    ]
    pairs = _external(cfg.preferences, PAIR_FIELDS) or [
        {"prompt": r["instruction"], "chosen": r["chosen"], "rejected": r["rejected"], "family": r["family"],
         "spec": r["spec"], "chosen_gold": r["chosen_gold"], "rejected_gold": r["rejected_gold"], "length_biased": r["length_biased"]}
        for r in world.make_preference_pairs(pair_prompts, w.seed + 1, w.length_bias)
    ]
    train, heldout = split_pairs(pairs, cfg.heldout_fraction, seed)
    seen = {r["prompt"] for r in sft} | {r["prompt"] for r in pairs}
    external = _external(cfg.eval_prompts, ("prompt",))
    if external is not None:  # no gold checker for these: family "external", gold_score NaN
        eval_prompts = [{"id": f"external-{i}", "family": "external", "prompt": r["prompt"], "spec": "",
                         "seen_in_training": r["prompt"] in seen} for i, r in enumerate(external)]
    else:
        eval_prompts = balanced_eval_prompts(world.make_prompts(8 * w.n_eval_prompts, w.seed + 2, w.families), seen,
                                             w.n_eval_prompts)
    probes = world.make_probes(w.n_probes, w.seed + 3, w.probe_families)
    return {"sft": sft, "pairs_train": train, "pairs_heldout": heldout, "eval_prompts": eval_prompts, "probes": probes}


def balanced_eval_prompts(candidates: list[dict], seen: set[str], n: int) -> list[dict]:
    """n distinct prompts, families round-robin, unseen-in-training ones first within each family.

    A family with few possible instructions (lowercase: one per topic) may have none left unseen;
    it is still evaluated, and `seen_in_training` marks those rows so gold can be split by it.
    """
    by_family: dict[str, list[dict]] = {}
    for p in candidates:
        rows = by_family.setdefault(p["family"], [])
        if all(p["instruction"] != r["instruction"] for r in rows):
            rows.append(p)
    for rows in by_family.values():
        rows.sort(key=lambda p: p["instruction"] in seen)  # stable: keeps the seeded order otherwise
    out = []
    for rank in range(max(map(len, by_family.values()), default=0)):
        out += [rows[rank] for rows in by_family.values() if rank < len(rows)]
    return [{"id": p["id"], "family": p["family"], "prompt": p["instruction"], "spec": p["spec"],
             "seen_in_training": p["instruction"] in seen} for p in out[:n]]


def _external(source, fields: tuple[str, ...]) -> list[dict] | None:
    """Rows with `fields` from an external source; HH-RLHF dialogues give pairs, their chosen side SFT
    demonstrations, their histories prompts (rows forming no pair are skipped, see data.hh_rlhf)."""
    if source is None:
        return None
    if source.format == "columns":
        return load_rows(source.path, fields, source.columns, source.split, source.limit)
    pairs, _ = load_hh_pairs(source.path, source.limit)
    as_fields = {"prompt": "prompt", "response": "chosen", "chosen": "chosen", "rejected": "rejected"}
    return [{f: r[as_fields[f]] for f in fields} for r in pairs]


def split_pairs(pairs: list[dict], heldout_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Seeded shuffle, then the last `heldout_fraction` (at least one pair) is held out."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(heldout_fraction * len(pairs)))
    if n_held >= len(pairs):
        raise ValueError(f"need at least 2 preference pairs to hold some out, got {len(pairs)}")
    return [pairs[i] for i in order[:-n_held]], [pairs[i] for i in order[-n_held:]]


def run(cfg: DataConfig, seed: int, out_dir: Path) -> StageResult:
    """Write every dataset to out_dir/<name>.parquet; return their content hashes and row counts."""
    datasets = build_datasets(cfg, seed)
    hashes = {f"{name}.parquet": write_snapshot(rows, out_dir / f"{name}.parquet") for name, rows in datasets.items()}
    return StageResult(metrics={f"rows_{name}": len(rows) for name, rows in datasets.items()}, data=hashes)
