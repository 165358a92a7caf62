"""Anthropic HH-RLHF preference pairs -> {prompt, chosen, rejected, subset} rows.

Each HH row holds two whole dialogues, `"\\n\\nHuman: …\\n\\nAssistant: …"`, that share every turn but
the final Assistant one. We split at the last `"\\n\\nAssistant:"`: the shared history becomes the
prompt and the two final turns the responses.

Simplification: our chat encoding (`chat.encode`) takes one user message, so a multi-turn history is
flattened into a single user message of `"Human: …"` / `"Assistant: …"` lines (`format_prompt`)
rather than rendered as alternating chat-template turns. The model still sees the whole
conversation, but the template's role tokens mark only the outer user turn.

Rows that cannot form a pair are skipped and counted, never dropped silently: the two dialogues
differ before the last Assistant turn (a handful of HH rows, e.g. a response that itself contains a
made-up `"\\n\\nAssistant:"` turn), the prompt or a response is empty, or the two responses are
identical (no preference to learn or measure).
"""

from __future__ import annotations

import re
from pathlib import Path

from alignpipe.data.sources import load_rows

_ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_SPLITS = ("train", "test")  # upstream file names: <tranche>/train.jsonl.gz, or our <tranche>_test.jsonl.gz


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(history, chosen_response, rejected_response), or None if the two do not share a history.

    history is the dialogue before the last "\\n\\nAssistant:" (raw HH text, markers kept); the
    responses are the text after it, stripped. None when either string lacks the marker or the two
    histories differ.
    """
    i, j = chosen.rfind(_ASSISTANT), rejected.rfind(_ASSISTANT)
    if i < 0 or j < 0 or chosen[:i] != rejected[:j]:
        return None
    return chosen[:i], chosen[i + len(_ASSISTANT):].strip(), rejected[j + len(_ASSISTANT):].strip()


def format_prompt(history: str) -> str:
    """HH dialogue history -> one user message (see the module docstring for why).

    A single Human turn becomes just its text; several turns become "Human: …" / "Assistant: …"
    lines, one per turn, ending with the last Human turn. Text before the first marker (none in the
    HH files) is kept as a leading line.
    """
    parts = _TURN.split(history)  # [lead, role, text, role, text, ...]
    lead = parts[0].strip()
    turns = [(role, text.strip()) for role, text in zip(parts[1::2], parts[2::2], strict=True)]
    if not lead and len(turns) == 1 and turns[0][0] == "Human":
        return turns[0][1]
    if not turns:
        return lead
    return "\n".join(([lead] if lead else []) + [f"{role}: {text}" for role, text in turns])


def _subset_name(path: str | Path) -> str:
    """The HH tranche a file holds: "helpful-base" for …/helpful-base_test.jsonl.gz or …/helpful-base/test.jsonl.gz."""
    p = Path(path)
    stem = p.name.split(".")[0]
    if stem in _SPLITS:
        return p.parent.name
    base, sep, split = stem.rpartition("_")
    return base if sep and split in _SPLITS else stem


def load_hh_pairs(path: str | Path, limit: int | None = None) -> tuple[list[dict], int]:
    """(rows, skipped): rows {prompt, chosen, rejected, subset} from an HH-RLHF .jsonl(.gz) file.

    `limit` caps the raw rows read (before skipping). skipped counts rows that formed no pair
    (module docstring), for the caller to log. A malformed row (bad JSON, missing or empty
    chosen/rejected) raises DataError naming the file and row.
    """
    subset = _subset_name(path)
    rows, skipped = [], 0
    for raw in load_rows(str(path), ("chosen", "rejected"), limit=limit):
        split = split_dialogue(raw["chosen"], raw["rejected"])
        if split is None:
            skipped += 1
            continue
        history, chosen, rejected = split
        prompt = format_prompt(history)
        if not (prompt and chosen and rejected) or chosen == rejected:
            skipped += 1
            continue
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset})
    return rows, skipped
