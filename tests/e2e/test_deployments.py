"""prefect.yaml's deployments on a real Prefect server, as a team runs them: infra/prefect/server.sh (its own
PREFECT_HOME, 127.0.0.1, a free port), infra/prefect/worker.sh (process pool, `prefect deploy --all`, worker),
then deployment runs: the full pipeline on the tiny config, then evaluation only and the search only on its
checkpoints. Everything is stopped afterwards."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from tests.conftest import REPO
from tests.e2e.conftest import TINY_CONFIG, clean_env, free_port, listening_addresses, stop, wait_for_http

pytestmark = pytest.mark.e2e
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    """(API URL, worker log) of a fresh Prefect server with the deployments registered and a worker polling."""
    home = tmp_path_factory.mktemp("prefect-home")
    api = f"http://127.0.0.1:{free_port()}/api"
    env = clean_env(PREFECT_HOME=str(home), PREFECT_PORT=api.split(":")[2].split("/")[0],
                    ALIGNPIPE_BIN=str(Path(sys.executable).parent))
    server_log, worker_log = home / "server.log", home / "worker.log"
    server = subprocess.Popen(["bash", "infra/prefect/server.sh"], cwd=REPO, env=env, stdout=server_log.open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        wait_for_http(f"{api}/health", server, timeout=300)
        assert listening_addresses(server.pid) == {"127.0.0.1"}
        worker = subprocess.Popen(["bash", "infra/prefect/worker.sh"], cwd=REPO, stdout=worker_log.open("w"),
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  env=env | {"PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1",
                                             "PREFECT_WORKER_PREFETCH_SECONDS": "2"})
        _wait_for_deployments(api, worker, worker_log)
        yield api, worker_log
    finally:
        if worker is not None:
            stop(worker)
        stop(server)


def _wait_for_deployments(api, worker, log, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert worker.poll() is None, log.read_text()[-3000:]
        if all(httpx.get(f"{api}/deployments/name/{name}").status_code == 200 for name in
               ("align/nightly", "evaluate-models/evaluate", "search-averages/search")) and "started" in log.read_text():
            return
        time.sleep(1)
    raise AssertionError("deployments not registered in time:\n" + log.read_text()[-3000:])


def _api(method: str, url: str, **kwargs) -> dict:
    """One call to the Prefect API, retried on 503 as Prefect's own client does: create_flow_run answered
    "Service Unavailable" once here while the machine was loaded (it passed alone; the cause was not captured)."""
    for _ in range(5):
        response = httpx.request(method, url, **kwargs)
        if response.status_code != 503:
            break
        time.sleep(2)
    return response.json()


def _run_deployment(api, name, parameters, log, timeout=600) -> dict:
    """Create a run of deployment `name`, wait until it is final, return the flow run."""
    deployment = _api("GET", f"{api}/deployments/name/{name}")
    run = _api("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters})
    assert "id" in run, run
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = _api("GET", f"{api}/flow_runs/{run['id']}")
        if run["state"]["type"] in FINAL:
            break
        time.sleep(2)
    assert run["state"]["type"] == "COMPLETED", f"{name}: {run['state']}\n" + log.read_text()[-5000:]
    return run


def _stage_dir(artifacts: Path, stage: str) -> str:
    [d] = (artifacts / "stages" / stage).iterdir()
    return str(d)


def test_the_deployments_run_the_pipeline_then_evaluation_and_search_alone(prefect, tmp_path):
    api, log = prefect
    nightly = httpx.get(f"{api}/deployments/name/align/nightly").json()
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["work_pool_name"] == "alignpipe-process"
    assert nightly["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]

    artifacts = tmp_path / "artifacts"
    config = load_config(TINY_CONFIG, [f"artifacts_dir={artifacts}"])
    t0 = time.time()
    _run_deployment(api, "align/nightly", {"config": config.model_dump(mode="json")}, log)
    print(f"align/nightly: {time.time() - t0:.0f} s")
    client = MlflowClient(f"sqlite:///{artifacts}/mlflow.db")
    exp = client.get_experiment_by_name("alignpipe").experiment_id
    [parent] = client.search_runs([exp], "tags.`alignpipe.stage` = 'pipeline'")
    assert parent.info.status == "FINISHED" and parent.data.tags["alignpipe.flow"] == "align"
    assert (artifacts / "stages" / "promote").is_dir()

    sft, dpo, rm = (_stage_dir(artifacts, s) for s in ("sft", "rlhf_dpo", "reward_model"))
    t0 = time.time()
    _run_deployment(api, "evaluate-models/evaluate", {"sft": sft, "models": {"tuned": dpo}, "reward_model": rm,
                                                      "config": config.model_dump(mode="json")}, log)
    print(f"evaluate-models/evaluate: {time.time() - t0:.0f} s")
    [run] = client.search_runs([exp], "tags.`alignpipe.flow` = 'evaluate-models'")
    children = {c.info.run_name for c in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")}
    assert children == {"data", "evaluate_sft", "evaluate_tuned", "report"}
    assert run.data.metrics["tuned/alignment_tax"] == pytest.approx(
        run.data.metrics["sft/probe_accuracy"] - run.data.metrics["tuned/probe_accuracy"])

    search = load_config(TINY_CONFIG, [f"artifacts_dir={artifacts}", "averaging.alphas=[0.25]", "averaging.partwise_alphas=[]",
                                       "averaging.random=0", "averaging.hma.enabled=false", "averaging.registry.enabled=false"])
    t0 = time.time()
    _run_deployment(api, "search-averages/search", {"sft": sft, "rlhf": dpo, "reward_model": rm,
                                                    "config": search.model_dump(mode="json")}, log)
    print(f"search-averages/search: {time.time() - t0:.0f} s")
    [run] = client.search_runs([exp], "tags.`alignpipe.flow` = 'search-averages'")
    children = {c.info.run_name for c in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")}
    assert children == {"data", "evaluate_sft", "evaluate_dpo", "evaluate_ma-0.25", "report", "promote"}
    assert "ma-0.25/gold_score" in run.data.metrics
