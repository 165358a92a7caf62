"""Multiple-choice knowledge probes scored by log-likelihood, as lm-evaluation-harness's `acc`.

Probes measure what the pretrained model knows, so contexts are plain text, never the chat
template. Context and continuation are tokenised separately and their ids concatenated (as
lm-eval does), so an option is always scored on the same tokens whatever the context ends with.
Simplified from lm-eval: no left-truncation to the model's context window (probes are short),
and each (context, option) pair gets its own forward pass instead of sharing the context's — except
the tokens that every context starts with (a few-shot primer), whose keys and values are computed
once and reused by every batch.
"""

from __future__ import annotations

import copy

import torch

from alignpipe.data.chat import IGNORE, Encoded, collate
from alignpipe.eval.generation import length_sorted_batches
from alignpipe.losses.logprobs import sequence_logps, shifted


def _encode_pair(tokenizer, context: str, option: str) -> Encoded:
    """ids = context ids + option ids; labels are IGNORE on the context, the option ids after it.

    Trailing whitespace of the context moves to the option (lm-eval's convention) so that
    " Paris" is scored as the space-prefixed word the tokenizer would produce in running text.
    An empty context is replaced by the BOS (else EOS) token: the first option token needs a
    position to be predicted from.
    """
    stripped = context.rstrip()
    option = context[len(stripped) :] + option
    ctx = tokenizer(stripped, add_special_tokens=False)["input_ids"]
    if not ctx:
        bos = tokenizer.bos_token_id
        ctx = [bos if bos is not None else tokenizer.eos_token_id]
    cont = tokenizer(option, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError(f"option {option!r} tokenises to nothing; it cannot be scored")
    return Encoded(ctx + cont, [IGNORE] * len(ctx) + cont, truncated=False)


MIN_SHARED = 16  # shorter common prefixes are recomputed per pair: a cache copy costs more than they save


def _shared_length(encoded: list[Encoded]) -> int:
    """Length of the token prefix every pair shares, within the context (labels IGNORE) and leaving
    each pair at least two tokens of its own; 0 when shorter than MIN_SHARED."""
    if len(encoded) < 2:
        return 0
    context = [next((i for i, x in enumerate(e.labels) if x != IGNORE), len(e.labels)) for e in encoded]
    n = min(min(len(e.input_ids) - 2, c) for e, c in zip(encoded, context, strict=True))
    first = encoded[0].input_ids
    for e in encoded:
        n = next((i for i in range(n) if e.input_ids[i] != first[i]), n)
    return n if n >= MIN_SHARED else 0


def _pair_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
    """Summed option log-prob for each (context, option), batched by length and right-padded.

    Per batch: input_ids (b, t) -> logits (b, t, v); logits[:, i] predicts ids[:, i + 1]. When every
    pair starts with the same context tokens (a few-shot primer), their key/value cache (and the
    logits of the last shared token, which predict the first token after it) are computed once; each
    batch then runs only the tokens after them, on a copy of the cache repeated to the batch size.
    """
    encoded = [_encode_pair(tokenizer, c, o) for c, o in pairs]
    device = next(model.parameters()).device
    scores = [0.0] * len(encoded)
    n = _shared_length(encoded)
    with torch.inference_mode():
        if n:
            out = model(input_ids=torch.tensor([encoded[0].input_ids[:n]], device=device), use_cache=True)
            cache, last = out.past_key_values, out.logits[:, -1:]
        rest = [Encoded(e.input_ids[n:], e.labels[n:], e.truncated) for e in encoded] if n else encoded
        for batch in length_sorted_batches([len(e.input_ids) for e in rest], batch_size):
            b = collate([rest[i] for i in batch], tokenizer.pad_token_id)
            ids, mask, labels = b["input_ids"].to(device), b["attention_mask"].to(device), b["labels"].to(device)
            if n:
                past = copy.deepcopy(cache)
                past.batch_repeat_interleave(len(batch))
                mask = torch.cat([mask.new_ones(len(batch), n), mask], dim=1)
                logits = model(input_ids=ids, attention_mask=mask, past_key_values=past).logits
                # The shared tokens' last logits predict the first token after them: put them in front.
                logits = torch.cat([last.expand(len(batch), -1, -1), logits], dim=1)
                labels = torch.cat([labels.new_full((len(batch), 1), IGNORE), labels], dim=1)
            else:
                logits = model(input_ids=ids, attention_mask=mask).logits
            # Right padding: pads only follow real tokens, and their labels are IGNORE, so they add 0.
            logps = sequence_logps(*shifted(logits, labels))
            for i, lp in zip(batch, logps.tolist(), strict=True):
                scores[i] = lp
    return scores


def option_logprobs(model, tokenizer, context: str, options: list[str]) -> list[float]:
    """Summed log-prob of each option's tokens given the plain-text `context` (no chat template)."""
    return _pair_logprobs(model, tokenizer, [(context, o) for o in options], batch_size=len(options) or 1)


def _check_probe(row: dict, k: int) -> None:
    """Raise ValueError naming the row unless it has a question and at least one option."""
    if not isinstance(row.get("question"), str) or not row.get("options"):
        raise ValueError(f"probe row {row.get('id', k)!r} needs a 'question' string and a non-empty 'options' list")


def score_probes(model, tokenizer, probes: list[dict], batch_size: int = 32) -> list[int]:
    """Predicted option index per probe row = argmax of summed option log-likelihood (lm-eval's `acc`).

    Rows are `world.make_probes` rows ({"question", "options", ...}). All (question, option) pairs
    are scored together in batches of `batch_size`, right-padded. Ties go to the lowest index.
    A context prefix that every question shares (a few-shot primer) is computed once (see _pair_logprobs).
    """
    for k, row in enumerate(probes):
        _check_probe(row, k)
    pairs = [(p["question"], o) for p in probes for o in p["options"]]
    flat = _pair_logprobs(model, tokenizer, pairs, batch_size)
    predictions, start = [], 0
    for p in probes:
        scores = flat[start : start + len(p["options"])]
        predictions.append(max(range(len(scores)), key=lambda k: (scores[k], -k)))
        start += len(scores)
    return predictions
