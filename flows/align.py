"""The alignment pipeline: model -> data -> SFT -> reward model (+ its evaluation) -> RLHF -> averaging
-> evaluation -> report.

Each stage is a Prefect task run as a Ray task with the CPU/GPU request from its config section.
Every stage records itself as a nested MLflow child run under one parent run per pipeline run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from prefect import flow
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

from alignpipe.config import ModelConfig, PipelineConfig, RayConfig, Resources
from alignpipe.eval import card
from alignpipe.eval.metrics import alignment_tax
from alignpipe.merging.blocks import layer_count
from alignpipe.merging.search import refine_candidates
from alignpipe.merging.stream import read_header
from alignpipe.preflight import preflight
from alignpipe.reproduce import pipeline_code_version, source_digests
from alignpipe.store import ArtifactRef
from alignpipe.tracking import RunContext, end_pipeline_run, start_pipeline_run
from tasks.averaging import first_round, hma_learn_task, promote_task
from tasks.card import card_task, report_card_task
from tasks.data import data_task
from tasks.evaluate import evaluate_task
from tasks.model import model_task, stage_output
from tasks.report import report_task
from tasks.reward_eval import reward_eval_task
from tasks.reward_model import reward_model_task
from tasks.rlhf import needs_reward_model, rlhf_task
from tasks.sft import sft_task


def on_ray(task, resources: Resources, *args):
    """Submit `task` as a Ray task holding the stage's CPUs and GPUs."""
    with remote_options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus):
        return task.submit(*args)


def given_checkpoint(ctx: RunContext, name: str, path: str) -> ArtifactRef:
    """A checkpoint handed to a partial flow: a finished stage output as it is, a plain Hugging Face
    model directory imported into the stage store as stage `model_<name>`."""
    return stage_output(path) or on_ray(model_task, Resources(num_cpus=1), ctx, ModelConfig(name=path), f"model_{name}").result()


def task_runner(cfg: RayConfig) -> RayTaskRunner:
    """Local Ray by default; the cluster at `ray.address` or RAY_ADDRESS otherwise.

    Workers get PREFECT_API_URL explicitly: without it each Ray worker starts its own temporary
    Prefect server (measured here: a 4-task toy flow took 31 s instead of 12 s). A local Ray starts
    no dashboard (one fewer open port).
    """
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    env = {k: os.environ[k] for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "HF_HOME") if k in os.environ}
    env["TOKENIZERS_PARALLELISM"] = "false"
    kwargs: dict = {"runtime_env": {"env_vars": env}}
    if not address:
        kwargs |= {"num_cpus": cfg.num_cpus, "include_dashboard": False}
    return RayTaskRunner(address=address, init_kwargs=kwargs)


# The runner a deployment run gets, fixed when the flow is imported: a local Ray over all CPUs, or the cluster
# at RAY_ADDRESS in the worker's environment (`config.ray` is read only by run_pipeline, i.e. `alignpipe run`).
@flow(name="align", log_prints=True, task_runner=task_runner(RayConfig()))
def align(config: PipelineConfig = PipelineConfig(), config_text: str = "") -> dict:
    """Run the whole chain on `config`; returns the parent MLflow run id and the report directory."""
    return tracked(config, config_text, "align", lambda ctx: _stages(config, ctx))


def tracked(config: PipelineConfig, config_text: str, flow_name: str, stages: Callable[[RunContext], ArtifactRef]) -> dict:
    """Check `config`, open the MLflow parent run, run `stages(ctx)` (returning the report stage), close the run."""
    preflight(config)
    check_resources(config)
    ctx = start_pipeline_run(config, config_text, config.name, config.tracking.experiment, config.tracking.uri,
                             config.artifacts_dir, config.seed, checkpoint_every=config.resume.checkpoint_every,
                             flow=flow_name, sources=source_digests(config), pipeline_code=pipeline_code_version())
    ok = False
    try:
        report = stages(ctx)
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
    L, av = c.model.max_length, c.averaging
    base, data = wait_all(on_ray(model_task, Resources(num_cpus=1), ctx, c.model),
                          on_ray(data_task, Resources(num_cpus=1), ctx, c.data))
    check_blocks(av.blocks, base)  # before any training: a bad block count would only fail at the search
    if c.sft.method != "sft" and c.sft.irl_init == "sft":  # IRFT/RFT on top of plain SFT on the same data
        plain = on_ray(sft_task, c.sft.resources, ctx, c.sft.model_copy(update={"method": "sft"}), L, base, data).result()
        sft = on_ray(sft_task, c.sft.resources, ctx, c.sft, L, plain, data).result()
    else:
        sft = on_ray(sft_task, c.sft.resources, ctx, c.sft, L, base, data).result()
    rm_future = on_ray(reward_model_task, c.reward_model.resources, ctx, c.reward_model, L,
                       sft if c.reward_model.init == "sft" else base, data)
    if needs_reward_model(c.rlhf):  # PPO, RSF and DPO on its own samples score them with the RM: it comes first
        rm = rm_future.result()
        rlhf = on_ray(rlhf_task, c.rlhf.resources, ctx, c.rlhf, L, sft, data, rm).result()
    else:  # DPO learns from the pairs (or the world's annotator labels its samples): it trains beside the RM
        rm, rlhf = wait_all(rm_future, on_ray(rlhf_task, c.rlhf.resources, ctx, c.rlhf, L, sft, data, None,
                                              c.data.world.length_bias))
    return search_stages(c, ctx, base, data, sft, rm, rlhf, reward_eval=True)


def search_stages(c: PipelineConfig, ctx: RunContext, base, data, sft, rm, rlhf, *, reward_eval: bool):
    """Learned HMA, the candidate evaluations (with base, SFT, RLHF and Linear Alignment), report, promotion."""
    L, av = c.model.max_length, c.averaging
    world = c.data.world if c.data.preferences is None else None  # fresh world pairs only for a world run
    level = [on_ray(reward_eval_task, c.reward_eval.resources, ctx, c.reward_eval, L, rm, data, world)] if reward_eval else []
    if av.hma.enabled:
        level.append(on_ray(hma_learn_task, av.resources, ctx, av, L, sft, rlhf, rm, data))
    learned = wait_all(*level)[-1] if av.hma.enabled else None
    # Every model evaluated: name -> (checkpoint stage, candidate or None, table entry {kind, alpha, spec}).
    models: dict[str, tuple] = {"base": (base, None, {"kind": "base", "alpha": None})} if base is not None else {}
    models |= {"sft": (sft, None, {"kind": "sft", "alpha": 1.0}), c.rlhf.method: (rlhf, None, {"kind": "rlhf", "alpha": 0.0})}
    if c.linear_alignment.enabled:  # a decoding-time aligner on the SFT policy: one more point on the plot
        models["linear_alignment"] = (sft, None, {"kind": "linear_alignment", "alpha": None})
    candidates = first_round(av, rlhf, learned, ctx.seed)
    models |= {cand.name: (rlhf, cand, _entry(cand)) for cand in candidates}
    carded = card_models(c, models) if card.sections(c.evaluation) else []  # refused now, not after the search
    evaluations = dict(zip(models, wait_all(*[submit_evaluation(c, ctx, name, ref, cand, sft, rm, data)
                                              for name, (ref, cand, _) in models.items()]), strict=True))
    if av.refine:  # second round: perturb the best candidates found so far
        sft_acc = evaluations["sft"].manifest()["metrics"]["probe_accuracy"]
        ranked = sorted(candidates, key=lambda cand: _objective(evaluations[cand.name], sft_acc, av), reverse=True)
        more = refine_candidates(ranked[: av.refine_top], av.refine, av.refine_step, ctx.seed, _n_layers(rlhf), set(models))
        models |= {cand.name: (rlhf, cand, _entry(cand)) for cand in more}
        evaluations |= dict(zip([m.name for m in more], wait_all(*[submit_evaluation(c, ctx, m.name, rlhf, m, sft, rm, data)
                                                                   for m in more]), strict=True))
    report = on_ray(report_task, Resources(num_cpus=1), ctx, {n: e for n, (_, _, e) in models.items()},
                    [evaluations[n] for n in models]).result()
    promoted = on_ray(promote_task, Resources(num_cpus=1), ctx, av, report, sft, rlhf).result()
    if carded:
        card_stages(c, ctx, {**models, "promoted": (promoted, None, {"kind": "promoted"})}, carded, sft, rm)
    return report


def card_models(c: PipelineConfig, models: dict) -> list[str]:
    """The names in `evaluation.card_models` as keys of `models` ("rlhf" is the RLHF stage's model,
    "promoted" the promotion's); an unknown name is refused naming the choices."""
    known = [*models, "promoted", "rlhf"]
    out = []
    for name in c.evaluation.card_models:
        if name not in known:
            raise ValueError(f"config key 'evaluation.card_models' names {name!r}, which this run does not evaluate; "
                             f"choose from {known}")
        out.append(c.rlhf.method if name == "rlhf" else name)
    return list(dict.fromkeys(out))


def card_stages(c: PipelineConfig, ctx: RunContext, models: dict, names: list[str], sft, rm) -> None:
    """A card task per model, then the report card; a model whose card fails is a row with its error,
    the others' cards are kept, and the run fails afterwards naming it."""
    futures = {}
    for name in names:
        ref, cand, _ = models[name]
        merge = (sft, cand.to_dict()) if cand is not None else None
        aligner = c.linear_alignment if name == "linear_alignment" else None
        futures[name] = on_ray(card_task, c.evaluation.resources, ctx, c.evaluation, name, ref, rm, merge, aligner)
    for f in futures.values():
        f.wait()
    cards = {n: f.result() if f.state.is_completed() else f"{f.state.name}: {f.state.message}" for n, f in futures.items()}
    on_ray(report_card_task, Resources(num_cpus=1), ctx, {n: models[n][2]["kind"] for n in names}, cards).result()
    failed = {n: v for n, v in cards.items() if isinstance(v, str)}
    if failed:
        raise RuntimeError(f"report card: the card of {sorted(failed)} failed ({failed}); the other models' cards are "
                           "in the report_card stage")


def submit_evaluation(c: PipelineConfig, ctx: RunContext, name: str, ref, cand, sft, rm, data):
    merge = (sft, cand.to_dict()) if cand is not None else None
    aligner = c.linear_alignment if name == "linear_alignment" else None
    return on_ray(evaluate_task, c.evaluation.resources, ctx, c.evaluation, c.model.max_length, name, ref, rm, data, merge,
                  aligner)


def _entry(cand) -> dict:
    return {"kind": cand.kind, "alpha": cand.alpha, "spec": cand.to_dict()}


def _objective(evaluation, sft_probe_accuracy: float, av) -> float:
    """The selection reward, or −inf beyond the tax budget: the refine round aims inside the budget."""
    m = evaluation.manifest()["metrics"]
    within = alignment_tax(m["probe_accuracy"], sft_probe_accuracy) <= av.select.tax_budget + 1e-9  # as select()
    return m[av.select.reward] if within else float("-inf")


def _n_layers(ref) -> int:
    return layer_count(read_header(ref.file("model")))


def check_blocks(k: int, base) -> None:
    """Refuse `averaging.blocks` the model cannot be split into, naming both numbers."""
    import json

    n = json.loads(base.file("model").joinpath("config.json").read_text()).get("num_hidden_layers")
    if n is not None and not 1 <= k <= n:
        raise ValueError(f"config key 'averaging.blocks' is {k} but the model has {n} layers: need 1 <= blocks <= {n}")


def wait_all(*futures) -> list:
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
