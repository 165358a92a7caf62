"""Stage `rlhf`: preference alignment of the SFT policy — DPO on the pairs (the data stage's, or pairs of
its own samples labelled by the RM), or PPO / RSF against the RM."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from alignpipe.config import RLHFConfig
from alignpipe.data.snapshot import read_snapshot
from alignpipe.store import ArtifactRef, StageResult
from alignpipe.tracking import RunContext, run_stage
from alignpipe.training import dpo, generated_pairs, ppo, rsf
from alignpipe.training.checkpoint import NO_CHECKPOINTS, Checkpoints
from alignpipe.training.optim import set_threads

# methods that sample the policy and score it with the reward model (the others learn from pairs)
ONLINE = {"ppo": ppo.run, "rsf": rsf.run}


def generates_pairs(cfg: RLHFConfig) -> bool:
    """DPO on pairs of the SFT policy's own samples, labelled by the RM."""
    return cfg.method == "dpo" and cfg.dpo_pairs == "generated"


def annotates_pairs(cfg: RLHFConfig) -> bool:
    """DPO on pairs of the SFT policy's own samples, labelled by the built-in world's annotator."""
    return generates_pairs(cfg) and cfg.generated_pairs.labeller == "annotator"


def needs_reward_model(cfg: RLHFConfig) -> bool:
    """PPO and RSF score their samples with the RM, and so does DPO when the RM labels its own pairs."""
    return cfg.method in ONLINE or (generates_pairs(cfg) and not annotates_pairs(cfg))


def require_reward_model(cfg: RLHFConfig, reward_model) -> None:
    if needs_reward_model(cfg) and reward_model is None:
        what = "rlhf.dpo_pairs 'generated' (labeller 'reward_model')" if generates_pairs(cfg) else f"rlhf.method '{cfg.method}'"
        raise ValueError(f"{what} needs the reward model")


@task(name="rlhf", cache_policy=NONE)
def rlhf_task(ctx: RunContext, cfg: RLHFConfig, max_length: int, sft: ArtifactRef, data: ArtifactRef,
              reward_model: ArtifactRef | None = None, length_bias: float = 0.0) -> ArtifactRef:
    """`length_bias`: the built-in world's annotator's (data.world.length_bias), used when it labels the pairs."""
    set_threads(cfg.resources.num_cpus)
    require_reward_model(cfg, reward_model)

    def body(out: Path, log, checkpoints):
        return train(cfg, sft.file("model"), reward_model.file("model") if reward_model else None,
                     read_snapshot(data.file("pairs_train.parquet")), out, log, max_length=max_length, seed=ctx.seed,
                     checkpoints=checkpoints, length_bias=length_bias)

    inputs = {"sft": sft, "data": data} | ({"reward_model": reward_model} if needs_reward_model(cfg) else {})
    return run_stage(ctx, f"rlhf_{cfg.method}", stage_config(cfg, max_length, length_bias), inputs, body, resumable=True)


def train(cfg: RLHFConfig, sft_dir: Path, rm_dir: Path | None, pairs: list[dict], out: Path, log, *, max_length: int,
          seed: int, checkpoints: Checkpoints = NO_CHECKPOINTS, length_bias: float = 0.0) -> StageResult:
    """The method of cfg from the SFT policy at sft_dir: DPO on `pairs` (the data stage's pairs_train), or on pairs
    of its own samples on their prompts labelled by the RM at rm_dir or by the world's annotator (biased towards
    length with probability `length_bias`), or PPO / RSF against that RM on the pairs' prompts. The stage's
    body, and bench/tune_rl.py's, so both train alike."""
    require_reward_model(cfg, rm_dir)
    if cfg.method == "dpo" and not generates_pairs(cfg):  # the data stage's pairs
        return dpo.run(cfg, sft_dir, pairs, out, log, max_length=max_length, seed=seed, checkpoints=checkpoints)
    if generates_pairs(cfg):  # sampling + labelling are recomputed on resume; not checkpointed
        return generated_pairs.run(cfg, sft_dir, rm_dir, pairs, out, log, max_length=max_length, seed=seed,
                                   length_bias=length_bias)
    prompts = list(dict.fromkeys(r["prompt"] for r in pairs))  # the pairs' prompts, without their responses
    return ONLINE[cfg.method](cfg, sft_dir, rm_dir, prompts, out, log, max_length=max_length, seed=seed,
                              checkpoints=checkpoints)


def stage_config(cfg: RLHFConfig, max_length: int, length_bias: float = 0.0) -> dict:
    """The settings that steer this method, for the fingerprint: other methods' sections are left out, and the
    annotator's `length_bias` is in only where it labels the pairs."""
    unused = {m for m in ("ppo", "rsf") if m != cfg.method}
    if cfg.method != "dpo" or cfg.dpo_nll_weight == 0:  # at 0 DPO is what it was: its stages keep their fingerprints
        unused.add("dpo_nll_weight")
    if not generates_pairs(cfg):
        unused |= {"dpo_pairs", "generated_pairs"}
    if not needs_reward_model(cfg):  # calibration settings only steer what scores with the RM
        unused |= {"reward_calibration", "calibration_buffer", "calibration_frac", "calibration_lam"}
    elif cfg.method == "dpo":  # generated pairs are calibrated once on their pool: no rolling buffer
        unused.add("calibration_buffer")
    extra = {"annotator_length_bias": length_bias} if annotates_pairs(cfg) else {}
    return cfg.model_dump(exclude=unused) | {"max_length": max_length} | extra

