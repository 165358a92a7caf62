"""Chat-template rendering and tokenisation of (prompt, response) examples.

The prompt is rendered with the tokenizer's chat template (generation prompt included); the
response is tokenised separately and followed by the EOS token, so the boundary between prompt and
response never depends on how the template's text happens to merge into tokens. Labels are -100
on prompt tokens (response-only loss, ALGORITHMS §1). Training and generation use the same
rendering, so a model is sampled exactly as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE = -100
# Used only when a tokenizer has no chat template (base models): a plain two-turn format.
_FALLBACK = "User: {prompt}\nAssistant: "


def render_prompt(tokenizer, prompt: str, system: str | None = None) -> str:
    """The text a model sees before its response: the chat template with the generation prompt.

    `system`, when given, is sent as the system message (SmolLM2's template then drops its default
    system prompt); None renders exactly what training and evaluation use.
    """
    messages = [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = _FALLBACK.format(prompt=prompt)
    return text if system is None else f"System: {system}\n{text}"


def default_system_prompt(tokenizer) -> str | None:
    """The system message the chat template adds when none is given (SmolLM2's "You are a helpful AI
    assistant named SmolLM, …"), found by rendering a marker in its place; None when the template adds none."""
    marker = "\x1eSYSTEM\x1e"
    head, found, tail = render_prompt(tokenizer, "", system=marker).partition(marker)
    plain = render_prompt(tokenizer, "")
    if not found or len(plain) <= len(head) + len(tail) or not (plain.startswith(head) and plain.endswith(tail)):
        return None
    return plain[len(head) : len(plain) - len(tail)]


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: input_ids and labels are the same length; `truncated` counts cuts."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def response_tokens(self) -> int:
        """The tokens the loss is taken on (labels not masked): the response and its EOS."""
        return sum(x != IGNORE for x in self.labels)


def encode(tokenizer, prompt: str, response: str, max_length: int) -> Encoded:
    """Tokenise prompt (template) + response + EOS; labels mask the prompt.

    Over-long examples are truncated, never dropped (§2): the prompt loses tokens from its left
    (keeping the instruction's end and the generation prompt), then the response from its right.
    """
    p = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = len(p) + len(r) > max_length
    if truncated:
        keep_prompt = max(max_length // 2, max_length - len(r))
        p = p[-keep_prompt:]
        r = r[: max_length - len(p)]
    return Encoded(p + r, [IGNORE] * len(p) + r, truncated)


def collate(examples: list[Encoded], pad_id: int, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Right-pad a batch onto `device`. -> input_ids, labels, attention_mask, each (b, t_max)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}
