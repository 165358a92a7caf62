import json
import math
import subprocess
import sys

import pytest
import torch

from alignpipe.merging.average import MergeError, average_state_dicts
from alignpipe.merging.blocks import (
    BlockSpec,
    alpha_for,
    block_index,
    default_boundaries,
    hma_alphas,
    layer_count,
    merge_blocks,
    partwise_spec,
    validate,
)
from tests.conftest import REPO

LAYER_KEYS = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
              "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
              "input_layernorm.weight", "post_attention_layernorm.weight"]


def llama(fill=None, n_layers=4, tied=False, dtype=torch.float32, seed=0):
    """Keys of a Hugging Face Llama with tiny (2, 3) tensors: constant `fill`, or random from `seed`."""
    keys = ["model.embed_tokens.weight"] + [f"model.layers.{i}.{k}" for i in range(n_layers) for k in LAYER_KEYS]
    keys += ["model.norm.weight"] + ([] if tied else ["lm_head.weight"])
    g = torch.Generator().manual_seed(seed)
    make = (lambda: torch.full((2, 3), fill)) if fill is not None else (lambda: torch.randn(2, 3, generator=g))
    return {k: make().to(dtype) for k in keys}


SPEC = BlockSpec(boundaries=(0, 1, 3, 4), alphas=(0.25, 0.5, 0.75), head_alpha=1.0, embed_alpha=0.0)


def test_default_boundaries_follow_the_reference_split():
    assert default_boundaries(26, 3) == (0, 8, 16, 26)  # [0–7], [8–15], [16–25]
    assert default_boundaries(4, 2) == (0, 2, 4)
    assert default_boundaries(4, 3) == (0, 1, 2, 4)  # the last block takes the remainder
    assert default_boundaries(5, 1) == (0, 5)
    with pytest.raises(MergeError, match="cannot split 4 layers into 5 blocks"):
        default_boundaries(4, 5)
    with pytest.raises(MergeError, match="cannot split 4 layers into 0 blocks"):
        default_boundaries(4, 0)


def test_embedding_norm_and_head_rule():
    # per-layer norms go with their layer's block; embeddings with embed_alpha; final norm and lm_head with head_alpha
    assert alpha_for("model.layers.0.input_layernorm.weight", SPEC) == 0.25
    assert alpha_for("model.layers.1.post_attention_layernorm.weight", SPEC) == 0.5
    assert alpha_for("model.layers.2.mlp.down_proj.weight", SPEC) == 0.5
    assert alpha_for("model.layers.3.self_attn.q_proj.weight", SPEC) == 0.75
    assert alpha_for("model.embed_tokens.weight", SPEC) == 0.0
    assert alpha_for("model.norm.weight", SPEC) == 1.0
    assert alpha_for("lm_head.weight", SPEC) == 1.0


def test_block_index_maps_layers_to_blocks_and_leaves_the_rest_to_head_and_embed():
    b = (0, 1, 3, 4)
    assert [block_index(f"model.layers.{i}.mlp.up_proj.weight", b) for i in range(4)] == [0, 1, 1, 2]
    assert block_index("model.layers.2.input_layernorm.weight", b) == 1
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert block_index(key, b) is None
    with pytest.raises(MergeError, match="key 'model.layers.4.mlp.up_proj.weight' is layer 4, beyond"):
        block_index("model.layers.4.mlp.up_proj.weight", b)
    with pytest.raises(MergeError, match="key 'transformer.h.0.attn.weight' is not a Llama weight"):
        block_index("transformer.h.0.attn.weight", b)


def test_unknown_and_out_of_range_keys_are_named():
    with pytest.raises(MergeError, match="key 'transformer.h.0.attn.weight' is not a Llama weight"):
        alpha_for("transformer.h.0.attn.weight", SPEC)
    with pytest.raises(MergeError, match="key 'model.normalizer.weight' is not a Llama weight"):
        alpha_for("model.normalizer.weight", SPEC)
    with pytest.raises(MergeError, match="key 'model.layers.4.mlp.up_proj.weight' is layer 4, beyond"):
        alpha_for("model.layers.4.mlp.up_proj.weight", SPEC)
    extra = {"model.extra.weight": torch.ones(1)}
    with pytest.raises(MergeError, match="key 'model.extra.weight'"):
        merge_blocks(llama(1.0) | extra, llama(0.0) | extra, SPEC)


def test_merge_blocks_by_hand():
    # sft = 10, rl = 2: merged = 2 + 8α, so 4 (α .25), 6 (α .5), 8 (α .75), 10 (head α 1), 2 (embed α 0)
    out = merge_blocks(llama(10.0), llama(2.0), SPEC)
    expected = {0: 4.0, 1: 6.0, 2: 6.0, 3: 8.0}
    for i, v in expected.items():
        for k in LAYER_KEYS:
            assert torch.equal(out[f"model.layers.{i}.{k}"], torch.full((2, 3), v)), (i, k)
    assert torch.equal(out["model.norm.weight"], torch.full((2, 3), 10.0))
    assert torch.equal(out["lm_head.weight"], torch.full((2, 3), 10.0))
    assert torch.equal(out["model.embed_tokens.weight"], torch.full((2, 3), 2.0))


def test_merge_blocks_keeps_the_rlhf_dtype():
    out = merge_blocks(llama(1.0, dtype=torch.bfloat16), llama(0.0, dtype=torch.bfloat16), SPEC)
    assert all(t.dtype == torch.bfloat16 for t in out.values())
    assert out["model.layers.3.mlp.up_proj.weight"][0, 0].item() == 0.75


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("tied", [False, True])
def test_uniform_spec_is_plain_model_averaging(k, tied):
    sft = llama(n_layers=4, tied=tied, dtype=torch.bfloat16, seed=1)
    rl = llama(n_layers=4, tied=tied, dtype=torch.bfloat16, seed=2)
    spec = BlockSpec.uniform(4, k, 0.3)
    assert spec == BlockSpec(default_boundaries(4, k), (0.3,) * k, 0.3, 0.3)
    merged, averaged = merge_blocks(sft, rl, spec), average_state_dicts(sft, rl, 0.3)
    assert merged.keys() == averaged.keys()
    assert all(torch.equal(merged[key], averaged[key]) for key in averaged)  # bitwise


def test_partwise_spec_averages_one_block_and_keeps_the_rest_at_rlhf():
    spec = partwise_spec(26, 3, 0, 0.4)
    assert spec == BlockSpec((0, 8, 16, 26), (0.4, 0.0, 0.0), head_alpha=0.0, embed_alpha=0.0)
    sft, rl = llama(seed=1), llama(seed=2)
    out = merge_blocks(sft, rl, partwise_spec(4, 2, 1, 0.5))  # layers 2, 3 averaged
    for key in rl:
        if key.startswith(("model.layers.2.", "model.layers.3.")):
            assert torch.allclose(out[key], (sft[key] + rl[key]) / 2), key
        else:
            assert torch.equal(out[key], rl[key]), key  # head, embeddings, layers 0–1 stay at θ_rl
    with pytest.raises(MergeError, match="block 3 does not exist: K = 3 blocks are numbered 0..2"):
        partwise_spec(26, 3, 3, 0.4)
    with pytest.raises(MergeError, match="alpha of block 1 is 1.5, outside"):
        partwise_spec(26, 3, 1, 1.5)


@pytest.mark.parametrize(("spec", "message"), [
    (BlockSpec((), (), 0.5, 0.5), r"block boundaries \(\) define no block: need at least \(0, 4\)"),
    (BlockSpec((1, 2, 4), (0.5, 0.5), 0.5, 0.5), r"block boundaries \(1, 2, 4\) must start at layer 0, not 1"),
    (BlockSpec((0, 2, 3), (0.5, 0.5), 0.5, 0.5),
     r"block count does not match the layers: the model has 4 layers but the spec's blocks \(0, 2, 3\) cover 3"),
    (BlockSpec((0, 2, 2, 4), (0.5, 0.5, 0.5), 0.5, 0.5),
     r"block boundaries \(0, 2, 2, 4\) must be strictly increasing: block 1 is \[2, 2\)"),
    (BlockSpec((0, 3, 1, 4), (0.5, 0.5, 0.5), 0.5, 0.5), r"strictly increasing: block 1 is \[3, 1\)"),
    (BlockSpec((0, 2, 4), (0.5,), 0.5, 0.5), r"spec has 2 blocks \(boundaries \(0, 2, 4\)\) but 1 alphas \(0.5,\)"),
    (BlockSpec((0, 2, 4), (0.5, -0.1), 0.5, 0.5), r"alpha of block 1 is -0.1, outside \[0, 1\]"),
    (BlockSpec((0, 2, 4), (math.nan, 0.5), 0.5, 0.5), r"alpha of block 0 is nan, outside \[0, 1\]"),
    (BlockSpec((0, 2, 4), (0.5, 0.5), 1.2, 0.5), r"head_alpha is 1.2, outside \[0, 1\]"),
    (BlockSpec((0, 2, 4), (0.5, 0.5), 0.5, 2.0), r"embed_alpha is 2.0, outside \[0, 1\]"),
])
def test_every_validation_error_names_the_problem(spec, message):
    with pytest.raises(MergeError, match=message):
        validate(spec, 4)
    with pytest.raises(MergeError, match=message):  # merge_blocks validates against the model's layers
        merge_blocks(llama(1.0), llama(0.0), spec)


def test_merge_blocks_checks_compatibility_first():
    rl = llama(0.0)
    rl["lm_head.weight"] = torch.zeros(3, 3)
    with pytest.raises(MergeError, match=r"tensor 'lm_head.weight' has shape \(2, 3\) in SFT but \(3, 3\) in RLHF"):
        merge_blocks(llama(1.0), rl, SPEC)


def test_layer_count():
    assert layer_count(llama(n_layers=4)) == 4
    assert layer_count(llama(n_layers=26, tied=True)) == 26
    assert layer_count(["model.embed_tokens.weight"]) == 0
    gap = [k for k in llama(n_layers=4) if not k.startswith("model.layers.1.")]
    with pytest.raises(MergeError, match=r"has model.layers up to 3 but lacks layer\(s\) \[1\]"):
        layer_count(gap)


@pytest.mark.parametrize("k", [1, 2, 3, 9])
@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_hma_alphas_at_init_equal_alpha(k, alpha):
    scores = torch.full((k,), alpha).logit()  # ±inf at 0 and 1: σ gives 0 and 1
    assert torch.allclose(hma_alphas(scores, alpha), torch.full((k,), alpha), atol=1e-7)


@pytest.mark.parametrize("k", [2, 3, 6, 9])
def test_hma_mean_is_alpha_before_clamping(k):
    # with α = 0.2, α_k ≤ 0.2·K·1.2 / (1.2 + (K − 1)·0.2) < 1, so clamping never binds
    scores = 3 * torch.randn(k, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    a = hma_alphas(scores, 0.2)
    assert (a < 1).all() and (a > 0).all()
    assert abs(a.mean().item() - 0.2) < 1e-15


def test_hma_by_hand_k2():
    # σ(0) = 1/2, σ(log 3) = 3/4; w = σ + 0.2 = (0.7, 0.95), Σw = 1.65; α_k = 0.33·2·w/1.65 = 0.4·w
    scores = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64, requires_grad=True)
    a = hma_alphas(scores, 0.33)
    assert torch.allclose(a, torch.tensor([0.28, 0.38], dtype=torch.float64))
    # ∂α_1/∂s_1 = αK·σ'(s_1)(Σw − w_1)/Σw² = 0.66·0.25·0.95/1.65²
    # ∂α_1/∂s_2 = −αK·w_1·σ'(s_2)/Σw² = −0.66·0.7·0.1875/1.65²   (σ'(s) = σ(1 − σ))
    a[0].backward()
    expected = torch.tensor([0.66 * 0.25 * 0.95, -0.66 * 0.7 * 0.1875], dtype=torch.float64) / 1.65**2
    assert torch.allclose(scores.grad, expected)


def test_hma_gradient_flows_to_the_scores():
    scores = torch.randn(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: hma_alphas(s, 0.2), (scores,))
    (hma_alphas(scores, 0.2) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    assert scores.grad.abs().min() > 0
    scores.grad = None
    hma_alphas(scores, 0.2).sum().backward()  # the mean constraint: Σα_k = Kα whatever the scores
    assert torch.allclose(scores.grad, torch.zeros(3, dtype=torch.float64))


def test_hma_clamps_to_unit_interval():
    # α = 0.9, K = 3, w ≈ (1.2, 0.2, 0.2): α_1 ≈ 0.9·3·1.2/1.6 = 2.025 -> 1; α_2 = α_3 ≈ 0.9·3·0.2/1.6 = 0.3375
    a = hma_alphas(torch.tensor([20.0, -20.0, -20.0]), 0.9)
    assert torch.allclose(a, torch.tensor([1.0, 0.3375, 0.3375]))


def test_hma_errors():
    with pytest.raises(MergeError, match=r"non-empty vector \(K,\), got shape \(2, 2\)"):
        hma_alphas(torch.zeros(2, 2), 0.2)
    with pytest.raises(MergeError, match="alpha must lie in \\[0, 1\\], got 1.5"):
        hma_alphas(torch.zeros(3), 1.5)


def test_block_and_stream_modules_are_pure():
    code = ("import sys, json, alignpipe.merging.blocks, alignpipe.merging.stream; "
            "print(json.dumps([m for m in ('prefect', 'ray', 'mlflow', 'transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(out.stdout) == []
