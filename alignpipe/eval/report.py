"""The report figure: reward against alignment tax across the weight-averaging family."""

from __future__ import annotations

import math
from pathlib import Path

# Endpoint and reference models get their own large markers; any other model a small grey dot.
_NAMED = {"sft": ("s", "tab:blue"), "dpo": ("D", "tab:red"), "base": ("^", "tab:gray")}


def _is_averaged(alpha) -> bool:
    """True for a row of the averaging family (a real, non-NaN alpha)."""
    try:
        return not math.isnan(float(alpha))
    except (TypeError, ValueError):
        return False


def plot_reward_vs_tax(table, out_path: Path, *, reward_col: str = "gold_score", tax_col: str = "alignment_tax") -> Path:
    """Scatter/line plot of reward (y) against alignment tax (x, accuracy drop as a fraction); returns out_path.

    `table` is a pandas DataFrame with columns `model`, reward_col, tax_col and optionally a
    float `alpha` (NaN for non-averaged models). Averaged rows are drawn as a line ordered by
    alpha, each point annotated "α=0.2"; "sft" and "dpo" (the endpoints) and "base" get distinct
    large labelled markers; other non-averaged models are small labelled dots. PNG (Agg backend).
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: workers have no display
    from matplotlib.figure import Figure

    missing = {"model", reward_col, tax_col} - set(table.columns)
    if missing:
        raise ValueError(f"plot_reward_vs_tax: table lacks column(s) {sorted(missing)}")
    alphas = table["alpha"] if "alpha" in table.columns else [float("nan")] * len(table)
    averaged = table[[_is_averaged(a) for a in alphas]]
    # Endpoints keep their markers even when the table also gives them an alpha (0 or 1).
    marked = table[[not _is_averaged(a) or str(m) in _NAMED for a, m in zip(alphas, table["model"], strict=True)]]

    fig = Figure(figsize=(7, 5))  # a bare Figure keeps pyplot's global state out of library code
    ax = fig.add_subplot()
    if len(averaged):
        _draw_family(ax, averaged.sort_values("alpha"), reward_col, tax_col)
    for _, row in marked.iterrows():
        marker, color = _NAMED.get(str(row["model"]), ("o", "black"))
        size = 120 if str(row["model"]) in _NAMED else 40
        ax.scatter(row[tax_col], row[reward_col], marker=marker, s=size, color=color, zorder=3, label=str(row["model"]))
        ax.annotate(str(row["model"]), (row[tax_col], row[reward_col]), textcoords="offset points", xytext=(6, -12))
    ax.set(title="Reward vs alignment tax", xlabel="alignment tax (drop in probe accuracy vs SFT)",
           ylabel=reward_col.replace("_", " "))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120, bbox_inches="tight")
    return out_path


def _draw_family(ax, family, reward_col: str, tax_col: str) -> None:
    """The averaged models as one line, in alpha order, each point annotated with its alpha."""
    ax.plot(family[tax_col], family[reward_col], "-o", color="tab:purple", markersize=5, zorder=2,
            label="weight average (α)")
    for _, row in family.iterrows():
        ax.annotate(f"α={float(row['alpha']):g}", (row[tax_col], row[reward_col]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
