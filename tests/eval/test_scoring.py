"""Tests for alignpipe.eval.scoring: reward-model and gold scores of responses."""

import pytest

from alignpipe.data import world
from alignpipe.eval.scoring import gold_scores, reward_scores
from alignpipe.models import RewardModel, load_tokenizer, resolve_model
from tests.conftest import MODEL_CACHE

PROMPTS = ["What is 2 + 3? Answer with the number only.", "Hi", "List 3 fruits, separated by commas."]
RESPONSES = ["5", "Hello there, how can I help you today with anything at all?", "apple, pear, plum."]


@pytest.fixture(scope="module")
def rm_and_tok():
    tiny = resolve_model("tiny", MODEL_CACHE)
    return RewardModel.from_pretrained_backbone(tiny).eval(), load_tokenizer(tiny)


def test_batched_equals_one_by_one(rm_and_tok):
    rm, tok = rm_and_tok
    batched = reward_scores(rm, tok, PROMPTS, RESPONSES, max_length=128, batch_size=16)
    single = [reward_scores(rm, tok, [p], [r], max_length=128)[0] for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    assert len(batched) == len(PROMPTS)
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(batched)) == len(batched)  # different inputs, different scores: not all pooled from padding


def test_truncation_and_mismatch(rm_and_tok):
    rm, tok = rm_and_tok
    long = " ".join(["word"] * 200)
    (score,) = reward_scores(rm, tok, ["Hi"], [long], max_length=32)
    assert isinstance(score, float)
    with pytest.raises(ValueError):
        reward_scores(rm, tok, PROMPTS, RESPONSES[:1], max_length=32)


def test_gold_scores_hand_example():
    rows = [
        {"family": "arithmetic", "spec": '{"a": 2, "b": 3, "op": "+"}'},
        {"family": "arithmetic", "spec": {"a": 2, "b": 3, "op": "+"}},
        {"family": "word_count", "spec": '{"n": 4, "topic": "cats"}'},
        {"family": "list_items", "spec": '{"category": "fruits", "k": 3}'},
    ]
    responses = ["5", "The answer is 5.", "Cats are very nice.", "apple, pear, apple"]
    # list: count 3/3 -> 1, in bank 1, distinct 0 -> 2/3
    assert gold_scores(rows, responses) == pytest.approx([1.0, 0.5, 1.0, 2 / 3])
    row = world.make_prompts(1, seed=0)[0]
    assert gold_scores([row], ["x"]) == [world.gold_score(row["family"], row["spec"], "x")]
    with pytest.raises(ValueError):
        gold_scores(rows, responses[:2])
