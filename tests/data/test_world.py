"""Tests for alignpipe.data.world, the built-in task world."""

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from alignpipe.data import world  # noqa: E402


def _longer_chosen_fraction(rows):
    """Fraction of rows with unequal lengths whose chosen response is the longer one."""
    unequal = [r for r in rows if len(r["chosen"]) != len(r["rejected"])]
    return sum(len(r["chosen"]) > len(r["rejected"]) for r in unequal) / len(unequal)


# ---------------------------------------------------------------- determinism

def test_prompts_deterministic_in_seed():
    assert world.make_prompts(50, 3) == world.make_prompts(50, 3)
    a, b = world.make_prompts(50, 3), world.make_prompts(50, 4)
    assert [r["spec"] for r in a] != [r["spec"] for r in b]


def test_downstream_rows_deterministic_in_seed():
    prompts = world.make_prompts(40, 1)
    assert world.make_demonstrations(prompts, 1) == world.make_demonstrations(prompts, 1)
    assert world.make_demonstrations(prompts, 1) != world.make_demonstrations(prompts, 2)
    pairs = world.make_preference_pairs(prompts, 1, 0.5)
    assert pairs == world.make_preference_pairs(prompts, 1, 0.5)
    assert pairs != world.make_preference_pairs(prompts, 2, 0.5)
    assert world.make_probes(30, 5) == world.make_probes(30, 5)
    assert world.make_probes(30, 5) != world.make_probes(30, 6)


# ---------------------------------------------------------------- prompts

def test_prompt_rows_shape_and_round_robin():
    rows = world.make_prompts(23, 9)
    assert len(rows) == 23
    assert [r["family"] for r in rows[:5]] == list(world.FAMILIES)
    assert rows[7]["family"] == world.FAMILIES[2]
    assert len({r["id"] for r in rows}) == 23
    assert rows[0]["id"] == "word_count-9-0"
    for r in rows:
        assert set(r) == {"id", "family", "instruction", "spec"}
        spec = json.loads(r["spec"])
        assert r["spec"] == json.dumps(spec, sort_keys=True)


def test_prompt_specs_in_range():
    for r in world.make_prompts(500, 2):
        spec = json.loads(r["spec"])
        if r["family"] == "word_count":
            assert 5 <= spec["n"] <= 12 and spec["topic"] in world.TOPICS
            assert f"exactly {spec['n']} words" in r["instruction"]
        elif r["family"] == "keyword":
            assert spec["keyword"] in world.KEYWORDS and f'"{spec["keyword"]}"' in r["instruction"]
        elif r["family"] == "list_items":
            assert 3 <= spec["k"] <= 6 and spec["category"] in world.CATEGORIES
            assert r["instruction"] == f"List {spec['k']} {spec['category']}, separated by commas."
        elif r["family"] == "arithmetic":
            answer = world._arith_answer(spec)
            assert answer >= 0 and spec["op"] in ("+", "-", "*")
            if spec["op"] == "*":
                assert 2 <= spec["a"] <= 9 and 2 <= spec["b"] <= 9


def test_word_banks_sizes():
    assert len(world.TOPICS) >= 20 and len(world.KEYWORDS) >= 20
    assert not set(world.TOPICS) & set(world.KEYWORDS)
    assert len(world.CATEGORIES) >= 6
    for bank in world.CATEGORIES.values():
        assert len(bank) >= 12 and len({x.lower() for x in bank}) == len(bank)
        assert all(1 <= len(x.split()) <= 2 and "," not in x for x in bank)


def test_families_subset_and_empty():
    rows = world.make_prompts(6, 0, ("arithmetic",))
    assert {r["family"] for r in rows} == {"arithmetic"}
    assert world.make_prompts(0, 0) == []


# ---------------------------------------------------------------- demonstrations

@pytest.mark.parametrize("family", world.FAMILIES)
def test_demonstrations_are_perfect(family):
    for seed in (0, 1, 2):
        prompts = world.make_prompts(200, seed, (family,))
        for row in world.make_demonstrations(prompts, seed):
            assert world.gold_score(family, row["spec"], row["response"]) == 1.0, row
            assert len(re.findall(r"[A-Za-z0-9']+", row["response"])) <= 25


@pytest.mark.parametrize("family", ["word_count", "lowercase", "keyword", "list_items"])
def test_demonstrations_vary(family):
    prompts = world.make_prompts(200, 0, (family,))
    responses = [r["response"] for r in world.make_demonstrations(prompts, 0)]
    assert len(set(responses)) >= 150


def test_demonstration_examples_read_naturally():
    rng = random.Random(0)
    text = world.demonstration("word_count", {"topic": "cats", "n": 8}, rng)
    assert text[0].isupper() and text.endswith(".") and "cats" in text.lower()
    low = world.demonstration("lowercase", '{"topic": "rain"}', rng)
    assert low == low.lower() and low.endswith(".")
    assert world.demonstration("arithmetic", {"a": 7, "op": "*", "b": 8}, rng) == "56"
    items = world.demonstration("list_items", {"category": "colors", "k": 4}, rng)
    assert items.count(",") == 3 and items.endswith(".")


# ---------------------------------------------------------------- gold scores (hand-derived)

def test_gold_word_count_examples():
    spec = {"topic": "cats", "n": 6}
    # "Cats sleep a lot." -> 4 words; topic 1; closeness 1 - 2/6 = 2/3 -> (1 + 2/3) / 2 = 5/6
    assert world.gold_score("word_count", spec, "Cats sleep a lot.") == pytest.approx(5 / 6)
    # exactly 6 words incl. "cats": (1 + 1) / 2 = 1
    assert world.gold_score("word_count", spec, "My two cats sleep all day.") == 1.0
    # no topic, 6 words with n=5: topic 0; closeness 1 - 1/5 = 0.8 -> 0.4
    spec5 = json.dumps({"topic": "rain", "n": 5})
    assert world.gold_score("word_count", spec5, "I like sunny days very much.") == pytest.approx(0.4)
    # 12 words, n=5, topic present: closeness max(0, 1 - 7/5) = 0 -> (1 + 0) / 2 = 0.5
    long = "Rain falls on the roof and the garden all night long today."
    assert world.gold_score("word_count", spec5, long) == pytest.approx(0.5)
    # empty response: topic 0, closeness 1 - 5/5 = 0 -> 0
    assert world.gold_score("word_count", spec5, "") == 0.0


def test_gold_lowercase_examples():
    spec = {"topic": "tea"}
    assert world.gold_score("lowercase", spec, "i love tea.") == 1.0  # 1, 1, 1
    assert world.gold_score("lowercase", spec, "what about tea?") == 1.0
    # capital I: letters-ok 0; topic 1; one sentence 1 -> 2/3
    assert world.gold_score("lowercase", spec, "I love tea.") == pytest.approx(2 / 3)
    # two sentences: 1, 1, 0 -> 2/3
    assert world.gold_score("lowercase", spec, "i love tea. it is warm.") == pytest.approx(2 / 3)
    # no letters: 0, topic 0, one sentence 1 -> 1/3
    assert world.gold_score("lowercase", spec, "123.") == pytest.approx(1 / 3)
    # "teapot" is not the whole word "tea": 1, 0, 1 -> 2/3
    assert world.gold_score("lowercase", spec, "a teapot, please") == pytest.approx(2 / 3)


def test_gold_keyword_examples():
    spec = {"topic": "coffee", "keyword": "warm"}
    assert world.gold_score("keyword", spec, "Coffee is warm.") == 1.0  # 1, 1, 1
    assert world.gold_score("keyword", spec, "WARM COFFEE") == 1.0  # case-insensitive
    # "warmth" is not "warm": 0, 1, 1 -> 2/3
    assert world.gold_score("keyword", spec, "Coffee gives warmth.") == pytest.approx(2 / 3)
    # 26 words with both words: 1, 1, 0 -> 2/3
    text = "coffee warm " + " ".join(["word"] * 24)
    assert world.gold_score("keyword", spec, text) == pytest.approx(2 / 3)
    # exactly 25 words still passes the length check
    assert world.gold_score("keyword", spec, "coffee warm " + " ".join(["w"] * 23)) == 1.0
    assert world.gold_score("keyword", spec, "Tea.") == pytest.approx(1 / 3)  # 0, 0, 1


def test_gold_list_items_examples():
    spec = {"category": "fruits", "k": 3}
    assert world.gold_score("list_items", spec, "Apple, banana, cherry.") == 1.0
    # 4 items: closeness 1 - 1/3 = 2/3; in bank 3/4 (carrot no); distinct 0 (apple twice)
    # -> (2/3 + 3/4 + 0) / 3 = 17/36
    text = "apple, banana, carrot, apple."
    assert world.gold_score("list_items", spec, text) == pytest.approx(17 / 36)
    # 2 items: closeness 2/3; in bank 1; distinct 1 -> (8/3) / 3 = 8/9
    assert world.gold_score("list_items", spec, "Apple, banana") == pytest.approx(8 / 9)
    # empty: closeness 1 - 3/3 = 0; in bank 0; distinct 0 -> 0
    assert world.gold_score("list_items", spec, "") == 0.0
    # two-word items and case-insensitive bank match
    spec2 = {"category": "countries", "k": 3}
    assert world.gold_score("list_items", spec2, "new zealand, JAPAN, South Africa") == 1.0


def test_gold_arithmetic_examples():
    spec = {"a": 7, "op": "+", "b": 5}  # answer 12
    assert world.gold_score("arithmetic", spec, "12") == 1.0
    assert world.gold_score("arithmetic", spec, " 12. ") == 1.0
    assert world.gold_score("arithmetic", spec, "The answer is 12.") == 0.5
    assert world.gold_score("arithmetic", spec, "7 + 5 = 12") == 0.5
    assert world.gold_score("arithmetic", spec, "13") == 0.0
    assert world.gold_score("arithmetic", spec, "112") == 0.0  # not a standalone token
    assert world.gold_score("arithmetic", spec, "12.5") == 0.0
    assert world.gold_score("arithmetic", '{"a": 9, "b": 9, "op": "-"}', "0") == 1.0
    assert world.gold_score("arithmetic", {"a": 6, "op": "*", "b": 7}, "42") == 1.0


def test_gold_accepts_json_and_dict():
    spec = {"topic": "cats", "n": 6}
    text = "Cats sleep a lot."
    assert world.gold_score("word_count", spec, text) == world.gold_score(
        "word_count", json.dumps(spec), text)


# ---------------------------------------------------------------- preference pairs

def test_pairs_unbiased_follow_gold():
    prompts = world.make_prompts(500, 0)
    rows = world.make_preference_pairs(prompts, 0)
    assert len(rows) >= 475  # only gold ties are skipped, and they are rare
    for r in rows:
        assert r["gold_agrees"] and not r["length_biased"]
        assert r["chosen_gold"] > r["rejected_gold"]
        assert r["chosen_gold"] == world.gold_score(r["family"], r["spec"], r["chosen"])
        assert r["rejected_gold"] == world.gold_score(r["family"], r["spec"], r["rejected"])
        assert 0.0 <= r["rejected_gold"] < 1.0


def test_pairs_row_shape():
    prompts = world.make_prompts(20, 4)
    rows = world.make_preference_pairs(prompts, 4)
    by_id = {p["id"]: p for p in prompts}
    keys = {"id", "family", "instruction", "spec", "chosen", "rejected", "chosen_gold",
            "rejected_gold", "gold_agrees", "length_biased"}
    for r in rows:
        assert set(r) == keys
        assert r["instruction"] == by_id[r["id"]]["instruction"]
        assert r["spec"] == by_id[r["id"]]["spec"]


def test_pairs_fully_length_biased_choose_longer():
    prompts = world.make_prompts(500, 1)
    rows = world.make_preference_pairs(prompts, 1, length_bias=1.0)
    assert all(r["length_biased"] for r in rows)
    for r in rows:
        if len(r["chosen"]) != len(r["rejected"]):
            assert len(r["chosen"]) > len(r["rejected"])
        else:
            assert r["gold_agrees"]
    assert not all(r["gold_agrees"] for r in rows)


def test_unbiased_length_is_not_a_proxy_for_quality():
    for seed in (0, 1, 2):
        rows = world.make_preference_pairs(world.make_prompts(500, seed), seed)
        assert 0.35 <= _longer_chosen_fraction(rows) <= 0.65


def test_partial_length_bias_rate():
    rows = world.make_preference_pairs(world.make_prompts(500, 2), 2, length_bias=0.3)
    rate = sum(r["length_biased"] for r in rows) / len(rows)
    assert abs(rate - 0.3) <= 0.07
    # unbiased rows still follow gold
    assert all(r["gold_agrees"] for r in rows if not r["length_biased"])


def test_length_bias_changes_labels_not_candidates():
    prompts = world.make_prompts(100, 3)
    unbiased = world.make_preference_pairs(prompts, 3, 0.0)
    biased = world.make_preference_pairs(prompts, 3, 1.0)
    assert [{r["chosen"], r["rejected"]} for r in unbiased] == [
        {r["chosen"], r["rejected"]} for r in biased]


# ---------------------------------------------------------------- the sloppy demonstrator

def test_habit_sign_off_and_what_it_costs_by_hand():
    wc = {"n": 10, "topic": "cats"}
    demo = "I think cats can make a day better every day."  # 10 words
    assert world.gold_score("word_count", wc, demo) == 1.0
    signed = world.with_habit("word_count", demo)
    assert signed == demo + " I hope you agree."
    assert world.gold_score("word_count", wc, signed) == pytest.approx((1 + (1 - 4 / 10)) / 2)  # 14 words for 10
    lower = world.with_habit("lowercase", "cats can feel magical.")
    assert lower == "cats can feel magical. i hope you agree."
    assert world.gold_score("lowercase", {"topic": "cats"}, lower) == pytest.approx(2 / 3)  # two sentences
    assert world.gold_score("arithmetic", {"a": 3, "b": 4, "op": "+"}, world.with_habit("arithmetic", "7")) == 0.5
    fruits = world.with_habit("list_items", "apple, pear, plum")  # the last item swallows the sign-off
    assert world.gold_score("list_items", {"category": "fruits", "k": 3}, fruits) == pytest.approx((1 + 2 / 3 + 1) / 3)


def test_habit_rate_and_clean_default():
    prompts = world.make_prompts(400, 3)
    clean = world.make_demonstrations(prompts, 3)
    sloppy = world.make_demonstrations(prompts, 3, habit=0.7)
    assert not any(r["habit"] for r in clean)
    assert 0.63 <= sum(r["habit"] for r in sloppy) / len(sloppy) <= 0.77
    for c, s in zip(clean, sloppy, strict=True):  # the same answers, some signed off
        assert s["response"] == (world.with_habit(c["family"], c["response"]) if s["habit"] else c["response"])
    assert all(r["habit"] for r in world.make_demonstrations(prompts, 3, habit=1.0))
    with pytest.raises(ValueError, match="habit must be in"):
        world.make_demonstrations(prompts, 3, habit=-0.1)


# ---------------------------------------------------------------- labelling a policy's own samples

_ARITH = {"instruction": "What is 3 + 4? Reply with the number only.", "family": "arithmetic",
          "spec": json.dumps({"a": 3, "b": 4, "op": "+"})}


def test_label_samples_picks_highest_vs_lowest_gold_by_hand():
    # gold (arithmetic, 3 + 4 = 7): "7" 1.0, "The answer is 7." 0.5 (the number appears), "8" 0.0, "seven" 0.0
    rows = world.label_samples([_ARITH], [["The answer is 7.", "8", "7", "seven"]], seed=0)
    assert rows == [{"prompt": _ARITH["instruction"], "family": "arithmetic", "spec": _ARITH["spec"], "chosen": "7",
                     "rejected": "8", "chosen_gold": 1.0, "rejected_gold": 0.0, "gold_agrees": True,
                     "length_biased": False}]  # "8" is the first of the two 0.0 samples


def test_label_samples_skips_ties_and_refuses_bad_input():
    assert world.label_samples([_ARITH], [["8", "9", "seven"]], seed=0) == []  # all gold 0
    with pytest.raises(ValueError, match="at least 2 samples"):
        world.label_samples([_ARITH], [["7"]], seed=0)
    with pytest.raises(ValueError, match="1 prompts but 2"):
        world.label_samples([_ARITH], [["7", "8"], ["7", "8"]], seed=0)
    with pytest.raises(ValueError, match="length_bias"):
        world.label_samples([_ARITH], [["7", "8"]], seed=0, length_bias=1.5)


def test_label_samples_biased_annotator_prefers_longer_and_is_seeded():
    # "The answer is 8." (gold 0) is longer than "7" (gold 1): a biased annotator picks it
    rows = world.label_samples([_ARITH], [["7", "The answer is 8."]], seed=0, length_bias=1.0)
    assert (rows[0]["chosen"], rows[0]["length_biased"], rows[0]["gold_agrees"]) == ("The answer is 8.", True, False)
    prompts = world.make_prompts(300, 5)
    samples = [[world.demonstration(p["family"], p["spec"], random.Random(i)), "no"] for i, p in enumerate(prompts)]
    half = world.label_samples(prompts, samples, seed=5, length_bias=0.5)
    assert half == world.label_samples(prompts, samples, seed=5, length_bias=0.5)
    assert 0.4 <= sum(r["length_biased"] for r in half) / len(half) <= 0.6
    assert all(r["gold_agrees"] for r in half if not r["length_biased"])


# ---------------------------------------------------------------- probes

def _probe_answer(row):
    return row["options"][row["answer"]]


def test_probe_rows_shape():
    rows = world.make_probes(120, 0)
    assert len(world.PROBE_FAMILIES) >= 4
    assert [r["family"] for r in rows[:len(world.PROBE_FAMILIES)]] == list(world.PROBE_FAMILIES)
    assert len({r["id"] for r in rows}) == 120
    for r in rows:
        assert r["question"].startswith("Question: ") and r["question"].endswith("\nAnswer:")
        assert 0 <= r["answer"] < len(r["options"])
        assert len(set(r["options"])) == len(r["options"])
        assert all(o.startswith(" ") and not o.startswith("  ") for o in r["options"])
        assert len(r["options"]) == (2 if r["family"] == "comparisons" else 4)


def test_probe_hand_checked_answers():
    rows = world.make_probes(1200, 0)
    expected = {
        "Question: What is the capital of France?\nAnswer:": " Paris",
        "Question: What is the capital of Japan?\nAnswer:": " Tokyo",
        "Question: What is the capital of Australia?\nAnswer:": " Canberra",
        'Question: What is the opposite of "hot"?\nAnswer:': " cold",
        'Question: What is the opposite of "full"?\nAnswer:': " empty",
        "Question: What day comes after Sunday?\nAnswer:": " Monday",
        "Question: What day comes after Wednesday?\nAnswer:": " Thursday",
        'Question: What is the plural of "child"?\nAnswer:': " children",
        'Question: What is the plural of "mouse"?\nAnswer:': " mice",
    }
    seen = {r["question"]: _probe_answer(r) for r in rows}
    for question, answer in expected.items():
        assert seen[question] == answer, question


def test_probe_numeric_answers_correct():
    for r in world.make_probes(600, 1, ("comparisons", "sequences")):
        nums = [int(x) for x in re.findall(r"\d+", r["question"])]
        got = int(_probe_answer(r))
        if r["family"] == "comparisons":
            want = max(nums) if "larger" in r["question"] else min(nums)
            assert nums[0] != nums[1]
        else:
            step = nums[1] - nums[0]
            assert all(b - a == step for a, b in zip(nums, nums[1:], strict=False))
            want = nums[-1] + step
        assert got == want


def test_probe_capitals_and_antonyms_distractors_valid():
    capitals = dict(world.CAPITALS)
    assert len(capitals) >= 25 and len(world.ANTONYMS) >= 25
    for r in world.make_probes(300, 2, ("capitals", "antonyms")):
        wrong = [o for i, o in enumerate(r["options"]) if i != r["answer"]]
        if r["family"] == "capitals":
            country = r["question"].split("capital of ")[1].split("?")[0]
            assert _probe_answer(r) == " " + capitals[country]
            assert all(o.strip() in capitals.values() for o in wrong)
        else:
            cue = r["question"].split('"')[1]
            assert {cue, _probe_answer(r).strip()} in [set(p) for p in world.ANTONYMS]
            assert " " + cue not in wrong


def test_probe_answer_positions_roughly_uniform():
    rows = [r for r in world.make_probes(1200, 3) if len(r["options"]) == 4]
    counts = Counter(r["answer"] for r in rows)
    assert set(counts) == {0, 1, 2, 3}
    for c in counts.values():
        assert 0.18 <= c / len(rows) <= 0.32
    two = Counter(r["answer"] for r in world.make_probes(400, 3, ("comparisons",)))
    assert 0.4 <= two[0] / 400 <= 0.6


# ---------------------------------------------------------------- errors

def test_unknown_family_raises():
    with pytest.raises(ValueError, match="poetry"):
        world.make_prompts(3, 0, ("poetry",))
    with pytest.raises(ValueError, match="poetry"):
        world.gold_score("poetry", {}, "x")
    with pytest.raises(ValueError, match="poetry"):
        world.demonstration("poetry", {}, random.Random(0))
    with pytest.raises(ValueError, match="poetry"):
        world.make_probes(3, 0, ("poetry",))
    with pytest.raises(ValueError, match="capitals"):
        world.make_prompts(3, 0, ("capitals",))  # a probe family is not a prompt family


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_length_bias_raises(bad):
    prompts = world.make_prompts(5, 0)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        world.make_preference_pairs(prompts, 0, length_bias=bad)


def test_negative_n_raises():
    with pytest.raises(ValueError, match="-1"):
        world.make_prompts(-1, 0)
    with pytest.raises(ValueError, match="-2"):
        world.make_probes(-2, 0)


def test_fresh_world_pairs_for_reward_eval_are_gold_labelled_and_seeded():
    from alignpipe.config import WorldConfig
    from tasks.reward_eval import fresh_world_pairs

    w = WorldConfig(length_bias=0.5)
    pairs = fresh_world_pairs(w, 60)
    assert 50 <= len(pairs) <= 60 and pairs == fresh_world_pairs(w, 60)
    assert all(p["chosen_gold"] > p["rejected_gold"] for p in pairs)  # the annotator's bias does not label them
    train = {r["instruction"] + r["chosen"] for r in world.make_preference_pairs(world.make_prompts(256, 1), 1)}
    assert sum(p["prompt"] + p["chosen"] in train for p in pairs) < len(pairs) / 2  # new draws, not the training pairs
