"""The alignment pipeline: model -> data -> SFT -> reward model (+ its evaluation) -> RLHF -> averaging
-> evaluation -> report.

Each stage is a Prefect task run as a Ray task with the CPU/GPU request from its config section.
Every stage records itself as a nested MLflow child run under one parent run per pipeline run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect import flow
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

from alignpipe.config import PipelineConfig, RayConfig, Resources
from alignpipe.preflight import preflight
from alignpipe.tracking import RunContext, end_pipeline_run, start_pipeline_run
from tasks.averaging import averaging_task
from tasks.data import data_task
from tasks.evaluate import evaluate_task
from tasks.model import model_task
from tasks.report import report_task
from tasks.reward_eval import reward_eval_task
from tasks.reward_model import reward_model_task
from tasks.rlhf import rlhf_task
from tasks.sft import sft_task


def on_ray(task, resources: Resources, *args):
    """Submit `task` as a Ray task holding the stage's CPUs and GPUs."""
    with remote_options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus):
        return task.submit(*args)


@flow(name="align", log_prints=True, task_runner=RayTaskRunner(address=os.environ.get("RAY_ADDRESS")))
def align(config: PipelineConfig = PipelineConfig(), config_text: str = "") -> dict:
    """Run the whole chain on `config`; returns the parent MLflow run id and the report directory."""
    preflight(config)
    check_resources(config)
    ctx = start_pipeline_run(config, config_text, config.name, config.tracking.experiment, config.tracking.uri,
                             config.artifacts_dir, config.seed)
    ok = False
    try:
        report = _stages(config, ctx)
        ok = True
    finally:
        end_pipeline_run(ctx, ok, report.manifest()["metrics"] if ok else None)
    return {"parent_run_id": ctx.parent_run_id, "report": report.path}


def _stages(c: PipelineConfig, ctx: RunContext):
    """Submit the DAG level by level, handing each level the *values* of the one before.

    Passing futures would let prefect-ray resolve them with ray.get inside the task, and Ray
    releases a task's CPUs while it blocks in ray.get: a second 2-CPU stage then starts beside it
    and both crawl (seen here: RM and DPO sharing 2 cores, RM steps 4x slower).
    """
    L = c.model.max_length
    base, data = _results(on_ray(model_task, Resources(num_cpus=1), ctx, c.model),
                          on_ray(data_task, Resources(num_cpus=1), ctx, c.data))
    sft = on_ray(sft_task, c.sft.resources, ctx, c.sft, L, base, data).result()
    rm, rlhf = _results(
        on_ray(reward_model_task, c.reward_model.resources, ctx, c.reward_model, L,
               sft if c.reward_model.init == "sft" else base, data),
        on_ray(rlhf_task, c.rlhf.resources, ctx, c.rlhf, L, sft, data),
    )
    averaged, _ = _results(on_ray(averaging_task, c.averaging.resources, ctx, c.averaging, sft, rlhf),
                           on_ray(reward_eval_task, c.reward_eval.resources, ctx, c.reward_eval, L, rm, data))
    # Every model produced: (producing stage, α on the averaging family or None).
    models = {"base": (base, None), "sft": (sft, None), c.rlhf.method: (rlhf, None)}
    models |= {f"alpha-{a:.4g}": (averaged, a) for a in c.averaging.alphas if 0.0 < a < 1.0}
    evaluations = _results(*[on_ray(evaluate_task, c.evaluation.resources, ctx, c.evaluation, L, name, ref, alpha, rm, data)
                             for name, (ref, alpha) in models.items()])
    # On the averaging family SFT is α = 1 and the RLHF model α = 0 (α = weight on SFT).
    family_alpha = {"base": None, "sft": 1.0, c.rlhf.method: 0.0} | {n: a for n, (_, a) in models.items() if a is not None}
    return on_ray(report_task, Resources(num_cpus=1), ctx, family_alpha, evaluations).result()


def _results(*futures) -> list:
    """Wait for every future of one DAG level, then return their values; a failure raises only after
    its siblings have finished, so their outputs are kept (and reused by the next run)."""
    for f in futures:
        f.wait()
    return [f.result() for f in futures]


def check_resources(config: PipelineConfig) -> None:
    """Refuse a stage request the Ray cluster can never satisfy (Ray would wait forever)."""
    import ray

    if not ray.is_initialized():
        return
    have = ray.cluster_resources()
    for stage, section in config:
        res: Resources | None = getattr(section, "resources", None)
        if res is None:
            continue
        if res.num_cpus > have.get("CPU", 0) or res.num_gpus > have.get("GPU", 0):
            raise ValueError(f"config key '{stage}.resources' asks for {res.num_cpus} CPU / {res.num_gpus} GPU but the Ray "
                             f"cluster has {have.get('CPU', 0)} CPU / {have.get('GPU', 0)} GPU")


def task_runner(cfg: RayConfig) -> RayTaskRunner:
    """Local Ray by default; the cluster at `ray.address` or RAY_ADDRESS otherwise.

    Workers get PREFECT_API_URL explicitly: without it each Ray worker starts its own temporary
    Prefect server (measured here: a 4-task toy flow took 31 s instead of 12 s).
    """
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    env = {k: os.environ[k] for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "HF_HOME") if k in os.environ}
    env["TOKENIZERS_PARALLELISM"] = "false"
    kwargs: dict = {"runtime_env": {"env_vars": env}}
    if not address:
        kwargs |= {"num_cpus": cfg.num_cpus, "include_dashboard": False}
    return RayTaskRunner(address=address, init_kwargs=kwargs)


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Use PREFECT_API_URL if set; otherwise start one local Prefect server for the driver and all workers."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home from a local run
    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)  # ship the last log lines before the server goes away
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def run_pipeline(config: PipelineConfig, config_text: str = "") -> dict:
    """Run the flow on Ray with a Prefect API shared by every worker."""
    with prefect_api():
        return align.with_options(task_runner=task_runner(config.ray))(config, config_text)
