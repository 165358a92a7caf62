"""HH-RLHF adapter: dialogue splitting and prompt flattening by hand, then the real helpful-base file."""

import gzip
import json

import pytest

from alignpipe.data.hh_rlhf import format_prompt, load_hh_pairs, split_dialogue
from alignpipe.data.sources import DataError
from tests.conftest import SHARED_DATA

HELPFUL_BASE = SHARED_DATA / "hh_rlhf" / "helpful-base_test.jsonl.gz"

SINGLE_C = "\n\nHuman: What is 2+2?\n\nAssistant: 4, of course."
SINGLE_R = "\n\nHuman: What is 2+2?\n\nAssistant:  5 "
MULTI_HISTORY = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Name a fruit."


def test_split_single_turn():
    assert split_dialogue(SINGLE_C, SINGLE_R) == ("\n\nHuman: What is 2+2?", "4, of course.", "5")


def test_split_multi_turn_uses_the_last_assistant_turn():
    history, chosen, rejected = split_dialogue(MULTI_HISTORY + "\n\nAssistant: Apple.", MULTI_HISTORY + "\n\nAssistant: No.")
    assert (history, chosen, rejected) == (MULTI_HISTORY, "Apple.", "No.")


def test_split_differing_prefix_or_no_assistant_turn_is_none():
    assert split_dialogue(SINGLE_C, "\n\nHuman: What is 3+3?\n\nAssistant: 6") is None
    # a response that invents a further turn moves the last marker: the histories no longer match
    invented = SINGLE_R + "\n\nHuman: really?\n\nAssistant: yes"
    assert split_dialogue(SINGLE_C, invented) is None
    assert split_dialogue("\n\nHuman: hi", "\n\nHuman: hi") is None


def test_format_prompt():
    assert format_prompt("\n\nHuman: What is 2+2?  ") == "What is 2+2?"
    assert format_prompt(MULTI_HISTORY) == "Human: Hi there\nAssistant: Hello! How can I help?\nHuman: Name a fruit."
    # blank lines inside a turn stay inside it; only "\n\nHuman:" / "\n\nAssistant:" start a turn
    assert format_prompt("\n\nHuman: line one\n\nline two") == "line one\n\nline two"
    assert format_prompt("no markers at all") == "no markers at all"


def _write(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_load_counts_skips_and_names_subset(tmp_path):
    p = tmp_path / "harmless-base_train.jsonl.gz"
    _write(p, [
        {"chosen": SINGLE_C, "rejected": SINGLE_R},
        {"chosen": SINGLE_C, "rejected": "\n\nHuman: Other?\n\nAssistant: x"},  # prefixes differ
        {"chosen": SINGLE_C, "rejected": "\n\nHuman: What is 2+2?\n\nAssistant:   "},  # empty response
        {"chosen": SINGLE_C, "rejected": SINGLE_C},  # identical responses: no preference
    ])
    rows, skipped = load_hh_pairs(p)
    assert rows == [{"prompt": "What is 2+2?", "chosen": "4, of course.", "rejected": "5", "subset": "harmless-base"}]
    assert skipped == 3
    assert load_hh_pairs(p, limit=1) == (rows, 0)
    upstream = tmp_path / "helpful-online" / "test.jsonl.gz"  # anthropics/hh-rlhf's own layout
    upstream.parent.mkdir()
    _write(upstream, [{"chosen": SINGLE_C, "rejected": SINGLE_R}])
    assert load_hh_pairs(upstream)[0][0]["subset"] == "helpful-online"


def test_malformed_rows_name_file_and_row(tmp_path):
    p = tmp_path / "bad_test.jsonl.gz"
    _write(p, [{"chosen": SINGLE_C, "rejected": SINGLE_R}, {"chosen": SINGLE_C}])
    with pytest.raises(DataError, match=r"bad_test.jsonl.gz row 1: field 'rejected' .* is missing"):
        load_hh_pairs(p)
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"chosen": SINGLE_C, "rejected": SINGLE_R}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad_test.jsonl.gz row 1 \(line 2\): not valid JSON"):
        load_hh_pairs(p)


@pytest.mark.skipif(not HELPFUL_BASE.is_file(), reason=f"shared data absent: {HELPFUL_BASE}")
def test_real_helpful_base_first_200_rows():
    rows, skipped = load_hh_pairs(HELPFUL_BASE, limit=200)
    # Rows 120 (empty rejected response) and 168 (the rejected response invents a further
    # "\n\nAssistant:" turn) form no pair; the count comes back instead of vanishing.
    assert skipped == 2
    assert len(rows) + skipped == 200
    assert all(r["prompt"] and r["chosen"] and r["rejected"] for r in rows)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    assert {r["subset"] for r in rows} == {"helpful-base"}
    assert rows[0]["prompt"] == "Do you know why turkeys became the official food of thanksgiving?"
    assert not any(r["prompt"] != r["prompt"].strip() or "\n\nAssistant:" in r["prompt"] for r in rows)
    multi = [r["prompt"] for r in rows if r["prompt"].startswith("Human: ")]  # flattened multi-turn histories
    assert multi and all(m.rfind("\nHuman: ") > m.rfind("\nAssistant: ") > 0 for m in multi)  # ends with a Human turn


@pytest.mark.skipif(not HELPFUL_BASE.is_file(), reason=f"shared data absent: {HELPFUL_BASE}")
def test_real_helpful_base_whole_file_skips_a_handful():
    rows, skipped = load_hh_pairs(HELPFUL_BASE)
    # 9 with differing histories, 4 with an empty response, 2 with identical responses
    assert (len(rows), skipped) == (2339, 15)
