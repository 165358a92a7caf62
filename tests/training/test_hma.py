"""Learned-ratio HMA (ALGORITHMS §4): the merge math by hand and against `merge_blocks`, and the loop
on the real tiny Llama. The "sft" checkpoint is the tiny model fitted to a few demonstrations; the
"rl" one is that model with layer 0 drowned in noise (and every other tensor nudged), so the samples
are fitted far better by SFT's block 0 and the learned α_0 must rise."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch.func import functional_call

from alignpipe.config import HMAConfig, OptimConfig, SFTConfig
from alignpipe.data.chat import collate, encode
from alignpipe.losses.logprobs import masked_mean, shifted, token_logps
from alignpipe.merging.average import average_state_dicts
from alignpipe.merging.blocks import BlockSpec, hma_alphas, merge_blocks
from alignpipe.merging.stream import merge_files
from alignpipe.models import load_policy
from alignpipe.tracking import NullLogger
from alignpipe.training import hma, sft
from tests.merging.test_blocks import LAYER_KEYS, llama

ROWS = [{"prompt": f"Count to {n}.", "response": ", ".join(str(i) for i in range(1, n + 1))} for n in (3, 4, 5, 6)]
TINY_SPEC = BlockSpec((0, 1, 2), (0.3, 0.8), head_alpha=0.4, embed_alpha=0.6)  # tiny Llama: 2 layers, tied head


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


@pytest.fixture(scope="module")
def checkpoints(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hma")
    cfg = SFTConfig(optim=OptimConfig(lr=2e-2, steps=5, batch_size=4, warmup_ratio=0.0))
    sft.run(cfg, tiny_dir, ROWS, root / "sft", NullLogger(), max_length=64, seed=0)
    model, tok = load_policy(root / "sft" / "model")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for key, p in model.named_parameters():
            scale = 0.3 if key.startswith("model.layers.0.") and p.dim() == 2 else 2e-3
            p.add_(scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(root / "rl", safe_serialization=True)
    tok.save_pretrained(root / "rl")
    return root / "sft" / "model", root / "rl"


@pytest.fixture(scope="module")
def weights(checkpoints):
    return tuple(load_file(d / "model.safetensors") for d in checkpoints)


@pytest.fixture(scope="module")
def trained(checkpoints, tmp_path_factory):
    out, log = tmp_path_factory.mktemp("hma_run"), Recorder()
    cfg = HMAConfig(alphas=(0.5,), lr=5e-2, epochs=5, batch_size=4)
    result = hma.run(cfg, 2, *checkpoints, ROWS, out, log, max_length=64, seed=0)
    return result, [m for _, m in log.rows], out


def nll(model, params, tok) -> torch.Tensor:
    batch = collate([encode(tok, r["prompt"], r["response"], 64) for r in ROWS], tok.pad_token_id)
    out = functional_call(model, params, args=(), kwargs={"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    logits, targets, mask = shifted(out.logits, batch["labels"])
    return -masked_mean(token_logps(logits, targets), mask)


def test_the_sft_checkpoint_fits_the_samples_far_better_than_rl(checkpoints, weights):
    model, tok = load_policy(checkpoints[1])
    with torch.no_grad():
        nll_sft, nll_rl = nll(model, weights[0], tok).item(), nll(model, weights[1], tok).item()
    assert nll_sft < nll_rl - 1.0, (nll_sft, nll_rl)


def test_merged_parameters_by_hand():
    # sft = 10, rl = 2: merged = 2 + 8α; ∂(Σ merged)/∂α_k = 8 · (elements in block k) = 8 · layers · 9 keys · 6
    spec = BlockSpec((0, 1, 3, 4), (0.25, 0.5, 0.75), head_alpha=1.0, embed_alpha=0.0)
    block_alphas = torch.tensor([0.25, 0.5, 0.75], requires_grad=True)
    out = hma.merged_parameters(llama(10.0), llama(2.0), block_alphas, spec)
    for i, v in {0: 4.0, 1: 6.0, 2: 6.0, 3: 8.0}.items():
        assert all(torch.equal(out[f"model.layers.{i}.{k}"], torch.full((2, 3), v)) for k in LAYER_KEYS), i
    assert torch.equal(out["model.norm.weight"], torch.full((2, 3), 10.0)) and not out["model.norm.weight"].requires_grad
    assert torch.equal(out["model.embed_tokens.weight"], torch.full((2, 3), 2.0))
    sum(t.sum() for t in out.values()).backward()
    assert torch.equal(block_alphas.grad, torch.tensor([432.0, 864.0, 432.0]))


def test_merged_parameters_equal_merge_blocks_and_are_differentiable(checkpoints, weights):
    s, r = weights
    block_alphas = torch.tensor(TINY_SPEC.alphas, requires_grad=True)
    merged, expected = hma.merged_parameters(s, r, block_alphas, TINY_SPEC), merge_blocks(s, r, TINY_SPEC)
    assert merged.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(merged[key], expected[key], atol=1e-6, rtol=0), key
    model, tok = load_policy(checkpoints[1])
    model.requires_grad_(False)
    nll(model, merged, tok).backward()
    assert (block_alphas.grad.abs() > 0).all()
    assert not any(t.requires_grad for t in (*s.values(), *r.values()))  # the only graph is through the ratios


def test_at_init_the_merged_model_is_uniform_ma(checkpoints, weights, tmp_path):
    s, r = weights
    alphas = hma_alphas(torch.full((2,), math.log(0.2 / 0.8), requires_grad=True), 0.2)
    merged = hma.merged_parameters(s, r, alphas, BlockSpec((0, 1, 2), (0.2, 0.2), 0.2, 0.2))
    averaged = average_state_dicts(s, r, 0.2)
    assert all(torch.allclose(merged[k], averaged[k], atol=1e-6, rtol=0) for k in averaged)
    # the same logits as the MA checkpoint loaded from disk: functional_call also swaps the tied lm_head
    skeleton, tok = load_policy(checkpoints[1])
    ma, _ = load_policy(merge_files(*checkpoints, BlockSpec.uniform(2, 2, 0.2), tmp_path / "ma"))
    with torch.no_grad():
        ids = torch.tensor([encode(tok, "Count to 4.", "1, 2, 3, 4", 64).input_ids])
        got = functional_call(skeleton, merged, args=(), kwargs={"input_ids": ids}).logits
        assert torch.allclose(got, ma(input_ids=ids).logits, atol=1e-5)
        assert not torch.allclose(got, skeleton(input_ids=ids).logits, atol=1e-3)


def test_run_raises_the_ratio_of_the_block_rl_broke_and_lowers_the_loss(trained):
    result, rows, _ = trained
    a0, a1, losses = [m["alpha_0"] for m in rows], [m["alpha_1"] for m in rows], [m["loss"] for m in rows]
    assert len(rows) == 5 and a0[0] == pytest.approx(0.5) and a1[0] == pytest.approx(0.5)  # 5 epochs of 1 batch
    assert all(x < y for x, y in zip(a0, a0[1:], strict=False)) and a0[-1] > 0.52 and a1[-1] < 0.48
    assert losses[-1] < losses[0] - 0.05
    # α = 0.5, K = 2: α_k ≤ 0.5·2·1.2/1.4 < 1, never clamped, so the mean stays at α
    assert all(abs((m["alpha_0"] + m["alpha_1"]) / 2 - 0.5) < 1e-6 for m in rows)
    assert result.metrics["samples"] == 4 and result.metrics["alpha_0"] > a0[-1]  # one more step after the last log
    assert result.metrics["final_loss"] == pytest.approx(losses[-1])


def test_run_writes_the_fitted_ratios(trained):
    result, _, out = trained
    saved = json.loads((out / "hma.json").read_text())["0.5"]
    assert saved["boundaries"] == [0, 1, 2] and saved["alpha"] == 0.5 and saved["eps"] == 0.2 and saved["steps"] == 5
    assert saved["alphas"] == [result.metrics["alpha_0"], result.metrics["alpha_1"]]
    assert torch.allclose(hma_alphas(torch.tensor(saved["scores"]), 0.5, 0.2), torch.tensor(saved["alphas"]))
    assert not (out / "model").exists()  # the search evaluates in memory; only the promoted pick is exported


def test_run_fits_each_mean_alpha_with_its_own_prefix(checkpoints, tmp_path):
    log = Recorder()
    cfg = HMAConfig(alphas=(0.2, 0.5), lr=5e-2, epochs=2, batch_size=4)
    result = hma.run(cfg, 2, *checkpoints, ROWS, tmp_path, log, max_length=64, seed=0)
    fits = json.loads((tmp_path / "hma.json").read_text())
    assert set(fits) == {"0.2", "0.5"} and [s for s, _ in log.rows] == [0, 1, 2, 3]
    assert {"a0.2/alpha_0", "a0.5/alpha_1"} <= set(result.metrics)
    for key, fit in fits.items():
        assert sum(fit["alphas"]) / 2 == pytest.approx(float(key), abs=1e-6)  # mean kept (no clamping here)


def test_run_needs_samples(checkpoints, tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        hma.run(HMAConfig(), 2, *checkpoints, [], tmp_path, NullLogger(), max_length=64, seed=0)


def test_select_top_samples_draws_from_the_reward_pool_only():
    rows, rewards = [{"i": i} for i in range(10)], [float((7 * i) % 10) for i in range(10)]  # reward of row i
    picked = hma.select_top_samples(rows, rewards, pool=4, n=3, seed=0)
    top = {i for i in range(10) if rewards[i] >= 6}
    assert len(picked) == 3 and len({r["i"] for r in picked}) == 3 and {r["i"] for r in picked} <= top
    assert picked == hma.select_top_samples(rows, rewards, pool=4, n=3, seed=0)
    draws = {tuple(r["i"] for r in hma.select_top_samples(rows, rewards, 4, 3, seed)) for seed in range(10)}
    assert len(draws) > 1
    assert sorted(r["i"] for r in hma.select_top_samples(rows, rewards, 4, 99, 0)) == sorted(top)  # n > pool: all
    with pytest.raises(ValueError, match="10 rows but 9 rewards"):
        hma.select_top_samples(rows, rewards[:9], 4, 3, 0)
