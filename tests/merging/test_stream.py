import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import alignpipe.merging.stream as stream
from alignpipe.merging.average import MergeError
from alignpipe.merging.blocks import BlockSpec, merge_blocks
from alignpipe.merging.stream import merge_files

LAYER_KEYS = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
              "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
              "input_layernorm.weight", "post_attention_layernorm.weight"]
SPEC = BlockSpec(boundaries=(0, 1, 3, 4), alphas=(0.25, 0.5, 0.75), head_alpha=0.2, embed_alpha=0.6)


def llama(seed, dtype=torch.bfloat16):
    """A 4-layer Hugging Face Llama state dict with tiny random tensors (norms 1-D, like the real thing)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"model.embed_tokens.weight": (5, 3), "model.norm.weight": (3,), "lm_head.weight": (5, 3)}
    for i in range(4):
        shapes |= {f"model.layers.{i}.{k}": ((3,) if "norm" in k else (3, 3)) for k in LAYER_KEYS}
    return {k: torch.randn(s, generator=g).to(dtype) for k, s in shapes.items()}


def write_checkpoint(state: dict, d: Path, shards: int = 2) -> Path:
    """`shards` safetensors files split by key (layers 0–1 and embeddings first), an index and a config."""
    d.mkdir(parents=True)
    keys = list(state)
    cut = len(keys) // 2 if shards == 2 else len(keys)
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    parts = [keys[:cut], keys[cut:]][:shards]
    weight_map = {}
    for name, part in zip(names, parts, strict=True):
        save_file({k: state[k] for k in part}, d / name, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, name)
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 4}))
    return d


def load_dir(d: Path) -> dict:
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out |= load_file(f)
    return out


@pytest.mark.parametrize("sft_shards", [2, 1])  # the SFT model may be sharded differently
def test_streamed_merge_equals_in_memory_merge_bitwise(tmp_path, sft_shards):
    sft, rl = llama(1), llama(2)
    sft_dir = write_checkpoint(sft, tmp_path / "sft", sft_shards)
    rl_dir = write_checkpoint(rl, tmp_path / "rl")
    out = merge_files(sft_dir, rl_dir, SPEC, tmp_path / "merged")
    assert out == tmp_path / "merged"
    streamed, expected = load_dir(out), merge_blocks(sft, rl, SPEC)
    assert streamed.keys() == expected.keys()
    for key in expected:
        assert streamed[key].dtype == torch.bfloat16 and torch.equal(streamed[key], expected[key]), key
    # the RLHF shard layout is kept, so its copied index still describes the output
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert load_file(out / name).keys() == load_file(rl_dir / name).keys()
    for name in ("model.safetensors.index.json", "config.json"):
        assert (out / name).read_bytes() == (rl_dir / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "rl", "sft"]  # no temp dir left


def test_each_tensor_is_on_disk_before_the_next_is_read(tmp_path, monkeypatch):
    sft_dir, rl_dir = write_checkpoint(llama(1), tmp_path / "sft"), write_checkpoint(llama(2), tmp_path / "rl")
    events = []
    real_merge = stream.merge_tensor

    def merge_and_look(key, *a):
        # every tensor merged so far is already in the output file (its size grows tensor by tensor)
        events.append((key, sum(f.stat().st_size for f in tmp_path.glob(".merged.tmp-*/*.safetensors"))))
        return real_merge(key, *a)

    monkeypatch.setattr(stream, "merge_tensor", merge_and_look)
    merge_files(sft_dir, rl_dir, SPEC, tmp_path / "merged")
    first, second = (list(load_file(rl_dir / f"model-0000{i}-of-00002.safetensors")) for i in (1, 2))
    assert [k for k, _ in events] == first + second
    sizes = [size for _, size in events]
    assert sizes[0] > 0 and all(b > a for a, b in zip(sizes[: len(first)], sizes[1 : len(first)], strict=False))


def test_the_streamed_writer_matches_safetensors_for_every_dtype(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16), "c": torch.arange(6, dtype=torch.int64).reshape(2, 3),
               "d": torch.randn(2, 2).half(), "e": torch.tensor([True, False])}
    codes = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.float16: "F16", torch.bool: "BOOL"}
    entries = [(k, tuple(t.shape), codes[t.dtype]) for k, t in tensors.items()]
    stream.write_streamed(tmp_path / "x.safetensors", entries, iter(tensors.values()), {"format": "pt"})
    back = load_file(tmp_path / "x.safetensors")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], t) for k, t in tensors.items())
    with pytest.raises(MergeError, match="tensor 'a' arrived with shape"):
        stream.write_streamed(tmp_path / "y.safetensors", entries, iter([torch.zeros(2)]), {})


def _shape(s):
    s["model.layers.3.mlp.up_proj.weight"] = torch.zeros(3, 4, dtype=torch.bfloat16)


def _dtype(s):
    s["model.layers.2.input_layernorm.weight"] = s["model.layers.2.input_layernorm.weight"].float()


def _missing(s):
    del s["model.layers.3.mlp.down_proj.weight"]


@pytest.mark.parametrize(("corrupt", "message"), [
    (_shape, r"tensor 'model.layers.3.mlp.up_proj.weight' has shape \(3, 4\) in SFT but \(3, 3\) in RLHF"),
    (_dtype, r"tensor 'model.layers.2.input_layernorm.weight' has dtype F32 in SFT but BF16 in RLHF"),
    (_missing, r"only in SFT \[\], only in RLHF \['model.layers.3.mlp.down_proj.weight'\]"),
])
def test_a_mismatched_checkpoint_is_refused_before_anything_is_written(tmp_path, monkeypatch, corrupt, message):
    sft = llama(1)
    corrupt(sft)  # the difference sits in the second shard: the first would be mergeable
    sft_dir, rl_dir = write_checkpoint(sft, tmp_path / "sft"), write_checkpoint(llama(2), tmp_path / "rl")
    monkeypatch.setattr(stream, "write_streamed", lambda *a, **kw: pytest.fail("a shard was written"))
    with pytest.raises(MergeError, match=message):
        merge_files(sft_dir, rl_dir, SPEC, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl", "sft"]


@pytest.mark.parametrize(("spec", "message"), [
    (BlockSpec((0, 2, 6), (0.5, 0.5), 0.5, 0.5),
     "block count does not match the layers: the model has 4 layers but the spec's blocks"),
    (BlockSpec((0, 2, 4), (0.5, 1.5), 0.5, 0.5), r"alpha of block 1 is 1.5, outside \[0, 1\]"),
])
def test_a_bad_spec_is_refused_before_anything_is_written(tmp_path, spec, message):
    sft_dir, rl_dir = write_checkpoint(llama(1), tmp_path / "sft"), write_checkpoint(llama(2), tmp_path / "rl")
    with pytest.raises(MergeError, match=message):
        merge_files(sft_dir, rl_dir, spec, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl", "sft"]


def test_an_unknown_key_is_refused_before_anything_is_written(tmp_path):
    sft, rl = llama(1), llama(2)
    sft["score.weight"], rl["score.weight"] = torch.ones(1, 3), torch.ones(1, 3)  # a reward-model head
    sft_dir, rl_dir = write_checkpoint(sft, tmp_path / "sft"), write_checkpoint(rl, tmp_path / "rl")
    with pytest.raises(MergeError, match="key 'score.weight' is not a Llama weight"):
        merge_files(sft_dir, rl_dir, SPEC, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl", "sft"]


def test_a_failure_mid_write_leaves_no_output(tmp_path, monkeypatch):
    sft_dir, rl_dir = write_checkpoint(llama(1), tmp_path / "sft"), write_checkpoint(llama(2), tmp_path / "rl")
    real_write = stream.write_streamed

    def write_then_fail(path, *a, **kw):
        if "00002" in Path(path).name:
            raise OSError("disk full")
        real_write(path, *a, **kw)

    monkeypatch.setattr(stream, "write_streamed", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        merge_files(sft_dir, rl_dir, SPEC, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl", "sft"]


def test_output_dir_must_be_new_or_empty(tmp_path):
    sft_dir, rl_dir = write_checkpoint(llama(1), tmp_path / "sft"), write_checkpoint(llama(2), tmp_path / "rl")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(MergeError, match="already exists and is not an empty directory"):
        merge_files(sft_dir, rl_dir, SPEC, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "x"
    (tmp_path / "empty").mkdir()
    assert (merge_files(sft_dir, rl_dir, SPEC, tmp_path / "empty") / "config.json").is_file()


def test_a_directory_without_weights_is_named(tmp_path):
    rl_dir = write_checkpoint(llama(2), tmp_path / "rl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MergeError, match="empty holds no .safetensors weights"):
        merge_files(tmp_path / "empty", rl_dir, SPEC, tmp_path / "merged")
