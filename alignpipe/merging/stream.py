"""Stream a block-wise merge (ALGORITHMS §4) between two safetensors model directories.

Tensors are read one at a time with `safe_open`, one from each side, merged with `merge_tensor`
and appended to the output shard at once: the shard's header (names, dtypes, shapes, offsets) is known
from the input headers before any data is read, so it is written first and each merged tensor goes to
disk before the next is read. Peak anonymous memory is about two input tensors plus one merged
tensor, not three models (the inputs are memory-mapped: their pages are file-backed and evictable). The output keeps the RLHF model's shard
layout (so its `model.safetensors.index.json` stays valid); the SFT model may be sharded differently.
Everything — key sets, shapes, dtypes, the spec — is checked from the file headers before anything
is written, and the output directory appears complete or not at all (temp dir + rename).
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from alignpipe.merging.average import MergeError
from alignpipe.merging.blocks import BlockSpec, alpha_for, layer_count, merge_tensor, validate

# key -> (shard file, shape, safetensors dtype string)
Header = dict[str, tuple[Path, tuple[int, ...], str]]


def read_header(model_dir: Path) -> Header:
    """Every tensor's shard, shape and dtype from the safetensors headers (no tensor data is read)."""
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    if not shards:
        raise MergeError(f"{model_dir} holds no .safetensors weights")
    header: Header = {}
    for shard in shards:
        with safe_open(shard, framework="pt") as f:
            for key in f.keys():
                if key in header:
                    first = header[key][0].name
                    raise MergeError(f"tensor '{key}' is stored twice in {model_dir}: {first} and {shard.name}")
                s = f.get_slice(key)
                header[key] = (shard, tuple(s.get_shape()), s.get_dtype())
    return header


def check_headers(sft: Header, rl: Header, spec: BlockSpec) -> None:
    """Raise MergeError naming the first tensor that differs in presence, shape or dtype, or a bad spec."""
    only_sft, only_rl = sorted(set(sft) - set(rl)), sorted(set(rl) - set(sft))
    if only_sft or only_rl:
        raise MergeError(f"checkpoints differ in keys: only in SFT {only_sft[:5]}, only in RLHF {only_rl[:5]}")
    for key in sorted(rl):
        (_, shape_s, dtype_s), (_, shape_r, dtype_r) = sft[key], rl[key]
        if shape_s != shape_r:
            raise MergeError(f"tensor '{key}' has shape {shape_s} in SFT but {shape_r} in RLHF")
        if dtype_s != dtype_r:
            raise MergeError(f"tensor '{key}' has dtype {dtype_s} in SFT but {dtype_r} in RLHF")
    validate(spec, layer_count(rl))
    for key in rl:
        alpha_for(key, spec)  # an unknown key fails here, before anything is written


def merge_files(sft_dir: Path, rl_dir: Path, spec: BlockSpec, out_dir: Path) -> Path:
    """out_dir/ = the block-wise merge of the two checkpoints, plus the RLHF model's non-weight files.

    `out_dir` must not exist or be empty. Non-weight files are the regular files at the top of
    `rl_dir` (config, tokenizer, generation config, shard index); sub-directories are not copied.
    """
    sft_dir, rl_dir, out_dir = Path(sft_dir), Path(rl_dir), Path(out_dir)
    sft, rl = read_header(sft_dir), read_header(rl_dir)
    check_headers(sft, rl, spec)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MergeError(f"output {out_dir} already exists and is not an empty directory")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        _write_shards(sft, rl, spec, tmp)
        for f in rl_dir.iterdir():
            if f.is_file() and f.suffix != ".safetensors":
                shutil.copy2(f, tmp / f.name)
        tmp.replace(out_dir)  # atomic; replaces an empty out_dir
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_shards(sft: Header, rl: Header, spec: BlockSpec, tmp: Path) -> None:
    """One output shard per RLHF shard, streamed tensor by tensor (`write_streamed`)."""
    by_shard: dict[Path, list[str]] = {}
    for key, (shard, _, _) in rl.items():
        by_shard.setdefault(shard, []).append(key)
    with ExitStack() as stack:
        sft_shards = sorted({shard for shard, _, _ in sft.values()})
        sft_files = {p: stack.enter_context(safe_open(p, framework="pt")) for p in sft_shards}
        for shard, keys in sorted(by_shard.items()):
            with safe_open(shard, framework="pt") as f_rl:
                metadata = {**(f_rl.metadata() or {}), "format": "pt"}
                merged = (merge_tensor(key, sft_files[sft[key][0]].get_tensor(key), f_rl.get_tensor(key), spec)
                          for key in keys)
                write_streamed(tmp / shard.name, [(key, rl[key][1], rl[key][2]) for key in keys], merged, metadata)


_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
                "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def write_streamed(path: Path, entries: list[tuple[str, tuple[int, ...], str]], tensors: Iterator[Tensor],
                   metadata: dict[str, str]) -> None:
    """Write a .safetensors file whose tensors arrive one at a time, in the order of `entries`.

    entries: (name, shape, safetensors dtype) of each tensor. The header (8-byte little-endian length,
    JSON padded with spaces to a multiple of 8, as the safetensors writer does) is written first;
    each tensor's bytes follow as it arrives, checked against its entry. The result is an ordinary
    safetensors file (`safe_open` / `load_file` read it).
    """
    offsets, pos = {}, 0
    for name, shape, dtype in entries:
        if dtype not in _DTYPE_BYTES:
            raise MergeError(f"tensor '{name}' has dtype {dtype}, which the streaming writer does not know")
        size = math.prod(shape) * _DTYPE_BYTES[dtype]
        offsets[name], pos = [pos, pos + size], pos + size
    header = {"__metadata__": metadata} | {name: {"dtype": dtype, "shape": list(shape), "data_offsets": offsets[name]}
                                           for name, shape, dtype in entries}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb", buffering=0) as f:  # unbuffered: each tensor is on disk when the next is read
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for (name, shape, _), tensor in zip(entries, tensors, strict=True):
            if tuple(tensor.shape) != tuple(shape):
                raise MergeError(f"tensor '{name}' arrived with shape {tuple(tensor.shape)}, header says {tuple(shape)}")
            data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
            if data.nbytes != offsets[name][1] - offsets[name][0]:
                raise MergeError(f"tensor '{name}' arrived as {tensor.dtype}, not the header's dtype")
            f.write(memoryview(data))
