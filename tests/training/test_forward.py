import torch

from alignpipe.data.chat import collate, encode
from alignpipe.losses.logprobs import masked_mean, sequence_logps, shifted, token_logps
from alignpipe.models import load_policy
from alignpipe.training.forward import response_sequence_logps, response_token_logps


def full_sequence_logps(model, batch):
    """The plain path the fast one must equal: full logits, then summed response log-probs."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_logps(*shifted(logits, batch["labels"]))


def _batch(tok):
    rows = [("What is 2 + 2?", "4"), ("List 3 colors, separated by commas.", "Red, green, blue."), ("Hi", "Hello there, friend!")]
    return collate([encode(tok, p, r, 64) for p, r in rows], tok.pad_token_id)


def test_head_on_response_positions_equals_full_forward(tiny_dir):
    model, tok = load_policy(tiny_dir)
    batch = _batch(tok)
    with torch.inference_mode():
        fast, full = response_sequence_logps(model, batch), full_sequence_logps(model, batch)
        logps, rows = response_token_logps(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lg, tg, mask = shifted(logits, batch["labels"])
    assert torch.allclose(fast, full, atol=1e-4)
    assert torch.isclose(logps.mean(), masked_mean(token_logps(lg, tg), mask), atol=1e-5)  # the SFT loss
    assert rows.tolist() == sorted(rows.tolist()) and set(rows.tolist()) == {0, 1, 2}


def test_gradients_match_full_forward(tiny_dir):
    model, tok = load_policy(tiny_dir)
    batch = _batch(tok)
    response_sequence_logps(model, batch).sum().backward()
    fast = model.model.layers[1].mlp.down_proj.weight.grad.clone()
    model.zero_grad()
    full_sequence_logps(model, batch).sum().backward()
    assert torch.allclose(fast, model.model.layers[1].mlp.down_proj.weight.grad, atol=1e-5)


def test_pairs_sharing_their_prompt_equal_separate_sequences(tiny_dir):
    from alignpipe.training.dpo import pair_logps, shared_prompt_batch

    model, tok = load_policy(tiny_dir)
    long_prompt = " ".join(str(i) for i in range(80))  # truncated from the left by a different amount per response
    texts = [("What is 2 + 2?", "4", "Five, I think."), ("List 3 colors.", "Red, green, blue.", "Red"),
             (long_prompt, "ok", "a much longer answer that leaves less room for the prompt")]
    pairs = [(encode(tok, p, c, 64), encode(tok, p, r, 64)) for p, c, r in texts]
    assert pairs[2][0].input_ids[:10] != pairs[2][1].input_ids[:10]  # nothing to share in the last pair
    batch = shared_prompt_batch(pairs, tok.pad_token_id, model.dtype)
    shared = [c.labels.count(-100) - 1 for c, _ in pairs[:2]] + [0]
    assert batch["input_ids"].shape == (3, max(len(c.input_ids) + len(r.input_ids) - s for (c, r), s in zip(pairs, shared, strict=True)))
    with torch.inference_mode():
        chosen, rejected = pair_logps(model, pairs, tok.pad_token_id)
        separate = response_sequence_logps(model, collate([c for c, _ in pairs] + [r for _, r in pairs], tok.pad_token_id))
    assert torch.allclose(torch.cat([chosen, rejected]), separate, rtol=1e-6, atol=1e-5)
