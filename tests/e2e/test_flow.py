"""The real pipeline on the tiny config: a Prefect flow run on a local Ray, tracked in MLflow sqlite,
started through the CLI exactly as a user starts it."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.e2e
CANDIDATES = {"ma-0.5", "partwise-b0-0.5", "partwise-b1-0.5", "hma-0.5"}  # + one random vector on the slice α = 0.5
STAGES = {"model", "data", "sft", "reward_model", "reward_eval", "rlhf_dpo", "hma_learn", "evaluate_base", "evaluate_sft",
          "evaluate_dpo", *(f"evaluate_{c}" for c in CANDIDATES), "report", "promote"}


def _run(artifacts, *overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING", "RAY_ADDRESS"))}
    env |= {"HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "alignpipe.cli", "run", "--config", "configs/pipeline/tiny.yaml", f"artifacts_dir={artifacts}",
           *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("artifacts")
    _run(artifacts)
    client = MlflowClient(f"sqlite:///{artifacts}/mlflow.db")
    return artifacts, client, client.get_experiment_by_name("alignpipe").experiment_id


def _children(client, exp, parent_id):
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_parent_run_with_a_child_per_stage(first_run):
    artifacts, client, exp = first_run
    parents = client.search_runs([exp], "tags.`alignpipe.stage` = 'pipeline'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["model.name"] == "tiny" and parent.data.tags["alignpipe.seed"] == "0"
    assert {"config.yaml", "evaluation.parquet", "reward_vs_tax.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = _children(client, exp, parent.info.run_id)
    names = {c.info.run_name for c in children}
    assert STAGES <= names and len([n for n in names - STAGES if n.startswith("evaluate_random0-0.5-")]) == 1
    assert len(names) == len(STAGES) + 1
    assert all(c.info.status == "FINISHED" for c in children)
    sft = next(c for c in children if c.info.run_name == "sft")
    assert len(sft.data.params["data.data.sft.parquet"]) == 64  # the input data's content hash
    assert len(client.get_metric_history(sft.info.run_id, "loss")) == 2  # per-step metrics
    assert sft.data.tags["alignpipe.git_sha"] and sft.data.tags["alignpipe.output_dir"].startswith(str(artifacts))
    rm_eval = next(c for c in children if c.info.run_name == "reward_eval").data.metrics
    assert rm_eval["world_fresh/n_pairs"] >= 10 and 0 <= rm_eval["world_fresh/gold_agreement"] <= 1  # reward_eval.world_pairs


def test_evaluation_table_and_plot(first_run):
    artifacts, client, exp = first_run
    report = next(iter((artifacts / "stages" / "report").iterdir()))
    table = pd.read_parquet(report / "evaluation.parquet").set_index("model")
    assert {"base", "sft", "dpo"} | CANDIDATES <= set(table.index) and len(table) == 8
    assert table.loc["hma-0.5", "kind"] == "hma" and table.loc["partwise-b1-0.5", "ratios"].tolist() == [0.0, 0.5]
    for col in ("gold_score", "rm_score", "probe_accuracy", "alignment_tax", "response_length"):
        assert table[col].notna().all(), col
    assert table.loc["sft", "alignment_tax"] == 0.0
    assert table.loc["dpo", "alignment_tax"] == pytest.approx(table.loc["sft", "probe_accuracy"] - table.loc["dpo", "probe_accuracy"])
    assert table.loc["ma-0.5", "alpha"] == 0.5 and table.loc["sft", "alpha"] == 1.0 and table.loc["partwise-b0-0.5", "alpha"] == 0.25
    assert (report / "reward_vs_tax.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_pick_is_exported_logged_and_registered_under_its_alias(first_run):
    artifacts, client, exp = first_run
    promote = next(iter((artifacts / "stages" / "promote").iterdir()))
    info = json.loads((promote / "manifest.json").read_text())["info"]
    candidates = pd.read_parquet(promote / "candidates.parquet")
    assert candidates["promoted"].sum() == 1 and candidates.loc[candidates["promoted"], "model"].item() == info["model"]
    assert (promote / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    version = client.get_model_version_by_alias("alignpipe-policy", "champion")
    assert version.tags["alignpipe.candidate"] == info["model"] and version.source.startswith("runs:/")
    logged = {a.path for a in client.list_artifacts(version.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors"} <= logged
    # the registered files are the exported checkpoint, and it loads as a model
    from alignpipe.models import load_policy

    load_policy(promote / "model")


def test_rerun_reuses_every_finished_stage(first_run):
    artifacts, client, exp = first_run
    _run(artifacts)
    parents = client.search_runs([exp], "tags.`alignpipe.stage` = 'pipeline'", order_by=["attributes.start_time DESC"])
    children = _children(client, exp, parents[0].info.run_id)
    assert STAGES <= {c.info.run_name for c in children} and len(children) == len(STAGES) + 1
    assert all(c.data.tags["alignpipe.cached"] == "true" for c in children)
    assert len(client.search_model_versions("name = 'alignpipe-policy'")) == 1  # no new version for the same output
    first = {c.info.run_name: c.data.metrics for c in _children(client, exp, parents[1].info.run_id)}
    for c in children:  # a cached child reports the stage's final metrics, identical to the first run's
        assert c.data.metrics and all(first[c.info.run_name][k] == v for k, v in c.data.metrics.items()), c.info.run_name


# The report card on four models, Linear Alignment's decoder and the promoted checkpoint included: two
# likelihood verticals and one that generates, at a few items each.
CARD = ["evaluation.trust.ethics.enabled=true", "evaluation.trust.ethics.n=2", f"evaluation.trust.ethics.data_dir={SHARED_DATA}",
        "evaluation.trust.truthfulness.enabled=true", "evaluation.trust.truthfulness.n=2",
        f"evaluation.trust.truthfulness.data_dir={SHARED_DATA}", "evaluation.trust.privacy.enabled=true",
        "evaluation.trust.privacy.n_per_type=1", "evaluation.trust.privacy.pii_types=[email address]",
        "evaluation.trust.privacy.max_new_tokens=8", "evaluation.card_models=[base, sft, rlhf, linear_alignment, promoted]"]


@pytest.mark.skipif(not (SHARED_DATA / "truthfulqa").is_dir(), reason="shared data absent")
def test_other_methods_and_linear_alignment_run_as_stages(tmp_path):
    """IRFT in place of SFT, RSF in place of DPO (after the RM it samples against), Linear Alignment as a
    model, and the report card of five of the models."""
    _run(tmp_path, "sft.method=irft", "sft.irft.stages=2", "sft.irft.max_new_tokens=8", "rlhf.method=rsf",
         "rlhf.rsf.iterations=1", "rlhf.rsf.prompts_per_iteration=4", "rlhf.rsf.n=2", "rlhf.rsf.max_new_tokens=8",
         "rlhf.rsf.steps_per_iteration=1", "linear_alignment.enabled=true", "averaging.hma.enabled=false",
         "averaging.partwise_alphas=[]", "averaging.random=0", "averaging.registry.enabled=false", *CARD)
    stages = {p.name for p in (tmp_path / "stages").iterdir()}
    assert {"sft", "sft_irft", "rlhf_rsf", "evaluate_rsf", "evaluate_linear_alignment", "promote"} <= stages  # IRFT on plain SFT
    assert not {"rlhf_dpo", "hma_learn"} & stages
    report = next(iter((tmp_path / "stages" / "report").iterdir()))
    table = pd.read_parquet(report / "evaluation.parquet").set_index("model")
    assert table.loc["linear_alignment", "kind"] == "linear_alignment" and table.loc["rsf", "kind"] == "rlhf"
    rsf = json.loads(next(iter((tmp_path / "stages" / "rlhf_rsf").iterdir())).joinpath("manifest.json").read_text())
    assert rsf["metrics"]["wall_time_s"] > 0 and 0 <= rsf["metrics"]["final_kept_fraction"] <= 1  # keep: better_than_greedy
    assert {"card_base", "card_sft", "card_rsf", "card_linear_alignment", "card_promoted", "report_card"} <= stages
    card = pd.read_csv(next((tmp_path / "stages" / "report_card").glob("*/report_card.csv"))).set_index("model")
    assert list(card.index) == ["base", "sft", "rsf", "linear_alignment", "promoted"] and card["error"].isna().all()
    assert card["trust/truthfulqa_mc1"].between(0, 1).all() and card["trust/privacy_leak_rate"].between(0, 1).all()
    deltas = pd.read_csv(next((tmp_path / "stages" / "report_card").glob("*/trust_deltas.csv")))
    assert set(deltas["model"]) == {"sft", "rsf", "linear_alignment", "promoted"}
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.search_runs([client.get_experiment_by_name("alignpipe").experiment_id], "tags.`alignpipe.stage` = 'pipeline'")[0]
    assert {"report_card.html", "trust_deltas.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
