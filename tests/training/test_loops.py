"""Each training loop on the real tiny Llama: it learns what it is given, saves a loadable model,
and reports its metrics. Separable toy data keeps the steps few (seconds on CPU)."""

import pytest
import torch

from alignpipe.config import OptimConfig, RewardModelConfig, RLHFConfig, SFTConfig
from alignpipe.models import RewardModel, load_policy
from alignpipe.tracking import NullLogger
from alignpipe.training import dpo, reward_model, sft
from alignpipe.training.reward_model import encode_pairs

PAIRS = [{"prompt": f"Say something about topic {i}.", "chosen": "good good good", "rejected": "bad bad bad"} for i in range(12)]


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


def test_sft_overfits_a_few_demonstrations(tiny_dir, tmp_path):
    rows = [{"prompt": f"Count to {n}.", "response": ", ".join(str(i) for i in range(1, n + 1))} for n in (3, 4, 5, 6)]
    log = Recorder()
    cfg = SFTConfig(optim=OptimConfig(lr=1e-2, steps=25, batch_size=4, warmup_ratio=0.0))
    result = sft.run(cfg, tiny_dir, rows, tmp_path, log, max_length=64, seed=0)
    losses = [m["loss"] for _, m in log.rows]
    assert len(losses) == 25 and losses[-1] < 0.3 * losses[0]
    assert result.metrics["train_examples"] == 4 and result.metrics["truncated_examples"] == 0
    model, _ = load_policy(tmp_path / "model")
    original, _ = load_policy(tiny_dir)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight)


def test_reward_model_learns_separable_pairs(tiny_dir, tmp_path):
    cfg = RewardModelConfig(optim=OptimConfig(lr=1e-3, steps=20, batch_size=4, warmup_ratio=0.0))
    result = reward_model.run(cfg, tiny_dir, PAIRS[:8], PAIRS[8:], tmp_path, NullLogger(), max_length=64, seed=0)
    assert result.metrics["train_accuracy"] == 1.0 and result.metrics["heldout_accuracy"] == 1.0
    rm = RewardModel.load(tmp_path / "model")
    assert rm.std > 0 and abs(rm.mean - result.metrics["reward_mean"]) < 1e-9


def test_dpo_moves_probability_towards_chosen(tiny_dir, tmp_path):
    log = Recorder()
    cfg = RLHFConfig(beta=0.1, optim=OptimConfig(lr=1e-3, steps=15, batch_size=4, warmup_ratio=0.0))
    result = dpo.run(cfg, tiny_dir, PAIRS, tmp_path, log, max_length=64, seed=0)
    first, last = log.rows[0][1], log.rows[-1][1]
    assert abs(first["loss"] - 0.6931) < 1e-3  # policy == reference at step 0: loss = log 2
    assert last["reward_margin"] > 0.5 and last["reward_accuracy"] == 1.0 and result.metrics["final_loss"] < 0.5
    # The saved policy really prefers the chosen responses more than the reference does.
    policy, tok = load_policy(tmp_path / "model")
    ref, _ = load_policy(tiny_dir)
    pairs = encode_pairs(tok, PAIRS[:4], 64)
    with torch.inference_mode():
        pc, pr = dpo.pair_logps(policy, pairs, tok.pad_token_id)
        rc, rr = dpo.pair_logps(ref, pairs, tok.pad_token_id)
    assert ((pc - pr) > (rc - rr)).all()


def test_dpo_nll_weight_adds_the_chosen_per_token_nll(tiny_dir, tmp_path):
    """RPO: loss = DPO + α × mean over the batch of −log π(chosen) / its response tokens, by hand at step 0."""
    one = PAIRS[:1]
    log = Recorder()
    cfg = RLHFConfig(beta=0.1, dpo_nll_weight=2.0, optim=OptimConfig(lr=1e-3, steps=6, batch_size=1, warmup_ratio=0.0))
    dpo.run(cfg, tiny_dir, one, tmp_path, log, max_length=64, seed=0)
    model, tok = load_policy(tiny_dir)
    c = encode_pairs(tok, one, 64)[0][0]
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([c.input_ids])).logits[0].float(), -1)
    response = [i for i in range(len(c.labels)) if c.labels[i] != -100]
    manual = -sum(logp[i - 1, c.input_ids[i]].item() for i in response) / len(response)
    first = log.rows[0][1]
    assert first["chosen_nll"] == pytest.approx(manual, abs=1e-3)
    assert first["dpo_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert first["loss"] == pytest.approx(first["dpo_loss"] + 2.0 * first["chosen_nll"], abs=1e-5)
    assert log.rows[-1][1]["chosen_nll"] < first["chosen_nll"] - 0.5  # 10.6 -> 9.7 here


def test_dpo_nll_weight_zero_is_dpo_and_keeps_the_stage_fingerprint(tiny_dir, tmp_path):
    from tasks.rlhf import stage_config

    log = Recorder()
    cfg = RLHFConfig(beta=0.1, optim=OptimConfig(lr=1e-3, steps=2, batch_size=2, warmup_ratio=0.0))
    dpo.run(cfg, tiny_dir, PAIRS[:4], tmp_path, log, max_length=64, seed=0)
    assert "chosen_nll" not in log.rows[0][1]
    assert "dpo_nll_weight" not in stage_config(cfg, 64)  # old DPO stages stay cached
    assert stage_config(cfg.model_copy(update={"dpo_nll_weight": 1.0}), 64)["dpo_nll_weight"] == 1.0
    assert "dpo_nll_weight" not in stage_config(RLHFConfig(method="ppo", dpo_nll_weight=1.0), 64)


def test_reference_logps_match_a_manual_computation(tiny_dir):
    model, tok = load_policy(tiny_dir)
    pairs = encode_pairs(tok, PAIRS[:3], 64)
    ref = dpo.reference_logps(model, pairs, tok.pad_token_id, batch_size=2)
    c = pairs[1][0]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([c.input_ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    manual = sum(logp[i - 1, c.input_ids[i]].item() for i in range(len(c.labels)) if c.labels[i] != -100)
    assert abs(ref[1, 0].item() - manual) < 1e-3
