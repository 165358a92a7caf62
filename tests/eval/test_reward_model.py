"""Reward-model evaluation: the pure metric helper on hand-derived numbers (length-biased synthetic sets
where calibration must help, per-subset accuracy, gold agreement, degenerate input), then the whole
evaluation on the tiny RM."""

import math

import numpy as np
import pytest

from alignpipe.calibration import BiasCurve, CalibrationError, calibrate
from alignpipe.eval.reward_model import evaluate_reward_model, plot_reward_vs_length, reward_metrics
from alignpipe.eval.scoring import reward_scores
from alignpipe.models import RewardModel, load_tokenizer, resolve_model
from tests.conftest import MODEL_CACHE

# ---------------------------------------------------------------- reward_metrics, by hand


def _lwr_biased_set():
    """8 pairs, reward = length + q with q = +len/100 for chosen and −len/100 for rejected.

    Every length 100..800 appears once as chosen and once as rejected, so at each length the two
    pooled rewards average exactly to the length: the local linear fit recovers b̂(c) = c (the
    bisquare weights are equal within a length, |q| being the same), and calibration leaves ±c/100.
    """
    lengths = np.arange(1, 9) * 100.0
    chosen_len, rejected_len = lengths, np.roll(lengths, -1)  # rejected 100 longer, except 800 vs 100
    return chosen_len + chosen_len / 100, rejected_len - rejected_len / 100, chosen_len, rejected_len


def test_rc_lwr_removes_a_linear_length_bias():
    m, curve = reward_metrics(*_lwr_biased_set(), calibration="lwr")
    # raw margin = (c − r) + c/100 + r/100: −100 + (2i+1) < 0 for pairs 1..7, +709 for 800 vs 100
    assert m["pairwise_accuracy"] == 1 / 8
    # pooled: length ranks 1.5, 3.5, …, 15.5 (each twice), reward ranks 1..16 with the rejected
    # point below the chosen at each length: cov = 336, var = 336 and 340 -> ρ = √(336/340)
    assert m["abs_spearman_reward_length"] == pytest.approx(math.sqrt(84 / 85), abs=1e-12)
    assert curve.method == "rc_lwr"
    np.testing.assert_allclose(curve.bias, curve.lengths, atol=1e-9)
    # calibrated chosen +c/100 > 0 > calibrated rejected −r/100: every pair right
    assert m["calibrated_pairwise_accuracy"] == 1.0
    # −c/100 ranks 9−k and +c/100 ranks 8+k at the k-th length: every length's rank sum is 17 -> ρ = 0
    assert m["calibrated_abs_spearman"] == pytest.approx(0.0, abs=1e-12)
    # pooled rewards: mean of the lengths (the ±c/100 cancel), population std
    pooled = np.concatenate([_lwr_biased_set()[0], _lwr_biased_set()[1]])
    assert m["reward_mean"] == pytest.approx(450.0)
    assert m["reward_std"] == pytest.approx(float(np.std(pooled)))
    # sorted pooled: 99, 101, 198, 202, 297, 303, 396, 404 | 495, 505, …: median (404 + 495) / 2
    assert m["reward_p50"] == pytest.approx(449.5)


def _two_cluster_set():
    """40 pairs at lengths 100 and 1000: 20 with the short response chosen (rewards 1 vs 4), 20 with
    the long one chosen (6 vs −1). Bias b(100) = 0, b(1000) = 5, preference q = ±1."""
    chosen_len = [100.0] * 20 + [1000.0] * 20
    rejected_len = [1000.0] * 20 + [100.0] * 20
    return [1.0] * 20 + [6.0] * 20, [4.0] * 20 + [-1.0] * 20, chosen_len, rejected_len


def test_rc_mean_removes_a_step_bias_exactly():
    m, curve = reward_metrics(*_two_cluster_set(), calibration="mean")
    assert m["pairwise_accuracy"] == 0.5  # 1 < 4 wrong, 6 > −1 right
    # ranks: lengths 20.5 / 60.5; rewards −1: 10.5, 1: 30.5, 4: 50.5, 6: 70.5 around 40.5 ->
    # cov = 32000, var 32000 and 40000 -> ρ = √0.8
    assert m["abs_spearman_reward_length"] == pytest.approx(math.sqrt(0.8), abs=1e-12)
    # d = 900/4 = 225 < 900: each window is one cluster of 40 points (≥ 20), its mean 0 or 5
    assert curve.to_dict() == {"method": "rc_mean", "lengths": [100.0, 1000.0], "bias": [0.0, 5.0]}
    assert m["calibrated_pairwise_accuracy"] == 1.0  # calibrated rewards are exactly ±1
    assert m["calibrated_abs_spearman"] == 0.0  # at each length twenty +1 and twenty −1
    assert (m["reward_mean"], m["reward_p05"], m["reward_p50"], m["reward_p95"]) == (2.5, -1.0, 2.5, 6.0)


def test_rc_mean_leaves_a_small_pool_uncalibrated_and_lam_scales():
    # 16 pooled points < 20 per window: RC-Mean leaves every point alone, metrics do not move
    m, curve = reward_metrics(*_lwr_biased_set(), calibration="mean")
    assert np.isnan(curve.bias).all()
    assert m["calibrated_pairwise_accuracy"] == m["pairwise_accuracy"] == 1 / 8
    assert m["calibrated_abs_spearman"] == m["abs_spearman_reward_length"]
    # lam = 0 is the identity; lam = 0.5 removes half the bias: margin −50 + (2i+1) still < 0
    m0, _ = reward_metrics(*_lwr_biased_set(), lam=0.0)
    assert m0["calibrated_pairwise_accuracy"] == 1 / 8
    half, _ = reward_metrics(*_lwr_biased_set(), lam=0.5)
    assert half["calibrated_pairwise_accuracy"] == 1 / 8


def test_subsets_and_gold_agreement_by_hand():
    chosen, rejected = [1.0, 0.0, 2.0, 3.0, 5.0], [0.0, 1.0, 2.0, 1.0, 4.0]  # margins 1, −1, 0, 2, 1
    gold = ([1.0, 0.0, 1.0, 0.2, 0.7], [0.0, 1.0, 0.0, 0.5, 0.7])  # gold margins 1, −1, 1, −0.3, 0
    m, curve = reward_metrics(chosen, rejected, [5, 6, 7, 8, 9], [9, 8, 7, 6, 5],
                              subsets=["a", "b", "b", "b", "a"], gold=gold, calibration="none")
    assert curve is None and not any(k.startswith("calibrated") for k in m)
    assert m["pairwise_accuracy"] == 3 / 5  # the tie (pair 2) counts as wrong
    assert m["accuracy/a"] == 1.0 and m["accuracy/b"] == pytest.approx(1 / 3)
    # pair 4's gold tie is excluded; of 0..3, pairs 0 and 1 agree, pair 2 (RM tie) and 3 do not
    assert m["gold_agreement"] == 0.5
    # pooled 1,0,2,3,5,0,1,2,1,4: mean 1.9, Σ(r − 1.9)² = 24.9, sorted 0,0,1,1,1,2,2,3,4,5
    assert m["reward_mean"] == pytest.approx(1.9)
    assert m["reward_std"] == pytest.approx(math.sqrt(2.49))
    assert (m["reward_p05"], m["reward_p50"], m["reward_p95"]) == pytest.approx((0.0, 1.5, 4.55))
    assert m["n_pairs"] == 5.0
    m_all_tied, _ = reward_metrics(chosen, rejected, [1] * 5, [2] * 5, gold=([1] * 5, [1] * 5), calibration="none")
    assert math.isnan(m_all_tied["gold_agreement"])


def test_subset_and_gold_metrics_after_calibration():
    chosen, rejected, cl, rl = _two_cluster_set()
    subsets = ["short-chosen"] * 20 + ["long-chosen"] * 20
    gold = ([1.0] * 40, [0.0] * 39 + [1.0])  # the last pair's gold tie is excluded
    m, _ = reward_metrics(chosen, rejected, cl, rl, subsets=subsets, gold=gold, calibration="mean")
    assert (m["accuracy/short-chosen"], m["accuracy/long-chosen"]) == (0.0, 1.0)
    assert (m["calibrated_accuracy/short-chosen"], m["calibrated_accuracy/long-chosen"]) == (1.0, 1.0)
    # 39 untied pairs: the 20 short-chosen disagree, 19 of the long-chosen (the 20th ties in gold) agree
    assert m["gold_agreement"] == pytest.approx(19 / 39)
    assert m["calibrated_gold_agreement"] == 1.0


def test_degenerate_input_is_refused():
    chosen, rejected, cl, rl = _lwr_biased_set()
    with pytest.raises(CalibrationError, match="chosen reward at index 2 is NaN"):
        reward_metrics(np.where(np.arange(8) == 2, np.nan, chosen), rejected, cl, rl)
    with pytest.raises(CalibrationError, match="rejected reward at index 0 is infinite"):
        reward_metrics(chosen, np.where(np.arange(8) == 0, np.inf, rejected), cl, rl, calibration="none")
    with pytest.raises(ValueError, match="at least 2 pairs, got 1"):
        reward_metrics([1.0], [0.0], [1], [2])
    with pytest.raises(CalibrationError, match="differ in size"):
        reward_metrics(chosen, rejected, cl[:7], rl)
    with pytest.raises(ValueError, match="calibration must be one of"):
        reward_metrics(chosen, rejected, cl, rl, calibration="lowess")
    with pytest.raises(CalibrationError, match="frac"):
        reward_metrics(chosen, rejected, cl, rl, frac=1.5)


# ---------------------------------------------------------------- the tiny RM, end to end

PAIRS = [
    {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "It is probably 6, but I am not sure.", "subset": "math",
     "chosen_gold": 1.0, "rejected_gold": 0.0},
    {"prompt": "What is 4 * 2?", "chosen": "8", "rejected": "9", "subset": "math", "chosen_gold": 1.0, "rejected_gold": 0.0},
    {"prompt": "Name a fruit.", "chosen": "An apple is a fruit that grows on trees.", "rejected": "Carrot.",
     "subset": "chat", "chosen_gold": 0.9, "rejected_gold": 0.1},
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Hello there, it is very nice to meet you today.",
     "subset": "chat", "chosen_gold": 0.5, "rejected_gold": 0.5},
    {"prompt": "List 3 colours.", "chosen": "red, green, blue", "rejected": "red", "subset": "list",
     "chosen_gold": 1.0, "rejected_gold": 0.3},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "I think it might be Lyon or maybe Marseille.",
     "subset": "chat", "chosen_gold": 1.0, "rejected_gold": 0.0},
]


@pytest.fixture(scope="module")
def rm_and_tok():
    tiny = resolve_model("tiny", MODEL_CACHE)
    return RewardModel.from_pretrained_backbone(tiny, device="cpu").eval(), load_tokenizer(tiny)


def test_evaluate_tiny_rm(rm_and_tok, tmp_path):
    rm, tok = rm_and_tok
    m, curve = evaluate_reward_model(rm, tok, PAIRS, max_length=64, batch_size=4, calibration="lwr")
    expected = {"n_pairs", "pairwise_accuracy", "accuracy/math", "accuracy/chat", "accuracy/list",
                "reward_mean", "reward_std", "reward_p05", "reward_p50", "reward_p95",
                "abs_spearman_reward_length", "gold_agreement", "calibrated_pairwise_accuracy",
                "calibrated_accuracy/math", "calibrated_accuracy/chat", "calibrated_accuracy/list",
                "calibrated_abs_spearman", "calibrated_gold_agreement"}
    assert set(m) == expected
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    for k in expected - {"n_pairs", "reward_mean", "reward_std", "reward_p05", "reward_p50", "reward_p95"}:
        assert 0.0 <= m[k] <= 1.0, k
    assert m["reward_p05"] <= m["reward_p50"] <= m["reward_p95"] and m["reward_std"] > 0
    assert m["gold_agreement"] * 5 == pytest.approx(round(m["gold_agreement"] * 5))  # 5 untied gold pairs
    assert isinstance(curve, BiasCurve) and curve.method == "rc_lwr"

    # the metrics are reward_metrics of the RM's scores: scoring and bookkeeping agree
    prompts = [p["prompt"] for p in PAIRS]
    chosen = reward_scores(rm, tok, prompts, [p["chosen"] for p in PAIRS], max_length=64)
    rejected = reward_scores(rm, tok, prompts, [p["rejected"] for p in PAIRS], max_length=64)
    direct, _ = reward_metrics(chosen, rejected, [len(p["chosen"]) for p in PAIRS], [len(p["rejected"]) for p in PAIRS],
                               subsets=[p["subset"] for p in PAIRS],
                               gold=([p["chosen_gold"] for p in PAIRS], [p["rejected_gold"] for p in PAIRS]))
    assert m == pytest.approx(direct, abs=1e-5)

    lengths = np.array([len(p["chosen"]) for p in PAIRS] + [len(p["rejected"]) for p in PAIRS], dtype=float)
    rewards = np.array(chosen + rejected)
    png = plot_reward_vs_length(lengths, rewards, calibrate(rewards, lengths, curve), curve, tmp_path / "fig" / "rm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_reward_vs_length(lengths, rewards, None, None, tmp_path / "raw.png").stat().st_size > 0


def test_evaluate_tiny_rm_options_and_errors(rm_and_tok):
    rm, tok = rm_and_tok
    plain = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in PAIRS]
    m, curve = evaluate_reward_model(rm, tok, plain, max_length=64, calibration="none")
    assert curve is None
    assert not any(k.startswith(("accuracy/", "calibrated", "gold")) for k in m)
    family = [{**p, "family": "arithmetic"} for p in plain]
    m, curve = evaluate_reward_model(rm, tok, family, max_length=64, calibration="mean")
    assert "accuracy/arithmetic" in m and curve.method == "rc_mean"
    with pytest.raises(ValueError, match="at least 2 pairs, got 1"):
        evaluate_reward_model(rm, tok, PAIRS[:1], max_length=64)
    with pytest.raises(ValueError, match="pair 1 has none of"):
        evaluate_reward_model(rm, tok, [PAIRS[0], plain[1]], max_length=64)


def test_stage_run_on_world_and_real_pairs(tmp_path):
    import json as _json

    import pytest as _pytest

    from alignpipe.config import DataConfig, RewardEvalConfig, WorldConfig
    from alignpipe.data.hh_rlhf import load_hh_pairs
    from alignpipe.data.prepare import build_datasets
    from alignpipe.eval.reward_model import run
    from alignpipe.models import RewardModel, load_tokenizer, resolve_model
    from tests.conftest import SHARED_DATA

    hh = SHARED_DATA / "hh_rlhf" / "helpful-base_test.jsonl.gz"
    if not hh.is_file():
        _pytest.skip("shared data not present")
    tiny = resolve_model("tiny", MODEL_CACHE)
    RewardModel.from_pretrained_backbone(tiny).save(tmp_path / "rm")
    load_tokenizer(tiny).save_pretrained(tmp_path / "rm")
    heldout = build_datasets(DataConfig(world=WorldConfig(n_sft=4, n_pairs=60, n_eval_prompts=2, n_probes=2)), 0)["pairs_heldout"]
    real, _ = load_hh_pairs(str(hh), limit=12)
    out = tmp_path / "out"
    out.mkdir()
    result = run(RewardEvalConfig(), tmp_path / "rm", {"heldout": heldout, "hh_rlhf": real}, out, max_length=96)
    m = result.metrics
    for name in ("heldout", "hh_rlhf"):
        assert 0.0 <= m[f"{name}/pairwise_accuracy"] <= 1.0 and 0.0 <= m[f"{name}/calibrated_pairwise_accuracy"] <= 1.0
        assert 0.0 <= m[f"{name}/abs_spearman_reward_length"] <= 1.0
        assert (out / f"{name}_reward_vs_length.png").read_bytes()[:4] == b"\x89PNG"
        assert _json.loads((out / f"{name}_curve.json").read_text())["method"] == "rc_lwr"
    assert "heldout/gold_agreement" in m and "hh_rlhf/gold_agreement" not in m  # gold only in the built-in world
    assert any(k.startswith("heldout/accuracy/") for k in m)  # per family
