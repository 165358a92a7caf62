import pytest
import torch

from alignpipe.models import ModelNotFoundError, RewardModel, load_policy, resolve_model
from alignpipe.models.loading import SMOLLM2
from tests.conftest import MODEL_CACHE


def test_tiny_is_a_two_layer_llama_with_a_real_tokenizer(tiny_dir):
    model, tok = load_policy(tiny_dir)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert len(tok) == model.config.vocab_size == 49152
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    assert not getattr(model.config, "auto_map", None)  # no remote code anywhere
    assert list(tiny_dir.glob("*.safetensors")) and not list(tiny_dir.glob("*.bin"))


def test_smollm2_is_converted_once_to_safetensors_and_answers():
    d = resolve_model(SMOLLM2, MODEL_CACHE)  # ~25 s the first time on a new machine, then cached
    assert (d / "model.safetensors").is_file() and "quantization_config" not in (d / "config.json").read_text()
    model, tok = load_policy(d)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 3 + 4? Answer with the number only."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "7" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_missing_and_bad_paths_are_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a built-in .* not an existing directory"):
        resolve_model("./no/such/model", MODEL_CACHE)
    with pytest.raises(ModelNotFoundError, match=f"model path {tmp_path} has no config.json"):
        resolve_model(str(tmp_path), MODEL_CACHE)
    with pytest.raises(ModelNotFoundError, match="could not be fetched from the hub"):
        resolve_model("nobody-here/no-such-model-xyz", MODEL_CACHE)


def test_reward_model_pools_last_attended_token_and_roundtrips(tiny_dir, tmp_path):
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained_backbone(tiny_dir).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.inference_mode():
        r = rm(ids, mask)
        alone = rm(ids[:1, :3], mask[:1, :3])
    assert torch.allclose(r[0], alone[0], atol=1e-5)  # padding does not change the score
    rm.mean, rm.std = 0.5, 2.0
    rm.save(tmp_path)
    back = RewardModel.load(tmp_path)
    with torch.inference_mode():
        assert torch.allclose(back(ids, mask), r, atol=1e-6)
    assert (back.mean, back.std) == (0.5, 2.0)


def test_in_memory_merge_is_the_exported_checkpoint(tiny_dir, tiny_rl_dir, tmp_path):
    """A searched candidate (merged in memory) and its streamed export give bit-identical logits."""
    import torch

    from alignpipe.merging.blocks import BlockSpec
    from alignpipe.merging.stream import merge_files
    from alignpipe.models import load_merged_policy, load_policy

    rl, tok = load_policy(tiny_rl_dir)
    spec = BlockSpec((0, 1, 2), (0.7, 0.1), head_alpha=0.4, embed_alpha=0.9)
    merged, _ = load_merged_policy(tiny_dir, tiny_rl_dir, spec)
    exported, _ = load_policy(merge_files(tiny_dir, tiny_rl_dir, spec, tmp_path / "out"))
    ids = torch.tensor([tok("Name three colours.").input_ids])
    with torch.no_grad():
        assert torch.equal(merged(input_ids=ids).logits, exported(input_ids=ids).logits)
        assert not torch.allclose(merged(input_ids=ids).logits, rl(input_ids=ids).logits)
