"""Linear Alignment decoding (Gao et al. 2024, ALGORITHMS §5): two contexts, one aligned token stream.

Each prompt is rendered twice: exactly as training and evaluation render it (`render_prompt`, context 0;
for SmolLM2 that includes the template's default system prompt) and with the principle in the system
message (context p). With `keep_default_system` (the default) p's system message is the default one
followed by the principle, so l_p − l_0 is the principle's effect alone; without it the principle
replaces the default, and p also loses a prompt the SFT policy always trained with. On 400 fresh
prompts of the quickstart world (bench/tune_irft_la.py la, step 2, SFT seeds 0–3) keeping it gave
+0.050 / +0.047 / +0.009 / −0.029 gold over the plain policy (mean +0.019), replacing it +0.057 /
+0.024 / −0.021 / −0.021 (mean +0.010): better on average, and still only as good as the principle is
for the policy at hand.

Both contexts advance in lockstep: every step runs one forward on the newest token of each, combines
their last logits with `rl.linear_alignment.linear_alignment_logits`, and appends the chosen token to both.

Choices: the two contexts share one left-padded batch of 2b rows, so "two KV caches in lockstep"
is one cache and one forward per token (same numbers, half the calls). Greedy (argmax of l̃) by
default; with temperature > 0 the token is sampled from softmax(l̃ / temperature), l̃ already
restricted to the nucleus. A row stops at EOS; decoding stops when every row has.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from alignpipe.config import LinearAlignmentConfig
from alignpipe.data.chat import default_system_prompt, render_prompt
from alignpipe.eval.generation import _cuda_devices, _decode, length_sorted_batches
from alignpipe.rl.linear_alignment import linear_alignment_logits

# choose(l_p, l_0) -> next token ids: l_p, l_0 (b, v) logits of the two contexts -> (b,) long
Choose = Callable[[Tensor, Tensor], Tensor]


@torch.inference_mode()
def decode_lockstep(model, tokenizer, texts_p: list[str], texts_0: list[str], choose: Choose,
                    *, max_new_tokens: int) -> Tensor:
    """Decode b rows from two contexts each, one token per step for both. -> new ids (b, t_new ≤ max_new_tokens).

    Each context is tokenised without special tokens and left-padded, so every row's last real
    token sits at the right edge; position_ids count real tokens only, so padding moves nothing.
    A row that has emitted EOS keeps receiving EOS (cut again by `_decode`).
    """
    b, eos = len(texts_p), tokenizer.eos_token_id
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts_p + texts_0, padding=True, add_special_tokens=False, return_tensors="pt")
    finally:
        tokenizer.padding_side = saved_side
    device = next(model.parameters()).device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache, new, done = None, [], torch.zeros(b, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)  # the head on the last position only, like generate()
        cache, last = out.past_key_values, out.logits[:, -1]
        token = choose(last[:b], last[b:]).masked_fill(done, eos)
        new.append(token)
        done |= token == eos
        if done.all():
            break
        ids = token.repeat(2).unsqueeze(1)  # the same token goes to both contexts
        positions = positions[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones(2 * b, 1)], dim=1)
    return torch.stack(new, dim=1) if new else torch.empty(b, 0, dtype=torch.long, device=device)


def aligned_choice(cfg: LinearAlignmentConfig, temperature: float = 0.0) -> Choose:
    """The Linear Alignment rule: argmax of l̃ (temperature 0) or a sample of softmax(l̃ / temperature)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")

    def choose(l_p: Tensor, l_0: Tensor) -> Tensor:
        aligned = linear_alignment_logits(l_p, l_0, cfg.step_size, cfg.top_p, cfg.temperature)
        if temperature == 0:
            return aligned.argmax(-1)
        return torch.multinomial(torch.softmax(aligned / temperature, dim=-1), 1).squeeze(1)

    return choose


def generate_linear_alignment(
    model, tokenizer, prompts: list[str], cfg: LinearAlignmentConfig, *, max_new_tokens: int,
    temperature: float = 0.0, batch_size: int = 16, seed: int = 0, system: str | None = None,
) -> list[str]:
    """Linear-Alignment responses to user prompts, in the order of `prompts`.

    Same contract as `generation.generate_responses` (batched by prompt length, decoded without
    special tokens and stripped, cut at EOS, sampling seeded without touching callers' RNG), at
    about twice its cost. The model should be in eval mode. A task's own `system` message (e.g. a
    trust benchmark's) is the unprincipled context's system message; the principled context gets
    the same message followed by the principle.
    """
    lead = system if system is not None or not cfg.keep_default_system else default_system_prompt(tokenizer)
    principled = cfg.principle if lead is None else f"{lead}\n\n{cfg.principle}"
    texts_p = [render_prompt(tokenizer, p, system=principled) for p in prompts]
    texts_0 = [render_prompt(tokenizer, p, system=system) for p in prompts]
    lengths = [len(ids) for ids in tokenizer(texts_p, add_special_tokens=False)["input_ids"]] if prompts else []
    choose = aligned_choice(cfg, temperature)
    responses: list[str] = [""] * len(prompts)
    with torch.random.fork_rng(devices=_cuda_devices(model)):
        torch.manual_seed(seed)
        for batch in length_sorted_batches(lengths, batch_size):
            new = decode_lockstep(model, tokenizer, [texts_p[i] for i in batch], [texts_0[i] for i in batch],
                                  choose, max_new_tokens=max_new_tokens)
            for i, text in zip(batch, _decode(tokenizer, new), strict=True):
                responses[i] = text
    return responses


def linear_alignment_generator(cfg: LinearAlignmentConfig) -> Callable[..., list[str]]:
    """A drop-in for `generate_responses(model, tokenizer, prompts, *, max_new_tokens, temperature,
    batch_size, seed, system)` that decodes with Linear Alignment under `cfg` (for evaluation's `generate`)."""
    return partial(generate_linear_alignment, cfg=cfg)
