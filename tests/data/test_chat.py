import copy

from alignpipe.data.chat import IGNORE, collate, default_system_prompt, encode, render_prompt
from alignpipe.models import load_tokenizer


def test_prompt_is_masked_and_response_ends_with_eos(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    e = encode(tok, "What is 2 + 2?", "4", max_length=128)
    n_prompt = len(tok(render_prompt(tok, "What is 2 + 2?"), add_special_tokens=False)["input_ids"])
    assert e.labels[:n_prompt] == [IGNORE] * n_prompt
    assert e.labels[n_prompt:] == e.input_ids[n_prompt:]
    assert e.input_ids[-1] == tok.eos_token_id and not e.truncated
    assert tok.decode(e.input_ids[n_prompt:-1]) == "4"
    assert render_prompt(tok, "hi").endswith("<|im_start|>assistant\n")


def test_truncation_is_counted_and_keeps_the_response_start(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    e = encode(tok, "word " * 100, "yes " * 100, max_length=40)
    assert e.truncated and len(e.input_ids) == 40 == len(e.labels)
    assert any(label != IGNORE for label in e.labels)  # some response tokens survive


def test_collate_right_pads(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    a, b = encode(tok, "a", "short", 64), encode(tok, "a much longer prompt here", "and a longer response", 64)
    batch = collate([a, b], tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(b.input_ids))
    assert batch["attention_mask"][0].tolist() == [1] * len(a.input_ids) + [0] * (len(b.input_ids) - len(a.input_ids))
    assert (batch["labels"][0, len(a.input_ids):] == IGNORE).all()


def test_default_system_prompt_is_what_the_template_adds_when_none_is_given(tiny_dir):
    tok = load_tokenizer(tiny_dir)  # SmolLM2's tokenizer and chat template
    assert default_system_prompt(tok) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    plain = copy.deepcopy(tok)
    plain.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    assert default_system_prompt(plain) is None  # a template that adds no system message
    plain.chat_template = None  # a base model: the two-turn fallback has no default either
    assert default_system_prompt(plain) is None
