import json

import pytest

from alignpipe.config import DataConfig, DataSource, WorldConfig
from alignpipe.data.prepare import build_datasets, run, split_pairs
from alignpipe.data.snapshot import content_hash, read_snapshot
from alignpipe.data.sources import DataError


def _small() -> DataConfig:
    return DataConfig(world=WorldConfig(n_sft=20, n_pairs=30, n_eval_prompts=10, n_probes=12))


def test_world_datasets_and_no_eval_leak():
    d = build_datasets(_small(), seed=0)
    assert len(d["sft"]) == 20 and len(d["pairs_train"]) + len(d["pairs_heldout"]) == 30
    assert len(d["pairs_heldout"]) == 6  # 20 % of 30
    assert len(d["eval_prompts"]) == 10 and len(d["probes"]) == 12
    train_prompts = {r["prompt"] for r in d["sft"]} | {r["prompt"] for r in d["pairs_train"] + d["pairs_heldout"]}
    ev = d["eval_prompts"]
    assert {r["family"] for r in ev} == set(_small().world.families)  # every family evaluated, 2 each
    assert all(r["seen_in_training"] == (r["prompt"] in train_prompts) for r in ev)
    assert not any(r["seen_in_training"] for r in ev if r["family"] != "lowercase")  # large families: all unseen
    assert len({r["prompt"] for r in ev}) == len(ev)
    assert d == build_datasets(_small(), seed=0)  # deterministic


def test_split_pairs_is_seeded_and_refuses_one_pair():
    rows = [{"i": i} for i in range(10)]
    tr, held = split_pairs(rows, 0.3, seed=1)
    assert len(held) == 3 and sorted(r["i"] for r in tr + held) == list(range(10))
    assert split_pairs(rows, 0.3, seed=1) == (tr, held)
    with pytest.raises(ValueError, match="at least 2"):
        split_pairs(rows[:1], 0.5, seed=0)


def test_run_snapshots_with_hashes(tmp_path):
    result = run(_small(), 0, tmp_path)
    assert set(result.data) == {f"{n}.parquet" for n in ("sft", "pairs_train", "pairs_heldout", "eval_prompts", "probes")}
    for name, h in result.data.items():
        assert content_hash(read_snapshot(tmp_path / name)) == h
    assert result.metrics["rows_sft"] == 20


def test_external_pairs_with_mapping_and_bad_row(tmp_path):
    p = tmp_path / "pairs.jsonl"
    rows = [{"q": f"question {i}", "good": "yes", "bad": "no"} for i in range(5)]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    src = DataSource(path=str(p), columns={"prompt": "q", "chosen": "good", "rejected": "bad"})
    d = build_datasets(DataConfig(world=_small().world, preferences=src), seed=0)
    assert len(d["pairs_train"]) == 4 and set(d["pairs_train"][0]) == {"prompt", "chosen", "rejected"}
    rows[3]["bad"] = ""
    p.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"pairs.jsonl row 3: field 'rejected' \(column 'bad'\)"):
        build_datasets(DataConfig(world=_small().world, preferences=src), seed=0)


def test_hh_rlhf_dialogues_feed_sft_pairs_and_eval_prompts(tmp_path):
    import gzip

    chosen = "\n\nHuman: Name a fruit.\n\nAssistant: An apple."
    rows = [{"chosen": chosen.replace("fruit", f"fruit {i}"), "rejected": chosen.replace("fruit", f"fruit {i}").replace("An apple.", "No.")}
            for i in range(6)]
    path = tmp_path / "helpful-online_test.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    src = {"path": str(path), "format": "hh_rlhf"}
    cfg = DataConfig(world=WorldConfig(n_probes=4), sft=DataSource(**src, limit=4), preferences=DataSource(**src),
                     eval_prompts=DataSource(**src, limit=2))
    d = build_datasets(cfg, seed=0)
    assert d["sft"] == [{"prompt": f"Name a fruit {i}.", "response": "An apple."} for i in range(4)]
    pairs = d["pairs_train"] + d["pairs_heldout"]
    assert sorted(p["prompt"] for p in pairs) == [f"Name a fruit {i}." for i in range(6)]
    assert all(p["chosen"] == "An apple." and p["rejected"] == "No." for p in pairs)
    assert d["eval_prompts"] == [{"id": f"external-{i}", "family": "external", "prompt": f"Name a fruit {i}.", "spec": "",
                                  "seen_in_training": True} for i in range(2)]


def test_external_eval_prompts_have_no_gold():
    import math

    from alignpipe.eval.scoring import gold_scores

    assert math.isnan(gold_scores([{"family": "external", "spec": ""}], ["anything"])[0])
