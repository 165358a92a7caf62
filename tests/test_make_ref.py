"""bench/make_ref: a part is built once, atomically; the check compares weights with a table's stages."""

import pytest

from bench.make_ref import build, check


def test_a_finished_part_is_kept_and_not_rebuilt(tmp_path):
    calls = []

    def body(d):
        calls.append(d)
        (d / "model").mkdir()
        (d / "model" / "w.safetensors").write_bytes(b"abc")
        (d / "value_head.safetensors").write_bytes(b"x")  # beside the model: not part of the ref

    part = build("sft", tmp_path, body, keep="model")
    assert part == tmp_path / "sft" and (part / "w.safetensors").read_bytes() == b"abc"
    assert not (tmp_path / ".sft.tmp").exists()
    assert build("sft", tmp_path, body, keep="model") == part
    assert len(calls) == 1


def test_a_failed_build_leaves_no_part_and_the_next_one_starts_clean(tmp_path):
    def failing(d):
        (d / "half").write_text("half-written")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        build("data", tmp_path, failing)
    assert not (tmp_path / "data").exists()
    part = build("data", tmp_path, lambda d: (d / "sft.parquet").write_bytes(b"p"))
    assert sorted(f.name for f in part.iterdir()) == ["sft.parquet"]  # the leftover of the failed build is gone


def test_check_says_whether_the_weights_are_bit_identical(tmp_path, capsys):
    for part, stage, data in (("sft", "sft", b"same"), ("rm", "reward_model", b"ours")):
        (tmp_path / "ref" / part).mkdir(parents=True)
        (tmp_path / "ref" / part / "model.safetensors").write_bytes(data)
        (tmp_path / "table" / "stages" / stage / "f00" / "model").mkdir(parents=True)
        (tmp_path / "table" / "stages" / stage / "f00" / "model" / "model.safetensors").write_bytes(b"same")
        (tmp_path / "table" / "stages" / stage / "f00" / "manifest.json").write_text("{}")
    for unfinished in (".f01.tmp-1", "f02.partial", "f03"):  # being written, checkpoints of a killed run, no manifest
        (tmp_path / "table" / "stages" / "sft" / unfinished / "model").mkdir(parents=True)
    (tmp_path / "table" / "stages" / "sft" / ".f01.tmp-1" / "manifest.json").write_text("{}")
    (tmp_path / "table" / "stages" / "sft" / "f02.partial" / "manifest.json").write_text("{}")
    check(tmp_path / "ref", tmp_path / "table")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("check sft: bit-identical")
    assert out[1].startswith("check rm: DIFFERENT")


def test_from_links_data_and_rm_and_refuses_overrides_that_would_change_them(tmp_path):
    from bench.make_ref import link_parts

    for part in ("data", "rm", "sft"):
        (tmp_path / "src" / part).mkdir(parents=True)
    with pytest.raises(SystemExit, match="reward_model.optim.steps=5"):
        link_parts(tmp_path / "src", tmp_path / "out", ["sft.optim.steps=96", "reward_model.optim.steps=5"])
    assert not (tmp_path / "out").exists()
    link_parts(tmp_path / "src", tmp_path / "out", ["sft.optim.steps=96"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data", "rm"]  # the SFT is built, not linked
    assert (tmp_path / "out" / "rm").resolve() == (tmp_path / "src" / "rm").resolve()
    link_parts(tmp_path / "src", tmp_path / "out", [])  # again: the links are there, kept
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data").mkdir()
    (tmp_path / "other" / "rm").mkdir()
    with pytest.raises(SystemExit, match="not a link"):
        link_parts(tmp_path / "other", tmp_path / "out", [])
    with pytest.raises(SystemExit, match="no rm/"):
        (tmp_path / "half" / "data").mkdir(parents=True)
        link_parts(tmp_path / "half", tmp_path / "out2", [])
