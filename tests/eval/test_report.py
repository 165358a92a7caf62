"""Tests for alignpipe.eval.report: the reward-vs-tax figure is written as a real PNG."""

import math

import pandas as pd
import pytest

from alignpipe.eval.report import plot_reward_vs_tax

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table() -> pd.DataFrame:
    nan = math.nan
    return pd.DataFrame({
        "model": ["base", "sft", "dpo", "avg-0.2", "avg-0.5", "avg-0.8", "ppo"],
        "alpha": [nan, nan, nan, 0.5, 0.2, 0.8, nan],  # unordered on purpose: the line sorts by alpha
        "gold_score": [0.10, 0.55, 0.80, 0.62, 0.70, 0.77, 0.75],
        "alignment_tax": [0.02, 0.0, 0.06, 0.01, 0.02, 0.04, 0.05],
    })


def test_plot_writes_png(tmp_path):
    out = plot_reward_vs_tax(_table(), tmp_path / "figs" / "reward_vs_tax.png")
    assert out == tmp_path / "figs" / "reward_vs_tax.png"
    data = out.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC


def test_plot_without_alpha_column_and_custom_columns(tmp_path):
    table = _table().drop(columns="alpha").rename(columns={"gold_score": "rm_score", "alignment_tax": "tax"})
    out = plot_reward_vs_tax(table, tmp_path / "p.png", reward_col="rm_score", tax_col="tax")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_endpoints_with_alpha(tmp_path):
    table = _table()
    table.loc[table["model"] == "sft", "alpha"] = 0.0
    table.loc[table["model"] == "dpo", "alpha"] = 1.0
    assert plot_reward_vs_tax(table, tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_names_missing_column(tmp_path):
    with pytest.raises(ValueError, match="alignment_tax"):
        plot_reward_vs_tax(_table().drop(columns="alignment_tax"), tmp_path / "p.png")
