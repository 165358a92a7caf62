"""bench/combine_tables.setting_conflicts: which of a method's settings differ between the tables pooled."""

from bench.combine_tables import setting_conflicts


def test_identical_settings_and_replicate_params_are_not_conflicts():
    a = {"rft.rounds": "2", "input.init": "d8e4", "data.data.sft.parquet": "67c8", "resources.num_cpus": "2.0",
         "output.data.negatives.parquet": "aa"}
    b = {"rft.rounds": "2", "input.init": "ffff", "data.data.sft.parquet": "0000", "resources.num_cpus": "16.0",
         "output.data.negatives.parquet": "bb"}
    assert setting_conflicts({"/t/s0": a, "/t/s1": b}) == {}


def test_changed_and_missing_settings_are_reported_per_table():
    s0 = {"rft.rounds": "2", "rft.rm_steps": "4"}  # built before rft.policy_lr existed
    s1 = {"rft.rounds": "2", "rft.rm_steps": "32", "rft.policy_lr": "5e-06"}
    s2 = {"rft.rounds": "2", "rft.rm_steps": "32", "rft.policy_lr": "5e-06"}
    assert setting_conflicts({"s0": s0, "s1": s1, "s2": s2}) == {
        "rft.policy_lr": {"s0": None, "s1": "5e-06", "s2": "5e-06"},
        "rft.rm_steps": {"s0": "4", "s1": "32", "s2": "32"},
    }
