"""Our DPO against TRL's DPOTrainer (a dev dependency) on the same model, token ids and β.

TRL tokenises the same rendered text (our ChatML prompt + response + EOS), which the first test checks
gives exactly our ids and prompt/response boundary; its own collator then builds the batch. A real
DPOTrainer (fp32, reference log-probs precomputed) supplies the reference log-probs, the policy's
summed log-probs (its fused LM head), the loss of one training step and that step's gradients.
"""

import copy

import pytest
import torch

from alignpipe.data import world
from alignpipe.data.chat import render_prompt
from alignpipe.losses.preference import dpo_loss
from alignpipe.models import load_policy, resolve_model
from alignpipe.training.dpo import pair_logps, reference_logps
from alignpipe.training.reward_model import encode_pairs
from tests.conftest import MODEL_CACHE

trl = pytest.importorskip("trl")

BETA = 0.1
MAX_LENGTH = 256


def assert_logps_close(ours, theirs):
    """Within 1e-5 plus 1e-6 of the value: summed log-probs reach -150 on the random tiny model, where one
    float32 ulp is 1.5e-5, so summation order alone moves them by more than 1e-5 absolute."""
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-5)


def _rows() -> list[dict]:
    """Five world pairs (every family: lengths differ, so the batch has padding) and a one-token answer."""
    rows = [{"prompt": r["instruction"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in world.make_preference_pairs(world.make_prompts(6, seed=0), seed=0)][:5]
    return rows + [{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "The answer is probably five."}]


@pytest.fixture(scope="module", params=["tiny", pytest.param("smollm2-135m-instruct", marks=pytest.mark.slow)])
def setup(request, tmp_path_factory):
    """(our model, TRL's trainer on an identical copy, our encoded pairs, TRL's tokenised rows, pad id)."""
    from datasets import Dataset

    model_dir = resolve_model(request.param, MODEL_CACHE)
    ours, tok = load_policy(model_dir, device="cpu")
    theirs, _ = load_policy(model_dir, device="cpu")
    rows = _rows()
    args = trl.DPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")), beta=BETA, per_device_train_batch_size=len(rows),
        precompute_ref_log_probs=True, max_length=None, bf16=False, gradient_checkpointing=False, use_cpu=True,
        report_to="none", save_strategy="no", disable_tqdm=True, dataset_num_proc=None, seed=0,
    )
    text = [{"prompt": render_prompt(tok, r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    trainer = trl.DPOTrainer(model=theirs, args=args, train_dataset=Dataset.from_list(text), processing_class=tok)
    examples = [trainer.train_dataset[i] for i in range(len(rows))]
    return ours, trainer, encode_pairs(tok, rows, MAX_LENGTH), examples, tok.pad_token_id


def test_trl_tokenises_our_rendering_to_our_ids(setup):
    _, _, pairs, examples, _ = setup
    for (c, r), e in zip(pairs, examples, strict=True):
        assert c.input_ids == e["prompt_ids"] + e["chosen_ids"] and r.input_ids == e["prompt_ids"] + e["rejected_ids"]
        assert c.labels.count(-100) == r.labels.count(-100) == len(e["prompt_ids"])  # same response boundary


def test_reference_logps_equal_trl_precomputed(setup):
    ours, _, pairs, examples, pad_id = setup
    ref = reference_logps(ours, pairs, pad_id, batch_size=4)  # batches split differently from TRL's on purpose
    theirs = torch.tensor([[e["ref_chosen_logps"], e["ref_rejected_logps"]] for e in examples])
    assert_logps_close(ref, theirs)


def test_loss_logps_and_gradients_equal_a_trl_training_step(setup):
    reference, trainer, pairs, examples, pad_id = setup
    ref = reference_logps(reference, pairs, pad_id, batch_size=len(pairs))
    # Move both policies off the reference identically, so the loss is not the trivial log 2.
    policy, gen = copy.deepcopy(reference), torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    trainer.model.load_state_dict(policy.state_dict())

    policy.train()
    chosen, rejected = pair_logps(policy, pairs, pad_id)
    loss, r_c, r_r = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], BETA)
    loss.backward()

    batch = trainer.data_collator(examples)  # carries the precomputed reference log-probs
    with torch.no_grad():
        their_chosen, their_rejected = trainer.compute_ref_log_probs(trainer.model, batch)  # any model: summed logps
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() around training_step
    their_loss = trainer.training_step(trainer.model, batch)  # forward, DPO loss, backward
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    assert abs(loss.item() - 0.6931) > 1e-3
    assert_logps_close(chosen.detach(), their_chosen)
    assert_logps_close(rejected.detach(), their_rejected)
    torch.testing.assert_close(loss.detach(), their_loss, rtol=0, atol=1e-5)
    assert metrics["rewards/chosen"] == pytest.approx(r_c.mean().item(), abs=1e-5)
    assert metrics["rewards/margins"] == pytest.approx((r_c - r_r).mean().item(), abs=1e-5)
    assert metrics["logps/chosen"] == pytest.approx(chosen.mean().item(), rel=1e-6, abs=1e-5)
    for (name, p), q in zip(policy.named_parameters(), trainer.model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")
