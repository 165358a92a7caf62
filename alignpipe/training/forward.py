"""Forward passes that compute only the logits a loss needs.

A causal LM's head (hidden -> vocabulary) costs about a fifth of SmolLM2-135M's FLOPs per token
and its full-vocabulary log-softmax dominates activation memory. SFT and DPO need log-probs of
response tokens only, so the head runs on those positions alone (prompts are most of each
sequence in the built-in world). This relies on the model's logits being `lm_head(hidden)`; models
that post-process logits (final soft-capping, logit scaling) take the plain full forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignpipe.losses.logprobs import token_logps


def _head_only_applies(model) -> bool:
    cfg = model.config
    return not (getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None)) and \
        model.get_output_embeddings() is not None


def response_token_logps(model, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Log-prob of every response token in the batch. -> (logps (n,), sequence of each token (n,)).

    batch: input_ids, attention_mask, labels (b, t), labels -100 on prompt and padding; a token's
    sequence is its row. Rows may instead hold several sequences (dpo.shared_prompt_batch): then the
    batch also has position_ids (b, t), `sequence` (b, t), the sequence each label belongs to, and
    attention_mask is the additive (b, 1, t, t) mask that keeps the sequences apart.
    """
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    sequence = batch["sequence"][:, 1:][keep] if "sequence" in batch else keep.nonzero()[:, 0]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    if not _head_only_applies(model):
        logits = model(**inputs).logits
        return token_logps(logits[:, :-1], targets)[keep], sequence
    hidden = model.get_decoder()(**inputs).last_hidden_state
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])  # (n, v): response positions only
    return token_logps(logits.unsqueeze(0), targets[keep].unsqueeze(0)).squeeze(0), sequence


def response_sequence_logps(model, batch: dict[str, Tensor], num_sequences: int | None = None) -> Tensor:
    """Summed response log-prob per sequence (num_sequences,), by default one per row (b,);
    equal to sequence_logps over the full logits."""
    logps, sequence = response_token_logps(model, batch)
    n = batch["input_ids"].size(0) if num_sequences is None else num_sequences
    return torch.zeros(n, dtype=logps.dtype, device=logps.device).index_add(0, sequence, logps)
