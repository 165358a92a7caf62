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


def test_dpo_on_generated_pairs_waits_for_the_reward_model_like_the_online_methods():
    from alignpipe.config import GeneratedPairsConfig, RLHFConfig
    from tasks.rlhf import needs_reward_model

    assert not needs_reward_model(RLHFConfig())  # DPO on the data stage's pairs trains beside the RM
    assert needs_reward_model(RLHFConfig(dpo_pairs="generated"))
    assert needs_reward_model(RLHFConfig(method="ppo")) and needs_reward_model(RLHFConfig(method="rsf"))
    assert needs_reward_model(RLHFConfig(method="ppo", dpo_pairs="generated"))
    annotated = RLHFConfig(dpo_pairs="generated", generated_pairs=GeneratedPairsConfig(labeller="annotator"))
    assert not needs_reward_model(annotated)  # the world's annotator labels: DPO trains beside the RM


def test_the_rlhf_fingerprint_holds_the_generated_pair_keys_only_where_they_are_used():
    from alignpipe.config import GeneratedPairsConfig, RLHFConfig
    from tasks.rlhf import stage_config

    calibration = {"reward_calibration", "calibration_buffer", "calibration_frac", "calibration_lam"}
    dataset = stage_config(RLHFConfig(), 96)
    assert set(dataset) == {"method", "beta", "optim", "resources", "max_length"}  # as before the option existed
    assert stage_config(RLHFConfig(generated_pairs=GeneratedPairsConfig(n=8), reward_calibration="lwr"), 96) == dataset
    generated = stage_config(RLHFConfig(dpo_pairs="generated", reward_calibration="lwr"), 96)
    assert set(generated) - set(dataset) == {"dpo_pairs", "generated_pairs", "reward_calibration", "calibration_frac",
                                             "calibration_lam"}
    assert generated != stage_config(RLHFConfig(dpo_pairs="generated", generated_pairs=GeneratedPairsConfig(n=8),
                                                reward_calibration="lwr"), 96)
    assert generated != stage_config(RLHFConfig(dpo_pairs="generated", reward_calibration="mean"), 96)
    annotated = RLHFConfig(dpo_pairs="generated", generated_pairs=GeneratedPairsConfig(labeller="annotator"))
    by_world = stage_config(annotated, 96, length_bias=0.3)
    assert set(by_world) - set(dataset) == {"dpo_pairs", "generated_pairs", "annotator_length_bias"}  # no RM settings
    assert by_world["annotator_length_bias"] == 0.3 and by_world != stage_config(annotated, 96, length_bias=0.0)
    assert stage_config(RLHFConfig(), 96, length_bias=0.3) == dataset  # the bias steers only the annotator's labels
    ppo = stage_config(RLHFConfig(method="ppo", dpo_pairs="generated"), 96)
    assert set(ppo) == {"method", "beta", "optim", "resources", "max_length", "ppo"} | calibration


def test_plain_sft_stage_identity_does_not_depend_on_irl_settings():
    """The plain SFT stage under an IRFT run (irl_init=sft) is the very stage a plain run trains: same config dump."""
    from alignpipe.config import SFTConfig

    plain = SFTConfig()
    under_irft = SFTConfig(method="irft", irl_init="sft").model_copy(update={"method": "sft"})
    dump = lambda c: c.model_dump(exclude={"irft", "rft", "irl_init"})  # noqa: E731 — what tasks/sft.py fingerprints
    assert dump(plain) == dump(under_irft)
