"""Fixtures for the RL loops: a tiny reward model (random head on the tiny Llama), saved like a real one."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_rm_dir(tiny_dir, tmp_path_factory) -> Path:
    from alignpipe.models import RewardModel, load_tokenizer

    out = tmp_path_factory.mktemp("tiny_rm") / "model"
    rm = RewardModel.from_pretrained_backbone(tiny_dir, device="cpu")
    rm.mean, rm.std = 0.1, 2.0
    rm.save(out)
    load_tokenizer(tiny_dir).save_pretrained(out)
    return out

