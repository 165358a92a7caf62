"""bench/pool_tune_runs: tune_rl runs pooled per setting, training seeds averaged within a ref, refs as replicates."""

import json

import pytest

from bench.pool_tune_runs import pool, read_records


def run(ref, diffs, overrides=(), seed=0, sha="abc", method="ppo"):
    return {"method": method, "seed": seed, "overrides": list(overrides), "ref": ref, "prompts_sha": sha,
            "gold_diffs": diffs}


def test_runs_of_one_ref_are_averaged_before_the_refs_are_pooled():
    # ref A: two training seeds -> per prompt [0.2, 0, 0.1]; ref B: one -> [0, 0.1, 0.2]
    rows = pool([run("A", [0.1, 0.0, 0.2]), run("A", [0.3, 0.0, 0.0], seed=10), run("B", [0.0, 0.1, 0.2])])
    assert len(rows) == 1
    row = rows[0]
    assert (row["refs"], row["runs"], row["overrides"]) == (2, 3, "(defaults)")
    assert row["per_ref"] == {"A": pytest.approx(0.1), "B": pytest.approx(0.1)}
    assert row["gain"] == pytest.approx(0.1)
    # prompt means [0.1, 0.05, 0.15]: SD 0.05, SE 0.05 / √3; the refs' gains are equal, so no seed term
    assert row["se_prompts"] == pytest.approx(0.05 / 3**0.5)
    assert row["se_seed"] == 0.0
    assert row["z"] == pytest.approx(0.1 / (0.05 / 3**0.5))


def test_settings_are_kept_apart_and_in_order():
    rows = pool([run("A", [0.1, 0.1], overrides=["rlhf.ppo.temperature=0.7"]), run("A", [0.0, 0.2]),
                 run("B", [0.3, 0.1], overrides=["rlhf.ppo.temperature=0.7"])])
    assert [(r["overrides"], r["refs"], r["gain"]) for r in rows] == [
        ("rlhf.ppo.temperature=0.7", 2, pytest.approx(0.15)), ("(defaults)", 1, pytest.approx(0.1))]


def test_refs_scored_on_different_prompts_are_refused():
    with pytest.raises(ValueError, match="different eval prompts"):
        pool([run("A", [0.1, 0.0]), run("B", [0.0, 0.1], sha="def")])


def test_read_records_takes_the_training_run_lines_only(tmp_path):
    log = tmp_path / "ppo.log"
    log.write_text("\n".join([
        "{'rollouts': 8} {'lr': 5e-06} calibration=none",
        "  [ 20.1s] step 0 reward=0.3",
        json.dumps(run("A", [0.1])),
        json.dumps({"method": "sft", "gold": 0.6}),  # tune_rl.py sft: no seed, not a training run
    ]))
    records = read_records([log])
    assert len(records) == 1 and records[0]["gold_diffs"] == [0.1] and records[0]["log"] == str(log)


def test_versus_measures_each_setting_against_another_ref_by_ref():
    control = ["sft.optim.lr=1e-5"]
    rows = pool([run("A", [0.3, 0.1], method="rft"), run("B", [0.2, 0.4], method="rft"), run("C", [0.9, 0.9], method="rft"),
                 run("A", [0.1, 0.1], overrides=control, method="more_sft"),
                 run("B", [0.2, 0.0], overrides=control, method="more_sft")], versus="more_sft")
    assert len(rows) == 1
    row = rows[0]
    assert (row["method"], row["versus"]) == ("rft", "more_sft sft.optim.lr=1e-5")
    # ref A: [0.2, 0.0], ref B: [0.0, 0.4]; ref C has no control run and is left out
    assert (row["refs"], row["runs"], row["refs_left_out"]) == (2, 2, 1)
    assert row["per_ref"] == {"A": pytest.approx(0.1), "B": pytest.approx(0.2)}
    assert row["gain"] == pytest.approx(0.15)
    assert row["se_prompts"] == pytest.approx(0.05)  # prompt means [0.1, 0.2]: SD 0.0707, over √2


def test_versus_names_one_setting():
    records = [run("A", [0.1]), run("A", [0.2], overrides=["rlhf.ppo.kl_coef=0.1"])]
    assert [r["overrides"] for r in pool(records, versus="ppo")] == ["rlhf.ppo.kl_coef=0.1"]  # "ppo": its defaults
    rows = pool(records, versus="ppo rlhf.ppo.kl_coef=0.1")
    assert [(r["overrides"], r["gain"]) for r in rows] == [("(defaults)", pytest.approx(-0.1))]
    rsf = [run("A", [0.1], overrides=[f"rlhf.rsf.n={n}"], method="rsf") for n in (4, 8)]
    with pytest.raises(ValueError, match="want one of the settings"):
        pool(records + rsf, versus="rsf")  # two rsf settings, neither its defaults: say which
    with pytest.raises(ValueError, match="different eval prompts"):
        pool(records + [run("B", [0.0]), run("B", [0.0], overrides=["rlhf.ppo.kl_coef=0.1"], sha="def")], versus="ppo rlhf.ppo.kl_coef=0.1")


def test_eval_lines_of_one_label_pool_across_refs(tmp_path):
    """tune_rl.py eval --label L prints one line per ref (no training seed): they pool as the setting eval:L."""
    log = tmp_path / "eval.log"
    lines = [run("A", [0.1, 0.3], method="eval:sft96") | {"seed": None}, run("B", [0.2, 0.2], method="eval:sft96") | {"seed": None},
             {"method": "sft", "ref": "A", "prompts_sha": "abc", "gold": 0.6}]
    log.write_text("\n".join(json.dumps(x) for x in lines))
    rows = pool(read_records([log]))
    assert [(r["method"], r["refs"], r["runs"]) for r in rows] == [("eval:sft96", 2, 2)]
    assert rows[0]["gain"] == pytest.approx(0.2)
