"""DPO on pairs the pipeline builds itself: best-vs-worst labelling (ties dropped), calibration on the
pooled samples flipping pairs that only length decided, the length diagnostics, config refusal, and a
real build + 2 DPO steps on the tiny Llama with the tiny reward model."""

import math

import numpy as np
import pytest

from alignpipe.config import ConfigError, GeneratedPairsConfig, OptimConfig, RLHFConfig, load_config
from alignpipe.data import world
from alignpipe.data.snapshot import read_snapshot
from alignpipe.eval.scoring import reward_scores
from alignpipe.models import RewardModel, load_policy, load_tokenizer
from alignpipe.training import generated_pairs
from alignpipe.training.generated_pairs import build_pairs, calibrate_pool, label_pairs, pair_stats
from alignpipe.training.optim import batch_indices


class Recorder:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


def _length_slope_pool():
    """12 prompts × 2 samples; reward = length (1 per character) + quality ±0.25.

    Prompts 2j and 2j+1 both have a short (10 + j chars) and a long (40 + j chars) sample. Prompt 2j's
    short one is the better (+0.25 vs −0.25), prompt 2j+1's long one. Raw reward always prefers the
    long one: length is the only reason it is chosen for the even prompts. Every length appears
    with +0.25 once and −0.25 once, so no estimator sees a quality trend in length.
    """
    lengths = np.array([[10 + j, 40 + j] for j in range(6) for _ in range(2)])
    quality = np.array([[0.25, -0.25], [-0.25, 0.25]] * 6)
    samples = [["s" * a, "l" * b] for a, b in lengths]
    return [f"prompt {i}" for i in range(12)], samples, lengths, lengths + quality, quality


def test_calibrated_labels_flip_the_pairs_length_alone_decided():
    prompts, samples, lengths, rewards, quality = _length_slope_pool()
    # RC-LWR: the local linear fit of (length + q) with q summing to 0 at every length is the length itself
    calibrated, curve = calibrate_pool(lengths, rewards, "lwr", frac=0.3)
    assert curve is not None and curve.method == "rc_lwr"
    np.testing.assert_allclose(calibrated, quality, atol=1e-9)
    rows, stats = label_pairs(prompts, samples, rewards, calibrated)
    assert [r["chosen"][0] for r in rows] == ["s", "l"] * 6  # raw labels would say "l" for all 12
    even = rows[0]
    assert even == {"prompt": "prompt 0", "chosen": "s" * 10, "rejected": "l" * 40,
                    "chosen_raw_reward": 10.25, "rejected_raw_reward": 39.75,
                    "chosen_calibrated_reward": pytest.approx(0.25), "rejected_calibrated_reward": pytest.approx(-0.25),
                    "chosen_length": 10, "rejected_length": 40}
    assert stats["chosen_longer_raw"] == 1.0 and stats["chosen_longer_calibrated"] == 0.5


def test_pair_stats_of_the_length_slope_pool_by_hand():
    _, _, lengths, rewards, quality = _length_slope_pool()
    # (the exact calibrated rewards: the fitted ones carry rounding noise that would order the ±0.25 ties)
    stats = pair_stats(lengths, rewards, quality)
    # chosen lengths: 10+j (even prompts) and 40+j (odd) -> mean 25 + 2.5; rejected the same multiset.
    # Spearman(raw, length): reward ranks 2k−1, 2k inside length group k (length rank 2k − 1/2), so
    # Σ centred products = Σ_k 2(2k − 13)² = 1144 = Σ centred length ranks², Σ centred reward ranks² = 24·575/12 = 1150.
    # Spearman(calibrated, length): −0.25 and +0.25 once at every length -> covariance 0.
    assert stats == {"pairs_kept": 12.0, "pairs_dropped": 0.0, "chosen_longer_raw": 1.0, "chosen_longer_calibrated": 0.5,
                     "chosen_length": 27.5, "rejected_length": 27.5,
                     "abs_spearman_length_raw": pytest.approx(math.sqrt(1144 / 1150)), "abs_spearman_length_calibrated": 0.0}


def test_rc_mean_uses_a_prompts_samples_as_one_group_and_its_20_point_minimum():
    prompts, samples, lengths, rewards, _ = _length_slope_pool()
    # d = (same-prompt gap 30) / 4 = 7.5: the window of a short length holds the 12 short samples, < 20
    calibrated, _ = calibrate_pool(lengths, rewards, "mean")
    np.testing.assert_array_equal(calibrated, rewards)
    # with a 12-point minimum: b̂ = mean short reward 12.5 (quality cancels) or mean long reward 42.5
    calibrated, curve = calibrate_pool(lengths, rewards, "mean", min_points=12)
    assert curve.method == "rc_mean"
    np.testing.assert_allclose(calibrated, rewards - np.array([12.5, 42.5]), atol=1e-12)
    rows, stats = label_pairs(prompts, samples, rewards, calibrated)  # j + 0.25 − 2.5 beats j − 0.25 − 2.5
    assert [r["chosen"][0] for r in rows] == ["s", "l"] * 6 and stats["chosen_longer_calibrated"] == 0.5

    # λ = 2 takes the bias out twice: r − 2·b̂ = r − 2·(12.5 or 42.5)
    twice, _ = calibrate_pool(lengths, rewards, "mean", lam=2.0, min_points=12)
    np.testing.assert_allclose(twice, rewards - 2 * np.array([12.5, 42.5]), atol=1e-12)


def test_no_calibration_leaves_the_normalised_rewards():
    _, _, lengths, rewards, _ = _length_slope_pool()
    calibrated, curve = calibrate_pool(lengths, rewards, "none")
    assert curve is None
    np.testing.assert_array_equal(calibrated, rewards)


def test_prompts_whose_samples_all_tie_are_dropped_and_counted():
    prompts = ["a", "b", "c"]
    samples = [["x", "yy", "zzz"], ["p", "qq", "rrr"], ["u", "vvvv", "w"]]
    raw = np.array([[1.0, 2.0, 0.0], [5.0, 5.0, 5.0], [0.0, 3.0, 3.0]])
    calibrated = np.array([[1.0, 2.0, 0.0], [0.5, 0.5, 0.5], [0.0, 3.0, 3.0]])
    rows, stats = label_pairs(prompts, samples, raw, calibrated)
    # a: best "yy", worst "zzz"; b: all tied -> dropped; c: best tie "vvvv"/"w" -> first, worst "u"
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [("a", "yy", "zzz"), ("c", "vvvv", "u")]
    assert stats["pairs_kept"] == 2.0 and stats["pairs_dropped"] == 1.0
    assert stats["chosen_longer_raw"] == 0.5 and stats["chosen_longer_calibrated"] == 0.5  # yy < zzz, vvvv > u
    assert stats["chosen_length"] == 3.0 and stats["rejected_length"] == 2.0
    with pytest.raises(ValueError, match="do not match 2 prompts' samples"):
        label_pairs(prompts[:2], samples[:2], raw, calibrated)


def test_stats_of_a_pool_without_a_single_preference_are_nan_not_an_error():
    lengths = np.array([[1, 2], [3, 4]])
    stats = pair_stats(lengths, np.zeros((2, 2)), np.ones((2, 2)))
    assert stats["pairs_kept"] == 0.0 and stats["pairs_dropped"] == 2.0
    assert all(math.isnan(stats[k]) for k in ("chosen_longer_raw", "chosen_longer_calibrated", "chosen_length", "rejected_length"))
    assert stats["abs_spearman_length_raw"] == 0.0  # a constant reward carries no ordering


@pytest.mark.parametrize(("override", "key"), [("rlhf.generated_pairs.n=1", "rlhf.generated_pairs.n"),
                                               ("rlhf.dpo_pairs=generate", "rlhf.dpo_pairs"),
                                               ("rlhf.generated_pairs.temperature=0", "rlhf.generated_pairs.temperature")])
def test_config_refuses_bad_generated_pair_settings_by_key(override, key):
    with pytest.raises(ConfigError, match=f"bad value for config key '{key}'"):
        load_config(None, [override])
    assert load_config(None, []).rlhf.dpo_pairs == "dataset"  # the quickstart is unchanged


PROMPTS = ["Name a fruit.", "What is 2 + 2?", "Write one sentence about cats.", "Say hello.", "Count to three.",
           "Name a colour."]
GEN = GeneratedPairsConfig(n=4, prompts=6, temperature=1.0, max_new_tokens=6)


def test_build_pairs_labels_the_policys_samples_by_an_independent_rm_scoring(tiny_dir, tiny_rm_dir):
    policy, tok = load_policy(tiny_dir)
    rm, rm_tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    rows, stats, curve = build_pairs(policy, tok, rm, rm_tok, PROMPTS, GEN, "lwr", frac=0.5, max_length=64, seed=0)
    assert curve is not None and len(rows) + stats["pairs_dropped"] == len(PROMPTS) == stats["pairs_kept"] + stats["pairs_dropped"]
    for r in rows:
        raw = reward_scores(rm, rm_tok, [r["prompt"]] * 2, [r["chosen"], r["rejected"]], max_length=64)
        np.testing.assert_allclose([r["chosen_raw_reward"], r["rejected_raw_reward"]], raw, rtol=1e-5, atol=1e-5)
        # calibrated = (raw − 0.1)/2 (the fixture's stored stats) − b̂(length), b̂ from the pooled fit
        z = (np.array(raw) - 0.1) / 2.0 - curve([r["chosen_length"], r["rejected_length"]])
        np.testing.assert_allclose([r["chosen_calibrated_reward"], r["rejected_calibrated_reward"]], z, rtol=1e-5, atol=1e-5)
        assert r["chosen_calibrated_reward"] > r["rejected_calibrated_reward"]
        assert (r["chosen_length"], r["rejected_length"]) == (len(r["chosen"]), len(r["rejected"]))
    again, _, _ = build_pairs(policy, tok, rm, rm_tok, PROMPTS, GEN, "lwr", frac=0.5, max_length=64, seed=0)
    assert again == rows  # seeded


def test_run_trains_dpo_on_the_snapshotted_generated_pairs(tiny_dir, tiny_rm_dir, tmp_path):
    log = Recorder()
    cfg = RLHFConfig(dpo_pairs="generated", generated_pairs=GEN, reward_calibration="lwr",
                     optim=OptimConfig(lr=1e-3, steps=2, batch_size=2, warmup_ratio=0.0))
    pairs = [{"prompt": p, "chosen": "a", "rejected": "b"} for p in PROMPTS + PROMPTS[:2]]  # repeats count once
    result = generated_pairs.run(cfg, tiny_dir, tiny_rm_dir, pairs, tmp_path, log, max_length=64, seed=3)
    rows = read_snapshot(tmp_path / "generated_pairs.parquet")
    # the same seeded draw of prompts and samples, rebuilt from the starting policy
    picked = [PROMPTS[i] for i in next(batch_indices(len(PROMPTS), 6, 1, 3))]
    policy, tok = load_policy(tiny_dir)
    rm, rm_tok = RewardModel.load(tiny_rm_dir), load_tokenizer(tiny_rm_dir)
    expected, stats, _ = build_pairs(policy, tok, rm, rm_tok, picked, GEN, "lwr", frac=cfg.calibration_frac, max_length=64, seed=3)
    assert rows == expected and (tmp_path / "calibration_curve.json").is_file()  # 24 samples ≥ the 20-point minimum
    assert [s for s, _ in log.rows] == [0, 1] and abs(log.rows[0][1]["loss"] - math.log(2)) < 1e-3  # policy == reference
    assert result.metrics["pairs"] == len(rows) and {k: result.metrics[k] for k in stats} == stats
    assert set(result.data) == {"generated_pairs.parquet"}
    load_policy(tmp_path / "model")  # a loadable DPO model


# ---------------------------------------------------------------- the world's annotator as the labeller

WORLD = world.make_prompts(6, 7)
WORLD_PAIRS = [{"prompt": p["instruction"], "chosen": "a", "rejected": "b", "family": p["family"], "spec": p["spec"]}
               for p in WORLD]
SAYS = GeneratedPairsConfig(n=4, prompts=6, temperature=1.0, max_new_tokens=6, labeller="annotator")


def test_annotated_pairs_are_the_worlds_labels_of_the_policys_own_samples(tiny_dir):
    policy, tok = load_policy(tiny_dir)
    rows, stats = generated_pairs.annotate_pairs(policy, tok, WORLD_PAIRS, SAYS, seed=0, length_bias=0.5)
    samples = generated_pairs.sample(policy, tok, [p["prompt"] for p in WORLD_PAIRS], SAYS, seed=0)
    assert rows == world.label_samples(WORLD, samples, 0, 0.5)  # the same seeded samples, labelled by the world
    golds = [[world.gold_score(p["family"], p["spec"], r) for r in row] for p, row in zip(WORLD, samples, strict=True)]
    assert stats["pairs_kept"] == len(rows) and stats["pairs_kept"] + stats["pairs_dropped"] == 6
    assert stats["sample_gold"] == pytest.approx(np.mean(golds))
    assert stats["best_of_n_gold"] == pytest.approx(np.mean([max(g) for g in golds]))
    for r in rows:
        assert max(r["chosen_gold"], r["rejected_gold"]) > min(r["chosen_gold"], r["rejected_gold"])


def test_annotated_stats_by_hand():
    rows = [{"chosen": "7", "rejected": "The answer is 8.", "chosen_gold": 1.0, "rejected_gold": 0.0, "gold_agrees": True},
            {"chosen": "abcd", "rejected": "ab", "chosen_gold": 0.5, "rejected_gold": 1.0, "gold_agrees": False}]
    golds = [[1.0, 0.0, 0.5], [0.5, 1.0, 1.0], [0.25, 0.25, 0.25]]  # the third prompt tied: no row
    stats = generated_pairs.annotated_stats(rows, [["x"] * 3] * 3, golds)
    assert stats == {"pairs_kept": 2.0, "pairs_dropped": 1.0, "sample_gold": pytest.approx(4.75 / 9),
                     "best_of_n_gold": pytest.approx(2.25 / 3), "worst_of_n_gold": pytest.approx(0.75 / 3),
                     "chosen_gold": 0.75, "rejected_gold": 0.5, "chosen_length": 2.5, "rejected_length": 9.0,
                     "chosen_longer": 0.5, "gold_agrees": 0.5}


def test_run_with_the_annotator_needs_no_reward_model_and_refuses_pairs_without_a_spec(tiny_dir, tmp_path):
    cfg = RLHFConfig(dpo_pairs="generated", generated_pairs=SAYS,
                     optim=OptimConfig(lr=1e-3, steps=1, batch_size=2, warmup_ratio=0.0))
    external = [{"prompt": p, "chosen": "a", "rejected": "b"} for p in PROMPTS]
    with pytest.raises(ValueError, match=r"labeller 'annotator'.*pair prompt 0 \('Name a fruit.'\) has no family / spec"):
        generated_pairs.run(cfg, tiny_dir, None, external, tmp_path / "x", Recorder(), max_length=64, seed=0)
    assert not (tmp_path / "x").exists()
    result = generated_pairs.run(cfg, tiny_dir, None, WORLD_PAIRS, tmp_path, Recorder(), max_length=64, seed=0)
    rows = read_snapshot(tmp_path / "generated_pairs.parquet")
    assert result.metrics["pairs"] == len(rows) == result.metrics["pairs_kept"] > 0
    assert all(r["chosen_gold"] > r["rejected_gold"] for r in rows)  # length_bias 0: gold decides
    assert not (tmp_path / "calibration_curve.json").exists()


def test_config_refuses_the_annotator_for_external_preferences():
    with pytest.raises(ConfigError, match="labeller 'annotator' is the built-in world's annotator"):
        load_config(None, ["rlhf.generated_pairs.labeller=annotator", "data.preferences.path=x.jsonl"])
    with pytest.raises(ConfigError, match="bad value for config key 'rlhf.generated_pairs.labeller'"):
        load_config(None, ["rlhf.generated_pairs.labeller=human"])
