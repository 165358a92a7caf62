"""tasks.rlhf.train, the rlhf stage's body (bench/tune_rl.py calls it too): DPO learns from the pairs as given;
PPO / RSF get the pairs' distinct prompts, in order, and the RM. Checked against the loops called directly."""

import pytest
from safetensors.torch import load_file

from alignpipe.config import OptimConfig, RLHFConfig, RSFConfig
from alignpipe.tracking import NullLogger
from alignpipe.training import dpo, rsf
from tasks.rlhf import train

PAIRS = [{"prompt": f"Say something about topic {i % 3}.", "chosen": "good good", "rejected": "bad bad"} for i in range(6)]


def weights(d):
    return load_file(next((d / "model").glob("*.safetensors")))


def same(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def test_dpo_trains_on_the_pairs_as_the_loop_does(tiny_dir, tmp_path):
    cfg = RLHFConfig(method="dpo", optim=OptimConfig(lr=1e-3, steps=2, batch_size=2, warmup_ratio=0.0))
    train(cfg, tiny_dir, None, PAIRS, tmp_path / "a", NullLogger(), max_length=64, seed=0)
    dpo.run(cfg, tiny_dir, PAIRS, tmp_path / "b", NullLogger(), max_length=64, seed=0)
    assert same(tmp_path / "a", tmp_path / "b")
    dpo.run(cfg, tiny_dir, PAIRS[::-1], tmp_path / "c", NullLogger(), max_length=64, seed=0)
    assert not same(tmp_path / "a", tmp_path / "c")  # the comparison can tell what the loop was given


def test_rsf_gets_the_distinct_prompts_and_the_rm(tiny_dir, tiny_rm_dir, tmp_path):
    cfg = RLHFConfig(method="rsf", optim=OptimConfig(lr=1e-3, steps=1, batch_size=2, warmup_ratio=0.0),
                     rsf=RSFConfig(iterations=1, n=2, prompts_per_iteration=3, max_new_tokens=4, steps_per_iteration=1))
    train(cfg, tiny_dir, tiny_rm_dir, PAIRS, tmp_path / "a", NullLogger(), max_length=64, seed=0)
    prompts = ["Say something about topic 0.", "Say something about topic 1.", "Say something about topic 2."]
    rsf.run(cfg, tiny_dir, tiny_rm_dir, prompts, tmp_path / "b", NullLogger(), max_length=64, seed=0)
    assert same(tmp_path / "a", tmp_path / "b")


def test_a_method_that_scores_with_the_rm_needs_one(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="rlhf.method 'ppo' needs the reward model"):
        train(RLHFConfig(method="ppo"), tiny_dir, None, PAIRS, tmp_path, NullLogger(), max_length=64, seed=0)
    with pytest.raises(ValueError, match=r"rlhf.dpo_pairs 'generated' \(labeller 'reward_model'\) needs the reward model"):
        train(RLHFConfig(method="dpo", dpo_pairs="generated"), tiny_dir, None, PAIRS, tmp_path, NullLogger(),
              max_length=64, seed=0)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_the_worlds_annotator_labels_generated_pairs_without_an_rm_and_with_the_given_bias(tiny_dir, tmp_path):
    from alignpipe.config import GeneratedPairsConfig
    from alignpipe.data import world
    from alignpipe.data.snapshot import read_snapshot
    from alignpipe.training import generated_pairs

    prompts = world.make_prompts(4, 2)
    pairs = [{"prompt": p["instruction"], "chosen": "a", "rejected": "b", "family": p["family"], "spec": p["spec"]}
             for p in prompts]
    cfg = RLHFConfig(dpo_pairs="generated", optim=OptimConfig(lr=1e-3, steps=1, batch_size=2, warmup_ratio=0.0),
                     generated_pairs=GeneratedPairsConfig(n=4, prompts=4, max_new_tokens=6, labeller="annotator"))
    train(cfg, tiny_dir, None, pairs, tmp_path / "a", NullLogger(), max_length=64, seed=0, length_bias=1.0)
    generated_pairs.run(cfg, tiny_dir, None, pairs, tmp_path / "b", NullLogger(), max_length=64, seed=0, length_bias=1.0)
    assert same(tmp_path / "a", tmp_path / "b")
    rows = read_snapshot(tmp_path / "a" / "generated_pairs.parquet")
    assert rows and all(r["length_biased"] for r in rows)  # the bias reached the annotator
