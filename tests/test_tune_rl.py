"""bench/tune_rl's cache of the SFT's evaluation: reused while the SFT's weights, the prompts and the evaluation
settings are unchanged, recomputed when any of them changes. (evaluate itself is the pipeline's generation and
scoring, run for real by the benchmark; here it is replaced by a counter, as the cache is what is tested.)"""

import argparse
import os

import numpy as np
import pytest

import bench.tune_rl as tune_rl
from alignpipe.config import load_config


def test_the_sft_evaluation_is_cached_per_weights_prompts_and_settings(tmp_path, monkeypatch):
    (tmp_path / "sft").mkdir()
    (tmp_path / "data").mkdir()
    weights, prompts = tmp_path / "sft" / "model.safetensors", tmp_path / "data" / "eval_prompts.parquet"
    weights.write_bytes(b"w0")
    prompts.write_bytes(b"p0")
    calls = []

    def evaluate(model_dir, ref, cfg):
        calls.append(model_dir)
        return {"gold": 0.5 + len(calls), "rm": 0.1, "length": 20.0, "per_prompt": np.array([0.5, 1.0]),
                "families": np.array(["a", "b"]), "prompts_sha": "abc"}

    monkeypatch.setattr(tune_rl, "evaluate", evaluate)
    cfg = load_config(None)
    first = tune_rl.evaluate_sft(tmp_path, cfg)
    again = tune_rl.evaluate_sft(tmp_path, cfg)
    assert len(calls) == 1 and calls[0] == tmp_path / "sft"
    assert again["gold"] == first["gold"] == 1.5 and again["prompts_sha"] == "abc"
    assert isinstance(again["per_prompt"], np.ndarray) and again["per_prompt"].tolist() == [0.5, 1.0]
    assert again["families"].tolist() == ["a", "b"]
    tune_rl.evaluate_sft(tmp_path, load_config(None, ["evaluation.max_new_tokens=8"]))  # other settings
    assert len(calls) == 2
    weights.write_bytes(b"w1-longer")  # the SFT was replaced
    tune_rl.evaluate_sft(tmp_path, cfg)
    assert len(calls) == 3
    st = prompts.stat()
    prompts.write_bytes(b"p1")
    os.utime(prompts, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # other prompts, same size
    tune_rl.evaluate_sft(tmp_path, cfg)
    assert len(calls) == 4
    assert tune_rl.evaluate_sft(tmp_path, cfg)["gold"] == 4.5 and len(calls) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sft_eval")] == [".sft_eval.json"]


def test_an_override_after_seed_gets_a_hint_not_a_bare_int_error():
    assert tune_rl.seed_arg("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="put key=value overrides before --seed"):
        tune_rl.seed_arg("rlhf.beta=0.2")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid seed 'x'"):
        tune_rl.seed_arg("x")
