"""Tests for alignpipe.eval.generation on the random-init tiny Llama (real SmolLM2 tokenizer).

The tiny model ties its input and output embeddings, so greedy decoding just repeats the last
prompt token ("\\n") and every greedy response strips to "". The `varied` fixture unties it with
a seeded random output head, so greedy outputs depend on the prompt and batching bugs show.
"""

import pytest
import torch

from alignpipe.eval.generation import _decode, generate_responses, length_sorted_batches
from alignpipe.models import load_policy, resolve_model
from tests.conftest import MODEL_CACHE

PROMPTS = [
    "Write one sentence about cats using exactly 7 words.",
    "Hi",
    "List 4 fruits, separated by commas.",
    "What is 3 + 4? Answer with the number only.",
    "Write one sentence about rivers that includes the word \"quiet\".",
]


@pytest.fixture(scope="module")
def varied():
    model, tok = load_policy(resolve_model("tiny", MODEL_CACHE))
    g = torch.Generator().manual_seed(0)
    head = torch.randn(model.lm_head.weight.shape, generator=g) * 0.5
    model.lm_head.weight = torch.nn.Parameter(head)  # unties it from the input embedding
    return model, tok


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([5, 1, 4, 1, 3], batch_size=2)
    assert batches == [[1, 3], [4, 2], [0]]
    with pytest.raises(ValueError):
        length_sorted_batches([1], batch_size=0)


def test_decode_stops_at_first_eos(varied):
    _, tok = varied
    hello = tok(" hello world", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([hello + [tok.eos_token_id] + hello, hello + [tok.eos_token_id] * (len(hello) + 1)])
    assert _decode(tok, ids) == ["hello world", "hello world"]


def test_count_order_and_greedy_determinism(varied):
    model, tok = varied
    a = generate_responses(model, tok, PROMPTS, max_new_tokens=5, batch_size=3)
    b = generate_responses(model, tok, PROMPTS, max_new_tokens=5, batch_size=3)
    assert len(a) == len(PROMPTS) and all(isinstance(r, str) for r in a)
    assert a == b
    assert len(set(a)) > 1  # the untied head really does make outputs prompt-dependent
    # Order: reversing the prompts reverses the responses.
    assert generate_responses(model, tok, PROMPTS[::-1], max_new_tokens=5, batch_size=3) == a[::-1]


def test_batched_greedy_equals_one_at_a_time(varied):
    model, tok = varied
    batched = generate_responses(model, tok, PROMPTS, max_new_tokens=8, batch_size=len(PROMPTS))
    single = [generate_responses(model, tok, [p], max_new_tokens=8)[0] for p in PROMPTS]
    assert batched == single


def test_sampling_is_seeded(varied):
    model, tok = varied
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    s1 = generate_responses(model, tok, PROMPTS, max_new_tokens=4, temperature=1.0, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)  # callers' RNG is left alone
    s2 = generate_responses(model, tok, PROMPTS, max_new_tokens=4, temperature=1.0, seed=7)
    s3 = generate_responses(model, tok, PROMPTS, max_new_tokens=4, temperature=1.0, seed=8)
    assert s1 == s2
    assert s1 != s3


def test_max_new_tokens_respected_and_padding_side_restored(varied, monkeypatch):
    model, tok = varied
    new_tokens, sides = [], []
    real_generate = model.generate

    def spy(**kwargs):
        sides.append(tok.padding_side)
        out = real_generate(**kwargs)
        new_tokens.append(out.size(1) - kwargs["input_ids"].size(1))
        return out

    monkeypatch.setattr(model, "generate", spy)
    generate_responses(model, tok, PROMPTS, max_new_tokens=3, batch_size=2)
    assert len(new_tokens) == 3 and max(new_tokens) <= 3
    assert sides == ["left"] * 3
    assert tok.padding_side == "right"


def test_rejects_negative_temperature(varied):
    model, tok = varied
    with pytest.raises(ValueError, match="temperature"):
        generate_responses(model, tok, PROMPTS[:1], max_new_tokens=2, temperature=-1.0)
    assert generate_responses(model, tok, [], max_new_tokens=2) == []


def test_system_prompt_is_rendered_into_the_prompt(varied):
    from alignpipe.data.chat import render_prompt
    from alignpipe.eval.generation import _generate_batch

    model, tok = varied
    system = "You are a pirate. Answer in pirate speak."
    want = _generate_batch(model, tok, [render_prompt(tok, PROMPTS[2], system=system)], 6, {"do_sample": False})
    assert generate_responses(model, tok, [PROMPTS[2]], max_new_tokens=6, system=system) == want
    assert generate_responses(model, tok, [PROMPTS[2]], max_new_tokens=6) != want  # the default system prompt differs
