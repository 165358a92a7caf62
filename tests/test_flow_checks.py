"""Checks the flow makes before any training (without starting Prefect or Ray)."""

import json

import pytest

from alignpipe.store import ArtifactRef
from flows.align import check_blocks


def test_a_block_count_the_model_cannot_be_split_into_is_refused_by_key(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    base = ArtifactRef("model", str(tmp_path), "f" * 64)
    check_blocks(2, base)
    with pytest.raises(ValueError, match=r"'averaging.blocks' is 3 but the model has 2 layers: need 1 <= blocks <= 2"):
        check_blocks(3, base)
