"""Promotion: the rule picks among weights only (never the base model or a decoding-time aligner),
and the exported checkpoint is exactly the merge that was evaluated."""

import math

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from alignpipe.config import SelectionConfig
from alignpipe.merging.blocks import BlockSpec, merge_blocks
from alignpipe.merging.promote import promote


@pytest.fixture(scope="module")
def pair(tiny_dir, tiny_rl_dir):
    return tiny_dir, tiny_rl_dir


def _table() -> pd.DataFrame:
    nan = math.nan
    return pd.DataFrame({
        "model": ["base", "sft", "dpo", "ma-0.5", "partwise-b1-0.5", "linear_alignment"],
        "kind": ["base", "sft", "rlhf", "ma", "partwise", "linear_alignment"],
        "alpha": [nan, 1.0, 0.0, 0.5, 0.25, nan],
        "boundaries": [None, None, None, [0, 1, 2], [0, 1, 2], None],
        "ratios": [None, None, None, [0.5, 0.5], [0.0, 0.5], None],
        "head_alpha": [nan, nan, nan, 0.5, 0.0, nan],
        "embed_alpha": [nan, nan, nan, 0.5, 0.0, nan],
        "gold_score": [0.99, 0.50, 0.70, 0.66, 0.68, 0.95],
        "rm_score": [0.0] * 6,
        "alignment_tax": [0.0, 0.0, 0.05, 0.01, 0.02, 0.0],
        "probe_accuracy": [0.8] * 6,
        "on_pareto_front": [True, False, True, True, True, True],
    })


def test_the_rule_picks_a_merge_and_exports_exactly_it(pair, tmp_path):
    result = promote(_table(), SelectionConfig(rule="max_reward", tax_budget=0.02), *pair, tmp_path)
    # base (0.99) and linear_alignment (0.95) are not weights one can promote
    assert result.info["model"] == "partwise-b1-0.5" and result.info["ratios"] == [0.0, 0.5]
    assert result.metrics["promoted_gold_score"] == 0.68 and result.metrics["candidates"] == 4
    expected = merge_blocks(load_file(pair[0] / "model.safetensors"), load_file(pair[1] / "model.safetensors"),
                            BlockSpec((0, 1, 2), (0.0, 0.5), 0.0, 0.0))
    got = load_file(tmp_path / "model" / "model.safetensors")
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)


def test_an_endpoint_can_win(pair, tmp_path):
    result = promote(_table(), SelectionConfig(rule="max_reward", tax_budget=0.0), *pair, tmp_path)
    assert result.info["model"] == "sft"
    got, sft = load_file(tmp_path / "model" / "model.safetensors"), load_file(pair[0] / "model.safetensors")
    assert all(torch.equal(got[k], sft[k]) for k in sft)


def test_no_candidate_within_the_budget_is_refused_by_name(pair, tmp_path):
    table = _table()
    table.loc[table["kind"] != "base", "alignment_tax"] = 0.3
    with pytest.raises(ValueError, match="tax_budget"):
        promote(table, SelectionConfig(tax_budget=0.01), *pair, tmp_path)
    assert not (tmp_path / "model").exists()
