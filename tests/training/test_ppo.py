"""RLHF-PPO on the real tiny Llama with a tiny reward model: the response mask and EOS penalty by hand,
rollout log-probs against an unpadded forward, the direction of an update with hand-set advantages,
reward normalisation + calibration, and a full run that saves a policy and logs every diagnostic."""

import math

import numpy as np
import pytest
import torch

from alignpipe.calibration import calibrate, fit_rc_lwr
from alignpipe.calibration.rolling import RollingCalibrator
from alignpipe.config import OptimConfig, PPOConfig, RLHFConfig
from alignpipe.data.chat import encode, render_prompt
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.training import ppo

PROMPTS = ["Name a fruit.", "What is 2 + 2?", "Write one sentence about cats.", "List 3 colors, separated by commas."]
DIAGNOSTICS = ("reward", "score", "kl", "non_score_reward", "entropy", "clipfrac", "approx_kl", "policy_loss", "value_loss",
               "value_clipfrac", "response_length", "response_tokens", "eos_fraction", "value_mean", "return_mean", "lr")


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


def learner(tiny_dir, ptx=None, **ppo_overrides) -> ppo.PPOLearner:
    torch.manual_seed(0)
    policy, tok = load_policy(tiny_dir)
    cfg = PPOConfig(**{"epochs": 1, "minibatch_size": 4, "max_new_tokens": 6, **ppo_overrides})
    ptx = ([encode(tok, *example, 64) for example in ptx[0]], ptx[1]) if ptx else None
    return ppo.PPOLearner(policy, tok, cfg, OptimConfig(lr=1e-3, warmup_ratio=0.0), total_updates=4, max_length=64, ptx=ptx)


def test_response_mask_covers_tokens_through_the_first_eos():
    ids = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 8], [2, 9, 2, 2]])
    mask, has_eos = ppo.response_mask(ids, eos_id=2)
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True], [True, False, False, False]]
    assert has_eos.tolist() == [True, False, True]


def test_missing_eos_penalty_replaces_only_cut_off_scores():
    scores, has_eos = torch.tensor([0.3, 0.7, -0.2]), torch.tensor([True, False, False])
    assert ppo.apply_missing_eos_penalty(scores, has_eos, -1.0).tolist() == pytest.approx([0.3, -1.0, -1.0])
    assert ppo.apply_missing_eos_penalty(scores, has_eos, None) is scores


def test_rollout_logps_equal_an_unpadded_forward(tiny_dir):
    lrn = learner(tiny_dir)
    roll = lrn.rollout(PROMPTS)
    assert torch.equal(roll.logps, roll.ref_logps)  # the reference is an untouched copy
    assert (roll.values == 0).all()  # zero-initialised value head
    for i in (0, 3):  # rows with different amounts of left padding
        ids = roll.input_ids[i][roll.attention_mask[i].bool()]
        n = int(roll.mask[i].sum())
        with torch.no_grad():
            logp = torch.log_softmax(lrn.policy(input_ids=ids[None]).logits[0].float(), -1)
        manual = logp[-n - 1 : -1].gather(1, ids[-n:, None]).squeeze(1)
        torch.testing.assert_close(roll.logps[i, :n], manual, atol=1e-4, rtol=0)


def test_update_with_hand_set_advantages_moves_sampled_tokens_the_right_way(tiny_dir):
    lrn = learner(tiny_dir)
    roll = lrn.rollout(PROMPTS)
    sign = torch.tensor([1.0, 1.0, -1.0, -1.0])[:, None]
    stats = lrn.update(roll, sign * roll.mask, torch.zeros_like(roll.mask))
    assert stats["clipfrac"] == 0.0 and stats["approx_kl"] < 1e-8  # one minibatch: ratio = 1 when its loss is taken
    with torch.no_grad():
        logits, _ = ppo.response_outputs(lrn.policy, None, roll.input_ids, roll.attention_mask, roll.mask.size(1), 1.0)
    from alignpipe.losses.logprobs import token_logps

    delta = ((token_logps(logits, roll.response_ids) - roll.logps) * roll.mask).sum(1)
    assert (delta[:2] > 0).all() and (delta[2:] < 0).all(), delta


DEMO = ("Name a fruit.", "An apple.")


def demo_nll(lrn) -> float:
    """Mean token NLL of DEMO's response (and its EOS) after the chat-templated prompt, from one plain forward."""
    prompt = lrn.tok(render_prompt(lrn.tok, DEMO[0]), add_special_tokens=False)["input_ids"]
    response = lrn.tok(DEMO[1], add_special_tokens=False)["input_ids"] + [lrn.tok.eos_token_id]
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logp = torch.log_softmax(lrn.policy(input_ids=ids).logits[0].float(), -1)
    n = len(response)
    return -logp[-n - 1 : -1].gather(1, ids[0, -n:, None]).mean().item()


def test_ptx_adds_the_demonstrations_nll_to_every_update(tiny_dir):
    lrn = learner(tiny_dir, ptx=([DEMO], 1.0))
    roll = lrn.rollout(PROMPTS)
    before = demo_nll(lrn)
    zero = torch.zeros_like(roll.mask, dtype=torch.float32)
    stats = lrn.update(roll, zero, zero)  # no advantage, no return: the NLL is the only loss with a gradient
    assert stats["policy_loss"] == 0.0 and stats["value_loss"] == 0.0
    assert stats["ptx_loss"] == pytest.approx(before, rel=1e-5)  # one minibatch, drawn from the one demonstration
    assert demo_nll(lrn) < before - 0.1


def test_ptx_with_weight_0_is_plain_ppo_bit_for_bit(tiny_dir):
    def trained(ptx):
        # seeds the RNG: both runs sample the same rollout; 2 epochs × 2 minibatches, so an extra draw would reshuffle
        lrn = learner(tiny_dir, ptx=ptx, minibatch_size=2, epochs=2)
        roll = lrn.rollout(PROMPTS)
        sign = torch.tensor([1.0, 1.0, -1.0, -1.0])[:, None]
        return lrn, lrn.update(roll, sign * roll.mask, torch.zeros_like(roll.mask))

    (plain, plain_stats), (zero, zero_stats) = trained(None), trained(([DEMO], 0.0))
    assert "ptx_loss" not in zero_stats and zero_stats == plain_stats
    assert all(torch.equal(a, b) for a, b in zip(plain.policy.parameters(), zero.policy.parameters(), strict=True))


@pytest.mark.parametrize("penalty", [-1.0, None])
def test_cut_off_responses_get_the_missing_eos_penalty(tiny_dir, penalty):
    # 3 new tokens from a random 49k-token model: no EOS, so every response is cut off
    lrn = learner(tiny_dir, max_new_tokens=3, missing_eos_penalty=penalty)
    metrics = lrn.step(PROMPTS, lambda ps, rs: (torch.full((len(rs),), 0.5), {}))
    assert metrics["eos_fraction"] == 0.0
    assert metrics["score"] == pytest.approx(-1.0 if penalty is not None else 0.5)


def test_rm_rewards_are_normalised_then_calibrated(tiny_rm_dir):
    rm, tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    responses = ["Apple.", "4", "Cats sleep a lot.", "red, green, blue", "Banana, obviously.", "Four",
                 "Cats are curious animals that love to sleep in the sun.", "red, blue, yellow, and also green"]
    prompts = PROMPTS * 2
    raw, z = ppo.rm_rewards(rm, tok, RollingCalibrator("none", 8), prompts, responses, 64)
    np.testing.assert_allclose(z, (raw - 0.1) / 2.0)  # the fixture RM's stored mean 0.1, std 2.0
    cal = RollingCalibrator("lwr", 64, frac=0.5, min_points=4)
    _, calibrated = ppo.rm_rewards(rm, tok, cal, prompts, responses, 64)
    lengths = [len(r) for r in responses]
    np.testing.assert_allclose(calibrated, calibrate(z, lengths, fit_rc_lwr(lengths, z, 0.5)), atol=1e-9)
    assert not np.allclose(calibrated, z)


def test_ppo_run_saves_the_policy_and_logs_every_diagnostic(tiny_dir, tiny_rm_dir, tmp_path):
    log = Recorder()
    cfg = RLHFConfig(method="ppo", optim=OptimConfig(lr=1e-3, warmup_ratio=0.0),
                     ppo=PPOConfig(rollouts=2, prompts_per_rollout=4, minibatch_size=2, epochs=1, max_new_tokens=6))
    result = ppo.run(cfg, tiny_dir, tiny_rm_dir, PROMPTS + ["Say hello."], tmp_path, log, max_length=64, seed=0)
    assert [s for s, _ in log.rows] == [0, 1]
    for _, metrics in log.rows:
        missing = [k for k in DIAGNOSTICS if k not in metrics]
        assert not missing and all(math.isfinite(v) for v in metrics.values()), missing
    assert log.rows[0][1]["kl"] == 0.0 and log.rows[1][1]["kl"] != 0.0  # policy = reference until the first update
    assert log.rows[1][1]["lr"] == 0.0  # cosine over all 2 rollouts × 2 minibatches ends at 0
    assert result.metrics["rollouts"] == 2 and math.isfinite(result.metrics["final_reward"])
    trained, _ = load_policy(tmp_path / "model")
    start, _ = load_policy(tiny_dir)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, start.model.layers[0].mlp.up_proj.weight)
    assert (tmp_path / "value_head.safetensors").is_file()
