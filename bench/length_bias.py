"""The length-bias experiment (issue #4; ALGORITHMS §2, §2b): what an annotator's length bias costs the
reward model and the policy, and how much post-hoc length calibration gives back.

Four pipeline runs through the CLI, sharing one artifacts directory (stages they have in common are
computed once; a second call of this script only reads the cached stages back):

    unbiased  configs/pipeline/quickstart.yaml     the built-in world, annotator without length bias
    biased    configs/pipeline/length_bias.yaml    the annotator prefers the longer response half the time
    dpo_raw   configs/pipeline/length_bias_dpo.yaml  DPO on the SFT policy's own samples labelled by the biased RM
    dpo_lwr   the same with rlhf.reward_calibration=lwr: labels from the RC-LWR-calibrated reward

Every run scores its RM on `--world-pairs` fresh gold-labelled pairs of the world (reward_eval.world_pairs)
besides the held-out split, evaluates the policies on `--eval-prompts` held-out prompts (the quickstart's
40 leave a gold difference of 0.05 within noise: a prompt's gold SD is ~0.33), and cuts the averaging
search to one MA midpoint (not what is measured here).

    .venv/bin/python bench/length_bias.py [--artifacts DIR] [--world-pairs 400] [--eval-prompts 200]
        [key=value overrides for every run]

Prints two tables, and logs them as the MLflow runs "length-bias-rm" and "length-bias-policy" (a .csv each):
 (a) agreement of the RM with the gold preference, unbiased / biased raw / biased calibrated, and the
     recovery (calibrated − raw) / (unbiased − raw): the share of the agreement the bias cost that
     calibration gives back (target ≥ 0.5);
 (b) |Spearman(reward, length)| raw and calibrated;
 (c) gold score and mean response length (characters) of SFT and of the DPO policy trained on raw vs
     calibrated labels (targets: calibrated length within 20 % of SFT's; calibrated gold ≥ raw gold).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline_runs import REPO, client, log_table, run_pipeline, stage_metrics  # noqa: E402

CUT_SEARCH = ["averaging.alphas=[0.5]", "averaging.partwise_alphas=[]", "averaging.random=0",
              "averaging.hma.enabled=false", "averaging.registry.enabled=false", "averaging.select.tax_budget=1.0"]
RUNS = {  # name -> (config, extra overrides)
    "unbiased": ("configs/pipeline/quickstart.yaml", ["name=lb_unbiased"]),  # + the biased config's reward_eval.frac
    "biased": ("configs/pipeline/length_bias.yaml", []),
    "dpo_raw": ("configs/pipeline/length_bias_dpo.yaml", []),
    "dpo_lwr": ("configs/pipeline/length_bias_dpo.yaml", ["rlhf.reward_calibration=lwr", "name=length_bias_dpo_lwr"]),
}


def recovery(unbiased: float, raw: float, calibrated: float) -> float:
    """Share of the gold agreement the bias cost (unbiased − raw) that calibration gave back; NaN when
    the bias cost nothing."""
    cost = unbiased - raw
    return (calibrated - raw) / cost if cost > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    ap.add_argument("--world-pairs", type=int, default=400)
    ap.add_argument("--eval-prompts", type=int, default=200)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()

    import pandas as pd

    from alignpipe.config import load_config

    common = [*CUT_SEARCH, f"reward_eval.world_pairs={a.world_pairs}", f"data.world.n_eval_prompts={a.eval_prompts}",
              *a.overrides]
    biased = load_config(RUNS["biased"][0], common)
    frac = biased.reward_eval.frac  # both RMs calibrated with one bandwidth
    mlflow, rm, policy = client(RUNS["biased"][0], common, a.artifacts), {}, {}
    for name, (config, extra) in RUNS.items():
        if name == "unbiased":
            extra = [*extra, f"reward_eval.frac={frac}"]
        out = run_pipeline(config, a.artifacts, common + extra)
        rm[name] = stage_metrics(mlflow, out["parent_run_id"], "reward_eval")
        policy[name] = pd.read_parquet(out["report"] / "evaluation.parquet").set_index("model")
        print(f"{name}: MLflow parent run {out['parent_run_id']}", flush=True)

    rm_table = pd.DataFrame(rm_rows(rm))
    policy_table = pd.DataFrame(policy_rows(policy))
    fmt = {"float_format": lambda x: f"{x:.3f}", "na_rep": "-", "index": False}
    print(rm_table.to_string(**fmt), policy_table.to_string(**fmt), sep="\n\n")

    experiment = biased.tracking.experiment
    params = {"world_pairs": str(a.world_pairs), "eval_prompts": str(a.eval_prompts),
              "overrides": " ".join(a.overrides) or "-"}
    rid = log_table(mlflow, experiment, "length-bias-rm", rm_table, params, ["unbiased", "raw", "calibrated"], key="measure")
    pid = log_table(mlflow, experiment, "length-bias-policy", policy_table, params,
                    ["gold_score", "rm_score", "response_length"], key="policy")
    print(f"MLflow runs {rid} (length-bias-rm) and {pid} (length-bias-policy)")


def rm_rows(rm: dict[str, dict[str, float]]) -> list[dict]:
    """(a) gold agreement with its recovery and (b) |Spearman(reward, length)|, per evaluation split."""
    u, b, rows = rm["unbiased"], rm["biased"], []
    for split in ("world_fresh", "heldout"):
        agree = {"unbiased": u[f"{split}/gold_agreement"], "raw": b[f"{split}/gold_agreement"],
                 "calibrated": b[f"{split}/calibrated_gold_agreement"],
                 "unbiased_calibrated": u[f"{split}/calibrated_gold_agreement"]}
        rows.append({"measure": f"gold_agreement/{split}", **agree,
                     "recovery": recovery(agree["unbiased"], agree["raw"], agree["calibrated"])})
        rows.append({"measure": f"abs_spearman/{split}", "unbiased": u[f"{split}/abs_spearman_reward_length"],
                     "raw": b[f"{split}/abs_spearman_reward_length"], "calibrated": b[f"{split}/calibrated_abs_spearman"],
                     "unbiased_calibrated": u[f"{split}/calibrated_abs_spearman"]})
    return rows


def policy_rows(policy: dict) -> list[dict]:
    """(c) SFT and the DPO policies: gold, RM score (each run's own RM), mean length and its change vs SFT."""
    sft = policy["dpo_raw"].loc["sft"]
    picked = {"sft": sft, "dpo_generated_raw": policy["dpo_raw"].loc["dpo"],
              "dpo_generated_calibrated": policy["dpo_lwr"].loc["dpo"],
              "dpo_annotator_pairs_biased": policy["biased"].loc["dpo"],
              "dpo_annotator_pairs_unbiased": policy["unbiased"].loc["dpo"]}
    return [{"policy": name, "gold_score": r.gold_score, "rm_score": r.rm_score, "response_length": r.response_length,
             "length_vs_sft": r.response_length / sft.response_length - 1} for name, r in picked.items()]


if __name__ == "__main__":
    main()
