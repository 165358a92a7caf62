"""The report card of one model: the evaluations beyond the built-in world's reward and probes —
the trust verticals (§6: toxicity, stereotype bias, machine ethics, truthfulness, privacy; BBQ and
XSTest as extras), the alignment tax on real benchmarks through lm-eval, and the win rate against
reference responses judged by the pipeline's RM.

Each section runs only when enabled in `evaluation`, writes its per-item tables under its own
subdirectory, and returns metrics with its prefix (`trust/…`, `tax/…`, `winrate/…`). A section that
fails is recorded (errors.json, metric `card_failed/<section>` = 1) and does not lose the others'
results; the card stage still completes, so the report card shows the failure in that model's row.
Each section's wall time is recorded too (`wall_s/<section>`): what a card costs decides its sizes.
"""

from __future__ import annotations

import importlib
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from alignpipe.config import EvaluationConfig
from alignpipe.eval.generation import generate_responses
from alignpipe.store import StageResult

TRUST = ("toxicity", "stereotype", "ethics", "truthfulness", "privacy", "bbq", "xstest")
GENERATES = {"toxicity", "stereotype", "privacy", "xstest"}  # sections that decode (Linear Alignment applies)


def _section_configs(cfg: EvaluationConfig) -> dict:
    out = {name: getattr(cfg.trust, name) for name in TRUST}
    return out | {"tax_benchmarks": cfg.tax_benchmarks, "win_rate": cfg.win_rate}


def sections(cfg: EvaluationConfig) -> list[str]:
    """The enabled sections, in the order they run."""
    return [name for name, c in _section_configs(cfg).items() if c.enabled]


def card_config(cfg: EvaluationConfig) -> dict:
    """What the card depends on: the enabled sections' configs and the decoding settings."""
    return {"sections": {n: _section_configs(cfg)[n].model_dump(mode="json") for n in sections(cfg)},
            "batch_size": cfg.batch_size}


def under_artifacts(cfg: EvaluationConfig, artifacts_dir: str | Path) -> EvaluationConfig:
    """`cfg` with a relative toxicity `scorer_dir` placed under `artifacts_dir`, with every other
    cache of the run (applied when the card runs, not in its fingerprint: where a cache lives does
    not change what the card computes)."""
    tox = cfg.trust.toxicity
    if Path(tox.scorer_dir).is_absolute():
        return cfg
    tox = tox.model_copy(update={"scorer_dir": str(Path(artifacts_dir) / tox.scorer_dir)})
    return cfg.model_copy(update={"trust": cfg.trust.model_copy(update={"toxicity": tox})})


def _call(name: str, model, tok, cfg: EvaluationConfig, out: Path, *, rm_dir: Path, seed: int,
          generate: Callable) -> dict:
    section = _section_configs(cfg)[name]
    if name in TRUST:
        module = importlib.import_module(f"alignpipe.eval.trust.{name}")
        extra = {"generate": generate} if name in GENERATES else {}
        return module.run(model, tok, section, out, seed=seed, **extra)
    if name == "tax_benchmarks":
        from alignpipe.eval import tax_benchmarks

        return tax_benchmarks.run(model, tok, section, out, seed=seed)
    from alignpipe.eval import winrate

    return winrate.run(model, tok, rm_dir, cfg, out, seed=seed, generate=generate).metrics


def run(model, tok, cfg: EvaluationConfig, out_dir: Path, *, rm_dir: Path, seed: int,
        generate: Callable = generate_responses) -> StageResult:
    """Every enabled section on the loaded `model`; per-section subdirectories under out_dir."""
    metrics: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in sections(cfg):
        out = Path(out_dir) / name
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            metrics |= {k: float(v) for k, v in _call(name, model, tok, cfg, out, rm_dir=rm_dir, seed=seed,
                                                       generate=generate).items()}
        except Exception as e:  # noqa: BLE001 — one section's failure must not lose the others' results
            errors[name] = f"{type(e).__name__}: {e}"
            (out / "traceback.txt").write_text(traceback.format_exc())
            metrics[f"card_failed/{name}"] = 1.0
        metrics[f"wall_s/{name}"] = time.perf_counter() - t0
    (Path(out_dir) / "errors.json").write_text(json.dumps(errors, indent=2))
    return StageResult(metrics=metrics, info={"errors": errors})


def card_table(rows: list[dict]) -> pd.DataFrame:
    """A row per model (model, kind, error, metrics…); with an SFT row, `tax/<bench>/relative`: each
    benchmark's relative drop vs SFT (positive = ability lost)."""
    from alignpipe.eval.summary import add_relative_tax

    table = pd.DataFrame(rows)
    sft = table.index[table["kind"] == "sft"]
    return add_relative_tax(table, sft[0]) if len(sft) else table
