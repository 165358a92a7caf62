"""Mid-training checkpoints on the real tiny Llama: each loop stopped part-way (`halt_at`, after the
checkpoint before it, so some work is lost and recomputed) and resumed ends with exactly the weights,
per-step metrics and final metrics of an uninterrupted run; and the pieces of a checkpoint round-trip."""

import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from alignpipe.calibration.rolling import RollingCalibrator
from alignpipe.config import (
    IRFTConfig,
    OptimConfig,
    PPOConfig,
    RewardModelConfig,
    RFTConfig,
    RLHFConfig,
    RSFConfig,
    SFTConfig,
)
from alignpipe.store import begin_checkpoint, latest_checkpoint
from alignpipe.training import dpo, irft, ppo, reward_model, rft, rsf, sft
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints, Halted, load_state, save_state
from alignpipe.training.optim import make_optimizer

TIMING = {"tokens_per_s", "train_time_s", "wall_time_s"}  # wall-clock numbers differ between any two runs
ROWS = [{"prompt": f"Count to {n}.", "response": ", ".join(str(i) for i in range(1, n + 1))} for n in range(3, 9)]
PAIRS = [{"prompt": f"Say something about topic {i}.", "chosen": "good " * (1 + i % 3), "rejected": "bad " * (1 + i % 2)}
         for i in range(10)]
PROMPTS = ["Name a fruit.", "What is 2 + 2?", "Write one sentence about cats.", "List 3 colors.", "Say hello."]


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, {k: repr(float(v)) for k, v in metrics.items()}))  # repr: NaN equals NaN


def weights(out):
    return {f"{p.relative_to(out)}:{k}": t for p in sorted(out.rglob("*.safetensors")) for k, t in load_file(p).items()}


def check_resume_equals_uninterrupted(tmp_path, capsys, stage, call, *, every, halt_at, resumes_from):
    clean_log = Recorder()
    clean = call(tmp_path / "clean", clean_log, NO_CHECKPOINTS)
    work = tmp_path / "work"
    with pytest.raises(Halted):
        call(tmp_path / "killed", Recorder(), Checkpoints(work, every, halt_at=halt_at))
    assert latest_checkpoint(work)[0] == resumes_from
    capsys.readouterr()
    log = Recorder()
    resumed = call(tmp_path / "resumed", log, Checkpoints(work, every))
    assert f"resuming {stage} from step {resumes_from}" in capsys.readouterr().err
    assert log.rows == clean_log.rows  # the saved history replayed, then the rest, each step once
    drop = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
    assert drop(resumed.metrics) == drop(clean.metrics)
    a, b = weights(tmp_path / "clean"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sft(tiny_dir, tmp_path, capsys):
    cfg = SFTConfig(optim=OptimConfig(lr=1e-2, steps=7, batch_size=4, warmup_ratio=0.3))
    check_resume_equals_uninterrupted(tmp_path, capsys, "sft", lambda out, log, ck: sft.run(
        cfg, tiny_dir, ROWS, out, log, max_length=64, seed=0, checkpoints=ck), every=2, halt_at=5, resumes_from=4)


def test_reward_model(tiny_dir, tmp_path, capsys):
    cfg = RewardModelConfig(optim=OptimConfig(lr=1e-3, steps=7, batch_size=4, warmup_ratio=0.3))
    check_resume_equals_uninterrupted(tmp_path, capsys, "reward_model", lambda out, log, ck: reward_model.run(
        cfg, tiny_dir, PAIRS[:8], PAIRS[8:], out, log, max_length=64, seed=0, checkpoints=ck), every=3, halt_at=5, resumes_from=3)


def test_dpo(tiny_dir, tmp_path, capsys):
    cfg = RLHFConfig(beta=0.1, optim=OptimConfig(lr=1e-3, steps=7, batch_size=4, warmup_ratio=0.3))
    check_resume_equals_uninterrupted(tmp_path, capsys, "dpo", lambda out, log, ck: dpo.run(
        cfg, tiny_dir, PAIRS, out, log, max_length=64, seed=0, checkpoints=ck), every=3, halt_at=4, resumes_from=3)


def test_ppo(tiny_dir, tiny_rm_dir, tmp_path, capsys):
    # 2 updates per rollout, a checkpoint every 3: after rollout 2; halted after rollout 3, the last
    cfg = RLHFConfig(method="ppo", optim=OptimConfig(lr=1e-3, warmup_ratio=0.0), reward_calibration="mean",
                     ppo=PPOConfig(rollouts=3, prompts_per_rollout=4, minibatch_size=2, epochs=1, max_new_tokens=6))
    check_resume_equals_uninterrupted(tmp_path, capsys, "ppo", lambda out, log, ck: ppo.run(
        cfg, tiny_dir, tiny_rm_dir, PROMPTS, out, log, max_length=64, seed=0, checkpoints=ck), every=3, halt_at=3, resumes_from=2)


def test_rsf(tiny_dir, tiny_rm_dir, tmp_path, capsys):
    cfg = RLHFConfig(method="rsf", optim=OptimConfig(lr=3e-3, batch_size=2, warmup_ratio=0.0),
                     rsf=RSFConfig(iterations=3, n=2, prompts_per_iteration=3, max_new_tokens=6, steps_per_iteration=2))
    check_resume_equals_uninterrupted(tmp_path, capsys, "rsf", lambda out, log, ck: rsf.run(
        cfg, tiny_dir, tiny_rm_dir, PROMPTS, out, log, max_length=64, seed=0, checkpoints=ck), every=3, halt_at=3, resumes_from=2)


def test_irft(tiny_dir, tmp_path, capsys):
    cfg = SFTConfig(method="irft", optim=OptimConfig(lr=1e-3, batch_size=2, warmup_ratio=0.0),
                    irft=IRFTConfig(stages=2, max_new_tokens=6))
    check_resume_equals_uninterrupted(tmp_path, capsys, "irft", lambda out, log, ck: irft.run(
        cfg, tiny_dir, ROWS, out, log, max_length=64, seed=0, checkpoints=ck), every=1, halt_at=2, resumes_from=1)


def test_rft(tiny_dir, tmp_path, capsys):
    cfg = SFTConfig(method="rft", optim=OptimConfig(lr=1e-3, batch_size=2, warmup_ratio=0.0),
                    rft=RFTConfig(rounds=2, rm_steps=2, rm_lr=1e-3, ppo_rollouts=1, policy_lr=1e-3))
    check_resume_equals_uninterrupted(tmp_path, capsys, "rft", lambda out, log, ck: rft.run(
        cfg, tiny_dir, ROWS[:3], out, log, max_length=64, seed=0, checkpoints=ck), every=1, halt_at=2, resumes_from=1)


def test_optimizer_scheduler_and_rngs_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt, sched = make_optimizer(net.parameters(), OptimConfig(lr=0.1, steps=10, warmup_ratio=0.2))
    for _ in range(3):
        net(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    path = save_state(tmp_path, 3, {"net": net, "opt": opt, "sched": sched}, {"tokens": 7}, [[0, {"loss": 1.5}]])
    assert sorted(p.name for p in path.iterdir()) == ["net.safetensors", "opt.safetensors", "rng.safetensors", "state.json"]
    draws = (random.random(), np.random.rand(), torch.rand(1))

    net2 = torch.nn.Linear(3, 2)
    opt2, sched2 = make_optimizer(net2.parameters(), OptimConfig(lr=0.1, steps=10, warmup_ratio=0.2))
    meta = load_state(path, {"net": net2, "opt": opt2, "sched": sched2})
    assert meta["values"] == {"tokens": 7} and meta["metrics"] == [[0, {"loss": 1.5}]]
    assert (random.random(), np.random.rand(), torch.rand(1)) == draws  # the RNGs are where they were at the save
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.last_epoch == 3
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert all(torch.equal(s1["state"][i][k], s2["state"][i][k]) for i in s1["state"] for k in s1["state"][i])


def test_an_unfinished_checkpoint_is_never_taken(tmp_path):
    net = torch.nn.Linear(2, 1)
    save_state(tmp_path, 4, {"net": net}, {}, [])
    half = begin_checkpoint(tmp_path)  # a writer killed before its state.json and rename
    (half / "net.safetensors").write_bytes(b"partial")
    (tmp_path / "step-00000009").mkdir()  # a step directory without state.json (never published)
    assert latest_checkpoint(tmp_path) == (4, tmp_path / "step-00000004")
    save_state(tmp_path, 6, {"net": net}, {}, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000006"]  # the older and the leftovers are gone


def test_calibration_buffer_round_trips():
    cal = RollingCalibrator("mean", 5, min_points=2)
    cal.update([3, 5, 8], [0.1, -0.2, 0.7], groups=["a", "a", "b"])
    again = RollingCalibrator("mean", 5, min_points=2)
    again.load_state(cal.state())
    assert again.state() == cal.state() == [[3.0, 0.1, "a"], [5.0, -0.2, "a"], [8.0, 0.7, "b"]]
    np.testing.assert_array_equal(again.update([4], [0.3], groups=["b"]), cal.update([4], [0.3], groups=["b"]))
