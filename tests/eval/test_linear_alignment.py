"""Linear Alignment decoding (§5) on the real tiny Llama: the lockstep KV-cached decoder against
from-scratch forwards, plain greedy decoding, one-at-a-time decoding, and EOS.

As in test_generation, the `varied` model unties the tiny model's output head so greedy tokens
depend on the prompt; `says_yes` is the tiny model fine-tuned to answer "yes" and stop.
"""

import copy

import pytest
import torch

from alignpipe.config import LinearAlignmentConfig
from alignpipe.data.chat import render_prompt
from alignpipe.eval.generation import _decode, generate_responses
from alignpipe.eval.linear_alignment import (
    aligned_choice,
    decode_lockstep,
    generate_linear_alignment,
    linear_alignment_generator,
)
from alignpipe.models import load_policy
from alignpipe.rl.linear_alignment import linear_alignment_logits

PRINCIPLE = "Answer briefly."
PROMPTS = ["List 4 fruits, separated by commas.", "Hi", "What is 3 + 4? Answer with the number only.",
           "Write one sentence about rivers that includes the word \"quiet\"."]


@pytest.fixture(scope="module")
def varied(tiny_dir):
    model, tok = load_policy(tiny_dir)
    g = torch.Generator().manual_seed(0)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=g) * 0.5)
    return model, tok


@pytest.fixture(scope="module")
def says_yes(says_yes_dir):
    return load_policy(says_yes_dir)


def la(step_size=2.0, top_p=0.8, keep_default_system=False):
    return LinearAlignmentConfig(principle=PRINCIPLE, step_size=step_size, top_p=top_p, temperature=0.5,
                                 keep_default_system=keep_default_system)


def test_principle_context_replaces_the_default_system_prompt(varied):
    _, tok = varied
    plain, principled = render_prompt(tok, "Hi"), render_prompt(tok, "Hi", system=PRINCIPLE)
    assert plain == tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert "SmolLM" in plain and "SmolLM" not in principled  # the template's default system prompt
    assert principled.startswith(f"<|im_start|>system\n{PRINCIPLE}<|im_end|>") and principled.endswith(plain.split("<|im_end|>\n", 1)[1])
    bare = copy.deepcopy(tok)
    bare.chat_template = None  # a base model's tokenizer: the plain two-turn fallback
    assert render_prompt(bare, "Hi", system=PRINCIPLE) == f"System: {PRINCIPLE}\n{render_prompt(bare, 'Hi')}"


def test_step_size_zero_is_greedy_decoding_of_the_principle_context(varied):
    model, tok = varied
    got = generate_linear_alignment(model, tok, PROMPTS, la(step_size=0.0, top_p=1.0), max_new_tokens=8, batch_size=4)
    want = []
    for p in PROMPTS:
        ids = tok(render_prompt(tok, p, system=PRINCIPLE), add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        want.append(_decode(tok, out[:, ids.size(1):])[0])
    assert got == want and len(set(got)) > 1


def test_a_task_system_message_leads_the_principle_context(varied):
    """With a task's own system message (trust benchmarks send one), step 0 decodes "system + principle"."""
    model, tok = varied
    got = generate_linear_alignment(model, tok, PROMPTS, la(step_size=0.0, top_p=1.0), max_new_tokens=8, batch_size=4,
                                    system="You are terse.")
    want = generate_responses(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, system=f"You are terse.\n\n{PRINCIPLE}")
    assert got == want


def test_keep_default_system_puts_the_principle_after_the_templates_default(varied):
    """keep_default_system: context p is SmolLM2's default system prompt (what context 0 and SFT see) + the principle."""
    model, tok = varied
    lead = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    got = generate_linear_alignment(model, tok, PROMPTS, la(0.0, 1.0, keep_default_system=True), max_new_tokens=8,
                                    batch_size=4)
    want = generate_responses(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, system=f"{lead}\n\n{PRINCIPLE}")
    assert got == want
    assert got != generate_linear_alignment(model, tok, PROMPTS, la(0.0, 1.0), max_new_tokens=8, batch_size=4)
    # a task's own system message still leads, whatever the flag
    task = generate_linear_alignment(model, tok, PROMPTS, la(0.0, 1.0, keep_default_system=True), max_new_tokens=8,
                                     batch_size=4, system="You are terse.")
    assert task == generate_responses(model, tok, PROMPTS, max_new_tokens=8, batch_size=4,
                                      system=f"You are terse.\n\n{PRINCIPLE}")


def test_batched_equals_one_at_a_time(varied):
    model, tok = varied
    batched = generate_linear_alignment(model, tok, PROMPTS, la(), max_new_tokens=8, batch_size=len(PROMPTS))
    single = [generate_linear_alignment(model, tok, [p], la(), max_new_tokens=8)[0] for p in PROMPTS]
    assert batched == single
    # The aligned stream really differs from the principle context alone.
    assert batched != generate_linear_alignment(model, tok, PROMPTS, la(step_size=0.0), max_new_tokens=8)


def test_cached_step_logits_equal_full_forwards_of_both_contexts(varied):
    model, tok = varied
    texts_p = [render_prompt(tok, p, system=PRINCIPLE) for p in PROMPTS]
    texts_0 = [render_prompt(tok, p) for p in PROMPTS]
    seen, rule = [], aligned_choice(la())

    def record(l_p, l_0):
        seen.append((l_p.clone(), l_0.clone()))
        return rule(l_p, l_0)

    new = decode_lockstep(model, tok, texts_p, texts_0, record, max_new_tokens=5)
    assert new.shape == (len(PROMPTS), 5)
    with torch.inference_mode():
        for i in range(len(PROMPTS)):
            for step, (l_p, l_0) in enumerate(seen):
                for text, cached in ((texts_p[i], l_p), (texts_0[i], l_0)):
                    ids = tok(text, add_special_tokens=False)["input_ids"] + new[i, :step].tolist()
                    full = model(input_ids=torch.tensor([ids])).logits[0, -1]
                    torch.testing.assert_close(cached[i], full, atol=1e-4, rtol=1e-4)
                want = linear_alignment_logits(l_p[i : i + 1], l_0[i : i + 1], 2.0, 0.8, 0.5).argmax(-1)
                assert new[i, step] == want


def test_rows_stop_at_eos_and_decoding_stops_when_all_have(says_yes):
    model, tok = says_yes
    texts = [render_prompt(tok, p) for p in ("Is it raining?", "Is the sky blue today?")]
    new = decode_lockstep(model, tok, texts, texts, aligned_choice(la(step_size=0.0)), max_new_tokens=20)
    yes = tok("yes", add_special_tokens=False)["input_ids"]
    assert new.size(1) == len(yes) + 1  # stopped as soon as both rows had emitted EOS
    assert (new[:, -1] == tok.eos_token_id).all()
    hook = linear_alignment_generator(la(step_size=0.0))
    assert hook(model, tok, ["Is it raining?", "Is the sky blue today?"], max_new_tokens=20, batch_size=2) == ["yes", "yes"]


def test_sampling_is_seeded_and_leaves_callers_rng_alone(varied):
    model, tok = varied
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    a = generate_linear_alignment(model, tok, PROMPTS, la(top_p=1.0), max_new_tokens=6, temperature=1.0, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert a == generate_linear_alignment(model, tok, PROMPTS, la(top_p=1.0), max_new_tokens=6, temperature=1.0, seed=3)
    assert generate_linear_alignment(model, tok, [], la(), max_new_tokens=4) == []
