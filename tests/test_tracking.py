"""run_stage against a real MLflow sqlite store."""

import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import PipelineConfig
from alignpipe.store import StageResult
from alignpipe.tracking import end_pipeline_run, flatten, run_stage, start_pipeline_run


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return start_pipeline_run(PipelineConfig(), "name: test\n", "test", "exp", None, str(tmp_path), seed=3)


def _body(calls):
    def body(out, log):
        calls.append(out)
        (out / "table.csv").write_text("a,b\n1,2\n")
        for step in range(3):
            log.log({"loss": 1.0 / (step + 1)}, step)
        return StageResult(metrics={"final": 0.25}, data={"table.csv": "abc"})
    return body


def test_stage_child_run_records_everything_and_reuses_output(ctx):
    calls = []
    ref = run_stage(ctx, "toy", {"lr": 0.1}, {}, _body(calls))
    client = MlflowClient(ctx.tracking_uri)
    runs = client.search_runs([ctx.experiment_id], "tags.`alignpipe.stage` = 'toy'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["mlflow.parentRunId"] == ctx.parent_run_id and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1" and run.data.params["output.data.table.csv"] == "abc"
    assert run.data.tags["alignpipe.seed"] == "3" and run.data.tags["alignpipe.cached"] == "false"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
    assert run.data.metrics["final"] == 0.25
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"table.csv", "manifest.json"}

    again = run_stage(ctx, "toy", {"lr": 0.1}, {}, _body(calls))
    assert again == ref and len(calls) == 1  # not recomputed
    cached = client.search_runs([ctx.experiment_id], "tags.`alignpipe.cached` = 'true'")
    assert len(cached) == 1 and cached[0].data.metrics["final"] == 0.25
    end_pipeline_run(ctx, ok=True, metrics={"summary": 1.0})
    assert client.get_run(ctx.parent_run_id).info.status == "FINISHED"


def test_failing_stage_marks_run_failed_and_leaves_nothing_complete(ctx):
    def boom(out, log):
        (out / "half.bin").write_text("x")
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        run_stage(ctx, "bad", {}, {}, boom)
    client = MlflowClient(ctx.tracking_uri)
    run = client.search_runs([ctx.experiment_id], "tags.`alignpipe.stage` = 'bad'")[0]
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["alignpipe.error"]
    calls = []
    run_stage(ctx, "bad", {}, {}, _body(calls))  # the retry recomputes: the half-written output was never complete
    assert len(calls) == 1


def test_secrets_are_never_params():
    flat = flatten({"tracking": {"uri": "x", "api_key": "s3cr3t"}, "hub_token": "t", "model": {"name": "m"}})
    assert flat == {"tracking.uri": "x", "model.name": "m"}
