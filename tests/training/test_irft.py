"""IRFT (§1b) on the real tiny Llama: stages, own-sample negatives, reference resets, the gap it opens.

The random tiny model greedily repeats "\\n", which strips to "": its first negatives are empty
responses. A copy fine-tuned to answer "yes" to everything makes ỹ == y observable.
"""

import math

import pytest
import torch

from alignpipe.config import IRFTConfig, OptimConfig, SFTConfig
from alignpipe.data.chat import encode
from alignpipe.data.snapshot import read_snapshot
from alignpipe.eval.generation import generate_responses
from alignpipe.models import load_policy
from alignpipe.tracking import NullLogger
from alignpipe.training import irft
from alignpipe.training.dpo import pair_logps

SAME = [{"prompt": "Tell me a word.", "response": "good good good"}] * 8


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))

    def steps(self):
        return [m for _, m in self.rows if "loss" in m]

    def stages(self):
        return [m for _, m in self.rows if "stage/gap_start" in m]


def irft_cfg(stages: int, lr: float = 1e-2, batch_size: int = 2) -> SFTConfig:
    return SFTConfig(method="irft", optim=OptimConfig(lr=lr, batch_size=batch_size, warmup_ratio=0.0),
                     irft=IRFTConfig(stages=stages, beta=0.1, max_new_tokens=6, lr=lr, sft_weight=0.0,
                                     temperature=0.0))  # §1b exactly




def test_split_stages_is_a_seeded_partition():
    parts = irft.split_stages(11, 3, seed=0)
    assert sorted(i for p in parts for i in p) == list(range(11))
    assert sorted(len(p) for p in parts) == [3, 4, 4]
    assert parts == irft.split_stages(11, 3, seed=0) and parts != irft.split_stages(11, 3, seed=1)
    with pytest.raises(ValueError, match="irft.stages=3"):
        irft.split_stages(2, 3, seed=0)


def test_pairs_the_model_already_generates_are_dropped(says_yes_dir, tmp_path):
    model, tok = load_policy(says_yes_dir)
    questions = [f"Is {x} a colour?" for x in ("red", "blue", "cold", "dog", "sun", "six")]
    assert generate_responses(model, tok, questions, max_new_tokens=6) == ["yes"] * 6
    rows = [{"prompt": q, "response": "yes" if i % 2 else "no thanks"} for i, q in enumerate(questions)]
    log = Recorder()
    result = irft.run(irft_cfg(stages=1), says_yes_dir, rows, tmp_path, log, max_length=64, seed=0)
    assert result.metrics["pairs_dropped"] == 3 and result.metrics["pairs_kept"] == 3
    assert log.stages()[0]["stage/pairs_dropped"] == 3 and log.stages()[0]["stage/pairs_kept"] == 3
    negatives = read_snapshot(tmp_path / "negatives.parquet")
    assert [(n["demonstration"], n["generated"], n["kept"]) for n in negatives
            if n["demonstration"] == "yes"] == [("yes", "yes", False)] * 3
    assert len(log.steps()) == 2  # one epoch over the 3 kept pairs at batch size 2


def test_each_stage_regenerates_negatives_and_resets_the_reference(tiny_dir, tmp_path):
    log = Recorder()
    result = irft.run(irft_cfg(stages=2), tiny_dir, SAME, tmp_path / "two", log, max_length=64, seed=0)
    steps = log.steps()
    assert len(steps) == 4 and [m["stage"] for m in steps] == [0, 0, 1, 1]
    # Policy == reference at each stage's first step, so the loss is log 2: the reference was reset.
    assert abs(steps[0]["loss"] - math.log(2)) < 1e-4 and abs(steps[2]["loss"] - math.log(2)) < 1e-4
    assert steps[1]["loss"] < math.log(2) and steps[3]["loss"] < math.log(2)

    # Stage 0's negatives come from the starting model, stage 1's from the model after stage 0,
    # which (identical rows, a fresh optimizer per stage) is what a one-stage run on 4 rows ends with.
    irft.run(irft_cfg(stages=1), tiny_dir, SAME[:4], tmp_path / "one", NullLogger(), max_length=64, seed=0)
    start, tok = load_policy(tiny_dir)
    after_first, _ = load_policy(tmp_path / "one" / "model")
    negatives = read_snapshot(tmp_path / "two" / "negatives.parquet")
    by_stage = [{n["generated"] for n in negatives if n["stage"] == t} for t in (0, 1)]
    assert by_stage[0] == set(generate_responses(start, tok, [SAME[0]["prompt"]], max_new_tokens=6))
    assert by_stage[1] == set(generate_responses(after_first, tok, [SAME[0]["prompt"]], max_new_tokens=6))
    assert by_stage[0] != by_stage[1]
    assert result.metrics["pairs_kept"] == 8 and result.metrics["steps"] == 4


def test_logged_gap_is_measured_under_the_stage_model_and_grows(tiny_dir, tmp_path):
    rows = [{"prompt": f"Name a thing number {i}.", "response": f"thing {i} is nice"} for i in range(6)]
    log = Recorder()
    result = irft.run(irft_cfg(stages=2, lr=5e-3), tiny_dir, rows, tmp_path, log, max_length=64, seed=0)
    stages = log.stages()
    assert len(stages) == 2 and all(s["stage/gap_end"] > s["stage/gap_start"] + 1.0 for s in stages)
    # Stage 0's starting gap, recomputed by hand under the starting model from the saved negatives.
    model, tok = load_policy(tiny_dir)
    first = [n for n in read_snapshot(tmp_path / "negatives.parquet") if n["stage"] == 0]
    pairs = [(encode(tok, n["prompt"], n["demonstration"], 64), encode(tok, n["prompt"], n["generated"], 64)) for n in first]
    with torch.inference_mode():
        demo, gen = pair_logps(model, pairs, tok.pad_token_id)
    assert abs((demo - gen).mean().item() - stages[0]["stage/gap_start"]) < 1e-3
    assert result.metrics["first_gap_start"] == stages[0]["stage/gap_start"] and result.metrics["mean_gap_increase"] > 1.0
    trained, _ = load_policy(tmp_path / "model")
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)


def test_sft_weight_raises_the_demonstrations_likelihood_more(tiny_dir, tmp_path):
    rows = [{"prompt": f"Name a thing number {i}.", "response": f"thing {i} is nice"} for i in range(6)]
    demo_logp = {}
    for weight in (0.0, 10.0):
        cfg = irft_cfg(stages=2, lr=5e-3)
        cfg = cfg.model_copy(update={"irft": cfg.irft.model_copy(update={"sft_weight": weight})})
        irft.run(cfg, tiny_dir, rows, tmp_path / str(weight), NullLogger(), max_length=64, seed=0)
        model, tok = load_policy(tmp_path / str(weight) / "model")
        pairs = [(encode(tok, r["prompt"], r["response"], 64),) * 2 for r in rows]
        with torch.inference_mode():
            demo_logp[weight] = pair_logps(model, pairs, tok.pad_token_id)[0].mean().item()
    assert demo_logp[10.0] > demo_logp[0.0] + 1.0, demo_logp


def test_temperature_samples_the_negatives_with_a_seed_per_stage(tiny_dir, tmp_path):
    rows = [{"prompt": f"Name a thing number {i}.", "response": f"thing {i} is nice"} for i in range(4)]
    cfg = irft_cfg(stages=2, lr=1e-9)  # a negligible step: stage 1 samples from (almost) the starting model
    cfg = cfg.model_copy(update={"irft": cfg.irft.model_copy(update={"temperature": 1.0})})
    irft.run(cfg, tiny_dir, rows, tmp_path, NullLogger(), max_length=64, seed=3)
    model, tok = load_policy(tiny_dir)
    negatives = read_snapshot(tmp_path / "negatives.parquet")
    for t, part in enumerate(irft.split_stages(len(rows), 2, seed=3)):
        prompts = [rows[i]["prompt"] for i in part]
        sampled = generate_responses(model, tok, prompts, max_new_tokens=6, temperature=1.0, batch_size=4, seed=3 + t)
        assert [n["generated"] for n in negatives if n["stage"] == t] == sampled
        assert sampled != generate_responses(model, tok, prompts, max_new_tokens=6)  # greedy gives ["", ""]
