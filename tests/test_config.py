import pytest
from pydantic import ValidationError

from alignpipe.config import ConfigError, PipelineConfig, load_config
from tests.conftest import REPO


def test_shipped_configs_load():
    quick = load_config(REPO / "configs/pipeline/quickstart.yaml")
    tiny = load_config(REPO / "configs/pipeline/tiny.yaml")
    assert quick.model.name == "smollm2-135m-instruct"
    assert tiny.model.name == "tiny"
    assert quick == PipelineConfig()  # the embedded default is the quickstart, key for key


def test_every_shipped_config_loads():
    paths = sorted((REPO / "configs").rglob("*.yaml"))
    assert len(paths) >= 3
    for p in paths:
        load_config(p)  # raises ConfigError naming the key on any drift


def test_overrides_are_parsed_as_yaml_and_nested():
    cfg = load_config(None, ["sft.optim.steps=7", "averaging.alphas=[0.5, 0, 1]", "data.world.length_bias=0.25"])
    assert cfg.sft.optim.steps == 7
    assert cfg.averaging.alphas == (0.0, 0.5, 1.0)  # sorted, deduplicated
    assert cfg.data.world.length_bias == 0.25


def test_partial_section_keeps_the_stage_defaults():
    cfg = load_config(None, ["reward_model.optim.lr=1e-5", "reward_eval.resources.num_gpus=1"])
    assert cfg.reward_model.optim.steps == 20 and cfg.reward_model.optim.lr == 1e-5  # not OptimConfig's 30
    assert cfg.reward_eval.resources.num_cpus == 2 and cfg.reward_eval.resources.num_gpus == 1


def test_config_is_frozen():
    cfg = PipelineConfig()
    with pytest.raises(ValidationError):
        cfg.seed = 3


def test_unknown_key_names_full_path_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("sft:\n  optim:\n    lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "unknown config key 'sft.optim.lrr'" in str(e.value)
    assert str(p) in str(e.value)


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'rlhf.betta'"):
        load_config(None, ["rlhf.betta=0.2"])


@pytest.mark.parametrize("override, key", [
    ("rlhf.beta=0", "rlhf.beta"),
    ("averaging.alphas=[0.2, 1.5]", "averaging.alphas"),
    ("data.world.length_bias=2", "data.world.length_bias"),
    ("rlhf.method=ppo2", "rlhf.method"),
    ("rlhf.rsf.keep=top", "rlhf.rsf.keep"),
    ("sft.rft.kl_coef=-0.1", "sft.rft.kl_coef"),
    ("sft.rft.policy_lr=0", "sft.rft.policy_lr"),
    ("sft.rft.sft_weight=-1", "sft.rft.sft_weight"),
    ("rlhf.dpo_nll_weight=-0.5", "rlhf.dpo_nll_weight"),
    ("data.world.families=[haiku]", "data.world.families"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"bad value for config key '{key}'"):
        load_config(None, [override])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(None, ["sft.optim.steps"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["seed=1", "seed.x=1"])


def test_averaging_vectors_must_match_the_block_count():
    assert load_config(None, ["averaging.vectors=[[0.1, 0.2, 0.3]]"]).averaging.vectors == ((0.1, 0.2, 0.3),)
    with pytest.raises(ConfigError, match=r"'averaging': Value error, vectors\[0\] = \[0.1, 0.2\] needs 3 ratios \(averaging.blocks\), each in \[0, 1\]$"):
        load_config(None, ["averaging.vectors=[[0.1, 0.2]]"])
    with pytest.raises(ConfigError, match="averaging.hma.alphas.*outside|every alpha must lie in"):
        load_config(None, ["averaging.hma.alphas=[1.2]"])
