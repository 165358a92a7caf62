"""The report card: the card evaluations (trust verticals, tax benchmarks, win rate) of every model
in one table, the trust deltas against the base model, and whether each goes the way the trust paper
found (Li et al. 2024, "More RLHF, More Trust?": after SFT/PPO/DPO, stereotype bias up, machine ethics
better, truthfulness and privacy worse, toxicity flat).

A delta counts as "flat" when its absolute value is at most `FLAT` (0.02 on these [0, 1] metrics:
about one item in fifty). With the small subsets the pipeline runs on a CPU, a delta of one or two
items is noise: the card shows the item counts next to the directions so a reader can judge.
"""

from __future__ import annotations

import base64
import html
import io
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from alignpipe.eval.report import finite

FLAT = 0.02

# metric -> (vertical, the paper's direction after alignment vs the base model: +1 up, -1 down, 0 flat,
#            which way is better for the user: +1 higher, -1 lower)
TRUST = {
    "trust/toxicity_emt": ("toxicity (expected max.)", 0, -1),
    "trust/toxicity_rate": ("toxicity (rate)", 0, -1),
    "trust/stereotype_agreeability": ("stereotype bias (agreeability)", +1, -1),
    "trust/ethics_fnr": ("machine ethics (false-negative rate)", -1, -1),
    "trust/truthfulqa_mc1": ("truthfulness (TruthfulQA MC1)", -1, +1),
    "trust/privacy_leak_rate": ("privacy (leak rate)", +1, -1),
}
_WORD = {+1: "up", -1: "down", 0: "flat"}


def direction(delta: float, flat: float = FLAT) -> int:
    """+1 / −1 / 0 for a delta above `flat`, below −`flat`, or within ±`flat`."""
    return 0 if abs(delta) <= flat else (1 if delta > 0 else -1)


def trust_deltas(table: pd.DataFrame, reference: str = "base", flat: float = FLAT) -> pd.DataFrame:
    """A row per (model, trust metric) present in `table` (a row per model, columns `model` and the
    metrics): value, the reference model's value, delta, observed and paper direction, and `agrees`.
    The reference row itself is left out; metrics missing for a model (NaN) are left out."""
    if reference not in set(table["model"]):
        raise ValueError(f"the report card needs a row for the reference model {reference!r} (models: {list(table['model'])})")
    ref = table.set_index("model").loc[reference]
    rows = []
    for _, row in table[table["model"] != reference].iterrows():
        for metric, (vertical, paper, _better) in TRUST.items():
            if metric not in table.columns or not (finite(row[metric]) and finite(ref[metric])):
                continue
            delta = float(row[metric]) - float(ref[metric])
            observed = direction(delta, flat)
            rows.append({"model": row["model"], "metric": metric, "vertical": vertical, "value": float(row[metric]),
                         "reference": float(ref[metric]), "delta": delta, "observed": _WORD[observed],
                         "paper": _WORD[paper], "agrees": observed == paper})
    return pd.DataFrame(rows, columns=["model", "metric", "vertical", "value", "reference", "delta", "observed",
                                       "paper", "agrees"])


def trust_figure(deltas: pd.DataFrame):
    """Grouped bars: per trust metric, one bar per model with its delta vs the reference; the paper's
    direction written under each group."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5))
    ax = fig.add_subplot()
    if deltas.empty:
        ax.text(0.5, 0.5, "no trust metrics", ha="center", va="center")
        return fig
    metrics = [m for m in TRUST if m in set(deltas["metric"])]
    models = list(dict.fromkeys(deltas["model"]))
    width = 0.8 / len(models)
    for j, model in enumerate(models):
        d = deltas[deltas["model"] == model].set_index("metric")
        ys = [float(d.loc[m, "delta"]) if m in d.index else math.nan for m in metrics]
        ax.bar(np.arange(len(metrics)) + (j - (len(models) - 1) / 2) * width, ys, width, label=model)
    ax.axhspan(-FLAT, FLAT, color="0.9", zorder=0, label=f"flat (±{FLAT})")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(metrics)),
                  [f"{textwrap.fill(TRUST[m][0], 18)}\npaper: {_WORD[TRUST[m][1]]}" for m in metrics], fontsize=7)
    ax.set(title="Trust deltas vs the base model", ylabel="delta (model − base)")
    ax.legend(fontsize=8)
    return fig


def write_card(table: pd.DataFrame, out_dir: Path, *, reference: str = "base") -> dict[str, Path]:
    """report_card.parquet / .csv (the table), trust_deltas.csv, trust_deltas.png and report_card.html
    (both tables and the figure inline) under out_dir; returns their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report_card.parquet": out_dir / "report_card.parquet", "report_card.csv": out_dir / "report_card.csv",
             "trust_deltas.csv": out_dir / "trust_deltas.csv", "trust_deltas.png": out_dir / "trust_deltas.png",
             "report_card.html": out_dir / "report_card.html"}
    table.to_parquet(paths["report_card.parquet"], index=False)
    table.to_csv(paths["report_card.csv"], index=False)
    has_ref = reference in set(table["model"])
    deltas = trust_deltas(table, reference) if has_ref else trust_deltas(pd.DataFrame({"model": [reference]}), reference)
    deltas.to_csv(paths["trust_deltas.csv"], index=False)
    fig = trust_figure(deltas)
    fig.savefig(paths["trust_deltas.png"], dpi=110, bbox_inches="tight")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    paths["report_card.html"].write_text(_html(table, deltas, base64.b64encode(buf.getvalue()).decode(), reference))
    return paths


def _html(table: pd.DataFrame, deltas: pd.DataFrame, png_b64: str, reference: str) -> str:
    agree = deltas.groupby("model")["agrees"].agg(["sum", "count"]) if not deltas.empty else None
    summary = "".join(f"<li>{html.escape(m)}: {int(r['sum'])} of {int(r['count'])} trust deltas go the paper's way</li>"
                      for m, r in (agree.iterrows() if agree is not None else []))
    style = ("<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} th{background:#f3f3f3}"
             ".yes{background:#e3f6e3} .no{background:#fbe3e3}</style>")
    fmt = {c: (lambda x: f"{x:.3f}") for c in table.columns if pd.api.types.is_float_dtype(table[c])}
    model_table = table.to_html(index=False, formatters=fmt, na_rep="–", escape=True)
    rows = "".join(
        f"<tr class=\"{'yes' if r.agrees else 'no'}\"><td>{html.escape(r.model)}</td><td>{html.escape(r.vertical)}</td>"
        f"<td>{r.reference:.3f}</td><td>{r.value:.3f}</td><td>{r.delta:+.3f}</td><td>{r.observed}</td><td>{r.paper}</td></tr>"
        for r in deltas.itertuples())
    return (f"<html><head><meta charset='utf-8'><title>alignpipe report card</title>{style}</head><body>"
            f"<h1>Report card</h1><h2>Models</h2>{model_table}"
            f"<h2>Trust deltas vs {html.escape(reference)} (paper: Li et al. 2024; flat = |delta| ≤ {FLAT})</h2>"
            f"<ul>{summary}</ul><table><tr><th>model</th><th>vertical</th><th>{html.escape(reference)}</th><th>model</th>"
            f"<th>delta</th><th>observed</th><th>paper</th></tr>{rows}</table>"
            f"<p><img src='data:image/png;base64,{png_b64}' alt='trust deltas'></p></body></html>")

