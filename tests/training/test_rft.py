"""RFT (§1b, explicit reward) on the real tiny Llama: the Bradley–Terry step separates demonstrations
from the model's own samples, and a run alternates RM updates with PPO rollouts end to end."""

import math

import pytest
import torch

from alignpipe.config import OptimConfig, RFTConfig, SFTConfig
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.training import rft
from alignpipe.training.optim import make_optimizer

ROWS = [{"prompt": f"Count to {n}.", "response": ", ".join(str(i) for i in range(1, n + 1))} for n in (3, 4, 5, 6)]


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


def test_reward_model_step_separates_demonstrations_from_own_samples(tiny_dir):
    rm, tok = RewardModel.from_pretrained_backbone(tiny_dir, device="cpu"), load_tokenizer(tiny_dir)
    pairs = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "blorp zing quax"} for r in ROWS]
    optim = OptimConfig(lr=1e-3, batch_size=4, warmup_ratio=0.0)
    opt, sched = make_optimizer(rm.parameters(), optim.model_copy(update={"steps": 12}))
    stats = rft.train_reward_model(rm, opt, sched, tok, pairs, optim, 12, max_length=64, seed=0)
    assert stats["rm_pairs"] == 4 and stats["rm_accuracy_after"] == 1.0
    assert stats["rm_loss"] < 0.6931 and rm.std > 0


def test_rft_runs_end_to_end(tiny_dir, tmp_path):
    log = Recorder()
    cfg = SFTConfig(method="rft", optim=OptimConfig(lr=1e-3, batch_size=2, warmup_ratio=0.0),
                    rft=RFTConfig(rounds=2, rm_steps=2, rm_lr=1e-3, ppo_rollouts=1, kl_coef=0.3, policy_lr=5e-4,
                                  sft_weight=0.0))
    result = rft.run(cfg, tiny_dir, ROWS, tmp_path, log, max_length=64, seed=0)
    rm_rows = [m for _, m in log.rows if "rm_loss" in m]
    ppo_rows = [m for _, m in log.rows if "clipfrac" in m]
    assert len(rm_rows) == 2 and len(ppo_rows) == 2
    assert all(math.isfinite(m["rm_loss"]) and 0 <= m["rm_accuracy"] <= 1 for m in rm_rows)
    assert all(math.isfinite(m["kl"]) and math.isfinite(m["entropy"]) for m in ppo_rows)
    # the PPO steps penalise with rft.kl_coef (k1: the summed penalty is kl_coef × the logged KL)
    assert ppo_rows[1]["kl"] != 0 and all(m["non_score_reward"] == pytest.approx(-0.3 * m["kl"], rel=1e-5, abs=1e-7)
                                          for m in ppo_rows)
    # the policy steps run at rft.policy_lr (cosine from 5e-4), not at SFT's optim.lr (1e-3)
    assert all(0 <= m["lr"] <= 5e-4 for m in ppo_rows) and ppo_rows[0]["lr"] > 2.5e-4
    assert result.metrics["rounds"] == 2 and "final_rm_accuracy" in result.metrics
    trained, _ = load_policy(tmp_path / "model")
    start, _ = load_policy(tiny_dir)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, start.model.layers[0].mlp.up_proj.weight)
    assert not any("ptx_loss" in m for m in ppo_rows)  # sft_weight 0: §1b's RFT, no NLL term


def test_rft_sft_weight_adds_the_demonstrations_nll_to_the_ppo_updates(tiny_dir, tmp_path):
    log = Recorder()
    cfg = SFTConfig(method="rft", optim=OptimConfig(lr=1e-3, batch_size=2, warmup_ratio=0.0),
                    rft=RFTConfig(rounds=1, rm_steps=1, ppo_rollouts=2, policy_lr=5e-4, sft_weight=0.5))
    rft.run(cfg, tiny_dir, ROWS, tmp_path, log, max_length=64, seed=0)
    ptx = [m["ptx_loss"] for _, m in log.rows if "clipfrac" in m]
    assert len(ptx) == 2 and all(math.isfinite(x) and x > 0 for x in ptx)
    with pytest.raises(ValueError, match="sft_weight"):
        RFTConfig(sft_weight=-1)
