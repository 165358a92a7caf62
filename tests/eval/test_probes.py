"""Tests for alignpipe.eval.probes: lm-eval-style log-likelihood scoring of knowledge probes."""

import os

import pytest
import torch

from alignpipe.data import world
from alignpipe.eval.metrics import accuracy
from alignpipe.eval.probes import _encode_pair, _pair_logprobs, _shared_length, option_logprobs, score_probes
from alignpipe.eval.trust.truthfulness import QA_PRIMER
from alignpipe.models import load_policy, resolve_model
from tests.conftest import MODEL_CACHE

slow = pytest.mark.skipif(os.environ.get("ALIGNPIPE_SLOW") != "1", reason="slow: set ALIGNPIPE_SLOW=1")


@pytest.fixture(scope="module")
def tiny():
    return load_policy(resolve_model("tiny", MODEL_CACHE))


def _manual_logprobs(model, tok, context: str, option: str) -> float:
    """Sum of log p(option token | everything before it), straight from logits."""
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = tok(option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx + cont])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    # Token at position p is predicted by the logits at position p - 1.
    return sum(logp[len(ctx) + j - 1, tok_id].item() for j, tok_id in enumerate(cont))


def test_option_logprobs_match_manual_computation(tiny):
    model, tok = tiny
    context = "Question: What is the capital of France?\nAnswer:"
    options = [" Paris", " Buenos Aires"]  # one and several tokens
    got = option_logprobs(model, tok, context, options)
    want = [_manual_logprobs(model, tok, context, o) for o in options]
    assert got == pytest.approx(want, abs=1e-4)
    assert all(lp < 0 for lp in got)


def test_batched_equals_unbatched(tiny):
    model, tok = tiny
    for probe in world.make_probes(3, seed=1):  # capitals, antonyms, comparisons
        batched = option_logprobs(model, tok, probe["question"], probe["options"])
        single = [option_logprobs(model, tok, probe["question"], [o])[0] for o in probe["options"]]
        assert batched == pytest.approx(single, abs=1e-4)


def test_trailing_context_space_moves_to_option(tiny):
    model, tok = tiny
    a = option_logprobs(model, tok, "Question: Opposite of hot?\nAnswer:", [" cold"])
    b = option_logprobs(model, tok, "Question: Opposite of hot?\nAnswer: ", ["cold"])
    assert a == pytest.approx(b, abs=1e-6)


def test_score_probes_in_range_and_independent_of_batch_size(tiny):
    model, tok = tiny
    probes = world.make_probes(8, seed=0)  # both 2- and 4-option families
    preds = score_probes(model, tok, probes, batch_size=32)
    assert len(preds) == len(probes)
    assert all(0 <= p < len(row["options"]) for p, row in zip(preds, probes, strict=True))
    assert score_probes(model, tok, probes, batch_size=5) == preds
    # The prediction is the argmax of the option log-probs.
    row = probes[0]
    lps = option_logprobs(model, tok, row["question"], row["options"])
    assert preds[0] == max(range(len(lps)), key=lps.__getitem__)


def test_a_shared_primer_computed_once_gives_the_same_log_probs(tiny):
    model, tok = tiny
    pairs = [(f"{QA_PRIMER}Q: {q}\nA:", f" {o}") for q in ("What is 2 + 2?", "Where is Paris in the world?")
             for o in ("Four.", "It is in France, in Europe.", "I have no comment.")]
    shared = _shared_length([_encode_pair(tok, c, o) for c, o in pairs])
    assert shared >= len(tok(QA_PRIMER, add_special_tokens=False)["input_ids"]) - 1  # the primer's cache is used
    one_by_one = [_pair_logprobs(model, tok, [p], batch_size=1)[0] for p in pairs]  # a single pair shares nothing
    assert _pair_logprobs(model, tok, pairs, batch_size=4) == pytest.approx(one_by_one, abs=1e-4)
    # contexts with no common start share nothing
    assert _shared_length([_encode_pair(tok, "Q: one", " x"), _encode_pair(tok, "Another question", " y")]) == 0


def test_score_probes_names_malformed_row(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="bad-row"):
        score_probes(model, tok, [{"id": "bad-row", "question": "Q?", "options": []}])


@pytest.mark.slow
@slow
def test_pretrained_smollm2_knows_capitals():
    model, tok = load_policy(resolve_model("smollm2-135m-instruct", MODEL_CACHE))
    probes = world.make_probes(30, seed=0, families=("capitals",))
    preds = score_probes(model, tok, probes)
    assert accuracy(preds, [p["answer"] for p in probes]) >= 0.8  # chance is 0.25; measured 29/30
