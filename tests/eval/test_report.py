"""The reward-vs-tax figure: what is drawn (MA curve in α order, one marker set per kind, the Pareto
front, the promoted model) and that it is written as a real PNG."""

import math

import numpy as np
import pandas as pd
import pytest

from alignpipe.eval.report import plot_reward_vs_tax, reward_tax_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
nan = math.nan


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["base", "sft", "dpo", "ma-0.5", "ma-0.2", "ma-0.8", "hma-0.2", "partwise-b0-0.5", "random0", "linear_alignment"],
        "kind": ["base", "sft", "rlhf", "ma", "ma", "ma", "hma", "partwise", "random", "linear_alignment"],
        "alpha": [nan, 1.0, 0.0, 0.5, 0.2, 0.8, 0.2, 1 / 6, 0.2, nan],  # unordered on purpose: the curve sorts by α
        "gold_score": [0.10, 0.55, 0.80, 0.62, 0.70, 0.77, 0.79, 0.74, 0.60, 0.58],
        "alignment_tax": [0.02, 0.0, 0.06, 0.01, 0.02, 0.04, 0.01, 0.03, 0.05, 0.0],
    })


def _by_label(fig):
    ax = fig.axes[0]
    return {a.get_label(): a for a in [*ax.lines, *ax.collections]}


def test_the_ma_curve_runs_from_rlhf_to_sft_in_alpha_order():
    curve = _by_label(reward_tax_figure(_table()))["MA (α = weight on SFT)"]
    # α = 0 (dpo), 0.2, 0.5, 0.8, 1 (sft)
    assert list(curve.get_xdata()) == [0.06, 0.02, 0.01, 0.04, 0.0]
    assert list(curve.get_ydata()) == [0.80, 0.70, 0.62, 0.77, 0.55]


def test_each_kind_has_its_markers_and_the_front_and_pick_are_drawn():
    artists = _by_label(reward_tax_figure(_table(), chosen="hma-0.2"))
    assert {"base", "SFT", "RLHF", "HMA (learned)", "part-wise MA", "search: random", "linear_alignment",
            "Pareto front", "promoted: hma-0.2"} <= set(artists)
    assert np.allclose(artists["HMA (learned)"].get_offsets(), [[0.01, 0.79]])
    assert np.allclose(artists["promoted: hma-0.2"].get_offsets(), [[0.01, 0.79]])
    front = artists["Pareto front"]  # LA (0, 0.58) beats SFT (0, 0.55) at zero tax
    assert list(zip(front.get_xdata(), front.get_ydata(), strict=True)) == [(0.0, 0.58), (0.01, 0.79), (0.06, 0.80)]


def test_rows_without_a_reward_are_left_out_and_the_png_is_written(tmp_path):
    table = _table()
    table.loc[table["model"] == "random0", "gold_score"] = nan
    out = plot_reward_vs_tax(table, tmp_path / "figs" / "reward_vs_tax.png")
    assert out.read_bytes()[:8] == PNG_MAGIC and len(out.read_bytes()) > 1000
    assert "search: random" not in _by_label(reward_tax_figure(table))


def test_plot_names_missing_column(tmp_path):
    with pytest.raises(ValueError, match="alignment_tax"):
        plot_reward_vs_tax(_table().drop(columns="alignment_tax"), tmp_path / "p.png")
