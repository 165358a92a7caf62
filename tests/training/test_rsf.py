"""RSF / RAFT on the real tiny Llama with a tiny reward model: the kept set is each prompt's RM-best
sample (checked against an independent scoring), or only those that beat the policy's greedy answer,
calibration can change which sample wins, and a run fine-tunes towards the kept responses and logs
its diagnostics — or makes no update when nothing is kept."""

import math

import numpy as np
import torch

from alignpipe.calibration.rolling import RollingCalibrator
from alignpipe.config import OptimConfig, RLHFConfig, RSFConfig
from alignpipe.data.chat import collate, encode
from alignpipe.eval.generation import generate_responses
from alignpipe.eval.scoring import reward_scores
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.training import rsf
from alignpipe.training.forward import response_sequence_logps

PROMPTS = ["Name a fruit.", "What is 2 + 2?", "Write one sentence about cats."]
RSF = RSFConfig(iterations=1, n=4, prompts_per_iteration=3, max_new_tokens=6, steps_per_iteration=6, keep="best")


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


def test_keeps_the_best_of_n_by_an_independent_rm_ranking(tiny_dir, tiny_rm_dir):
    model, tok = load_policy(tiny_dir)
    rm, rm_tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    sel = rsf.sample_and_select(model, tok, rm, rm_tok, RollingCalibrator("none", 8), PROMPTS, RSF, max_length=64, seed=0)
    assert [len(s) for s in sel["samples"]] == [4, 4, 4] and len({r for s in sel["samples"] for r in s}) > 3
    assert sel["keep"].all() and [q for q, _ in sel["kept"]] == PROMPTS and "greedy" not in sel
    for prompt, samples, (_, kept) in zip(PROMPTS, sel["samples"], sel["kept"], strict=True):
        scores = reward_scores(rm, rm_tok, [prompt] * 4, samples, max_length=64)
        assert kept == samples[int(np.argmax(scores))]
    # the RM's ranking, normalised (r − 0.1) / 2 by the fixture's stored stats, picks the same samples
    np.testing.assert_allclose(sel["scores"], (sel["raw"] - 0.1) / 2.0, rtol=1e-6)


def test_better_than_greedy_keeps_only_the_prompts_whose_best_beats_the_greedy_answer(tiny_dir, tiny_rm_dir):
    model, tok = load_policy(tiny_dir)
    rm, rm_tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    cfg = RSF.model_copy(update={"keep": "better_than_greedy", "prompts_per_iteration": 6, "n": 2})
    prompts = [*PROMPTS, "Say hello.", "Count to three.", "Name a colour."]
    greedy = generate_responses(model, tok, prompts, max_new_tokens=6)
    greedy_raw = np.asarray(reward_scores(rm, rm_tok, prompts, greedy, max_length=64))
    keeps = []
    for seed in range(4):  # with 2 samples a prompt's best sometimes loses to the greedy answer
        sel = rsf.sample_and_select(model, tok, rm, rm_tok, RollingCalibrator("none", 8), prompts, cfg, max_length=64, seed=seed)
        assert sel["greedy"] == greedy
        np.testing.assert_allclose(sel["greedy_raw"], greedy_raw, rtol=1e-5, atol=1e-6)
        differs = [s[j] != g for s, j, g in zip(sel["samples"], sel["best"], greedy, strict=True)]
        np.testing.assert_array_equal(sel["keep"], (sel["raw"].max(1) > sel["greedy_raw"]) & differs)
        assert sel["kept"] == [(q, s[j]) for q, s, j, k in zip(prompts, sel["samples"], sel["best"], sel["keep"], strict=True)
                               if k]
        keeps.extend(sel["keep"])
    assert 0 < sum(keeps) < len(keeps)  # both outcomes occur


def test_an_iteration_that_keeps_nothing_makes_no_update(tiny_dir, tiny_rm_dir, tmp_path):
    # at a temperature near 0 every sample is the greedy answer: none beats it (whatever the float noise in their
    # scores from other batches), nothing is kept
    log = Recorder()
    cfg = RLHFConfig(method="rsf", optim=OptimConfig(lr=3e-3, batch_size=3, warmup_ratio=0.0),
                     rsf=RSF.model_copy(update={"keep": "better_than_greedy", "temperature": 1e-4}))
    result = rsf.run(cfg, tiny_dir, tiny_rm_dir, PROMPTS, tmp_path, log, max_length=64, seed=0)
    (_, metrics), = log.rows
    assert metrics["kept_fraction"] == 0.0 and "sft_loss" not in metrics and result.metrics["final_kept_fraction"] == 0.0
    start, trained = load_policy(tiny_dir)[0].state_dict(), load_policy(tmp_path / "model")[0].state_dict()
    assert all(torch.equal(start[k], trained[k]) for k in start)


def test_calibration_selects_on_the_calibrated_reward(tiny_dir, tiny_rm_dir):
    model, tok = load_policy(tiny_dir)
    rm, rm_tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    cal = RollingCalibrator("lwr", 64, frac=0.5, min_points=4)
    sel = rsf.sample_and_select(model, tok, rm, rm_tok, cal, PROMPTS, RSF, max_length=64, seed=0)
    z = (sel["raw"] - 0.1) / 2.0
    assert not np.allclose(sel["scores"], z)
    assert (sel["best"] == sel["scores"].argmax(1)).all()


def test_rsf_run_fine_tunes_towards_the_kept_set(tiny_dir, tiny_rm_dir, tmp_path):
    log = Recorder()
    cfg = RLHFConfig(method="rsf", optim=OptimConfig(lr=3e-3, batch_size=3, warmup_ratio=0.0), rsf=RSF)
    result = rsf.run(cfg, tiny_dir, tiny_rm_dir, PROMPTS, tmp_path, log, max_length=64, seed=0)
    (step, metrics), = log.rows
    for key in ("best_reward", "sample_reward", "kept_length", "sft_loss", "sft_loss_last", "lr"):
        assert math.isfinite(metrics[key]), key
    assert metrics["best_reward"] >= metrics["sample_reward"] and metrics["sft_loss_last"] < metrics["sft_loss"]
    assert result.metrics["iterations"] == 1
    # the first iteration samples the starting model with seed + 0: the same kept set, now more likely
    start, tok = load_policy(tiny_dir)
    rm, rm_tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    kept = [r for _, r in rsf.sample_and_select(start, tok, rm, rm_tok, RollingCalibrator("none", 8), PROMPTS, RSF,
                                                max_length=64, seed=0)["kept"]]
    assert metrics["kept_length"] == np.mean([len(k) for k in kept]) and metrics["kept_fraction"] == 1.0
    trained, _ = load_policy(tmp_path / "model")
    batch = collate([encode(tok, p, k, 64) for p, k in zip(PROMPTS, kept, strict=True)], tok.pad_token_id)
    with torch.no_grad():
        assert (response_sequence_logps(trained, batch) > response_sequence_logps(start, batch) + 1.0).all()
