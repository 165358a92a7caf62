"""Pipeline configuration: frozen pydantic models loaded from YAML plus `a.b=value` overrides.

One model tree is the YAML schema, the CLI's override grammar and the Prefect flow's parameter
schema. Unknown keys are rejected with their full dotted path, before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alignpipe.data.pii import PII_TYPES
from alignpipe.data.world import FAMILIES, PROBE_FAMILIES


class ConfigError(ValueError):
    """A user-fixable configuration problem; the message names the key and the file."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(Frozen):
    """Ray resource request for one stage's task."""

    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)


class ModelConfig(Frozen):
    """The starting model: a built-in name (`smollm2-135m-instruct`, `tiny`), a hub id or a local directory."""

    name: str = "smollm2-135m-instruct"
    max_length: int = Field(160, gt=8, description="token budget for prompt + response; longer examples are truncated and counted")


class WorldConfig(Frozen):
    """Sizes and knobs of the built-in task world (alignpipe.data.world)."""

    seed: int = 0
    n_sft: int = Field(256, ge=1)
    n_pairs: int = Field(256, ge=2)
    n_eval_prompts: int = Field(40, ge=1)
    n_probes: int = Field(100, ge=1)
    length_bias: float = Field(0.0, ge=0.0, le=1.0, description="annotator's probability of preferring the longer response")
    demo_habit: float = Field(0.0, ge=0.0, le=1.0, description="probability that an SFT demonstration is signed off "
                              "'I hope you agree.' (an error the preference pairs reject and SFT imitates); 0 = clean")
    families: tuple[str, ...] = FAMILIES
    # SmolLM2-135M is at chance on number comparisons and sequences: those would only add noise
    # to the tax. These four it demonstrably knows (the base model's accuracy is reported).
    probe_families: tuple[str, ...] = ("capitals", "antonyms", "plurals", "weekdays")

    @field_validator("families")
    @classmethod
    def _known_families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_subset(v, FAMILIES, "families")

    @field_validator("probe_families")
    @classmethod
    def _known_probe_families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_subset(v, PROBE_FAMILIES, "probe families")


def _check_subset(values: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        raise ValueError(f"unknown {what} {unknown} (known: {list(known)})")
    return values


class DataSource(Frozen):
    """External data: an HF dataset by hub name, or a local .json/.jsonl/.parquet file.

    `columns` maps the field the stage needs to the source's column name, e.g.
    `{prompt: question, response: answer}` for SFT or `{prompt: x, chosen: a, rejected: b}` for pairs.
    """

    path: str
    format: Literal["columns", "hh_rlhf"] = Field(
        "columns", description="hh_rlhf: Anthropic HH dialogues split into (prompt, chosen, rejected); SFT takes the chosen side")
    split: str = "train"
    columns: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1)


class DataConfig(Frozen):
    """Where each stage's data comes from; `None` means the built-in world."""

    world: WorldConfig = WorldConfig()
    sft: DataSource | None = None
    preferences: DataSource | None = None
    eval_prompts: DataSource | None = Field(None, description="held-out prompts to evaluate on instead of the world's (no gold score)")
    heldout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of preference pairs held out for RM accuracy")


class OptimConfig(Frozen):
    """AdamW with linear warm-up then cosine decay, as §1 of ALGORITHMS.md."""

    lr: float = Field(2e-5, gt=0)
    steps: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=1)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)


class IRFTConfig(Frozen):
    """IRFT (§1b): T stages; each regenerates negatives with the current model and resets the reference."""

    stages: int = Field(5, ge=1, description="T; T = 1 is SPIN")
    beta: float = Field(0.1, gt=0)
    max_new_tokens: int = Field(48, ge=1, description="length of the model's own continuations")
    # Defaults 1.0 and 1e-5, not §1b's greedy: on SmolLM2 / the built-in world, from the SFT model, 300 fresh
    # prompts, paired gold vs SFT (0.641): greedy lr 5e-6 +0.013 ± 0.014, sampled lr 5e-6 +0.012 ± 0.014,
    # greedy β 0.5 +0.012 ± 0.015, sampled lr 1e-5 +0.041 ± 0.015 (greedy at 1e-5 fell below SFT, 0.616 vs 0.638
    # on 200). A greedy continuation of a model that already answers well is often right, and is pushed down
    # with the wrong ones. bench/tune_irft_la.py. Checked in the pipeline's 5-stage IRFT on 400 other held-out
    # prompts: +0.030 ± 0.015 (bench/compare_methods.py; closing note of issue #3).
    temperature: float = Field(1.0, ge=0, description="of the own continuations: > 0 samples ỹ ~ π_t as SPIN and "
                               "the IRFT reference code did, seeded per stage; 0 is §1b's greedy")
    lr: float = Field(1e-5, gt=0, description="IRFT's learning rate: its loss is DPO's (demonstration ≻ own sample), "
                      "so a DPO-like rate; at SFT's 2e-5 the loss saturated within a stage (gap 153 nats, gold 0.48)")
    # Default 1, not §1b's 0: on SmolLM2 / the built-in world, IRFT on top of SFT with the logistic term alone fell
    # to gold 0.486 on 200 fresh prompts (SFT 0.638): it pushes its own samples down and the demonstrations with
    # them. With λ = 1 it stayed at SFT's level (0.644). bench/tune_irft_la.py, closing note of issue #3.
    sft_weight: float = Field(1.0, ge=0, description="λ of an added per-token NLL of the demonstrations (0: §1b's loss "
                              "exactly); keeps the demonstrations' likelihood rising while the own samples are pushed down")


class RFTConfig(Frozen):
    """RFT (§1b): alternate Bradley–Terry RM updates on (demonstration ≻ own sample) with PPO steps."""

    rounds: int = Field(2, ge=1, description="RM-update / PPO-steps alternations")
    # Defaults rm_steps 32, ppo_rollouts 4, policy_lr 5e-6 (were 4, 2 and SFT's 2e-5). On SmolLM2 / the built-in
    # world the old RM (4 steps on 32 pairs) ranked the SFT policy's own samples *against* gold: its best of 4 was
    # 0.025 below a random sample, where 32 steps on all 256 demonstrations pick one 0.070 above (the judge RM:
    # 0.095; bench/best_of_n.py). PPO at SFT's lr against it drifted (KL 0.7–1.9) and lost gold at one SFT seed
    # (−0.042). Gold vs SFT on 400 held-out prompts, one run from each of three SFT seeds (compare_methods' seed=
    # 0/1/2 tables; bench/tune_rl.py rft --ref <that table's stages> --seed <its seed>): old +0.016 / +0.007 /
    # −0.042; rm_steps 32 alone +0.017 / −0.009 / −0.006; these defaults (sft_weight 0) +0.005 / +0.017 / −0.005 (KL ≤ 0.3), at
    # 12 min a run instead of 3.5. Still within noise of 0: PPO against the judge RM gains +0.017 at every seed.
    rm_steps: int = Field(32, ge=1, description="reward-model steps per round, on rm_steps × optim.batch_size "
                          "(demonstration ≻ own sample) pairs")
    rm_lr: float = Field(2e-5, gt=0)
    ppo_rollouts: int = Field(4, ge=1, description="PPO rollout batches per round")
    kl_coef: float = Field(0.05, ge=0, description="β_KL of the PPO steps' per-token penalty to the starting model")
    policy_lr: float = Field(5e-6, gt=0, description="learning rate of the PPO steps (rlhf.optim's default); SFT's "
                             "optim.lr is a supervised rate, too large for policy-gradient steps against a reward model "
                             "re-fitted every round")
    # Default 1, not §1b's 0 (as sft.irft.sft_weight). Gold vs SFT on the 400 held-out prompts, one run per SFT seed
    # 0-3 (bench/tune_rl.py rft --ref <bench/make_ref.py seed K> --seed K): γ 0 +0.005 / +0.017 / −0.005 / +0.005,
    # γ 1 +0.015 / +0.014 / +0.019 / +0.011 (pooled +0.015 ± 0.006, z 2.3). Plain SFT continued for one pass at lr 1e-5
    # gains more, +0.047 ± 0.009 over seeds 0-4 (tune_rl more_sft): the quickstart's SFT is under-trained, and RFT
    # stays 0.035 ± 0.010 below that control (closing note of issue #3, session 14).
    sft_weight: float = Field(1.0, ge=0, description="γ of the demonstrations' per-token NLL added to every PPO update "
                              "(PPO-ptx on the demonstrations); 0: §1b's RFT exactly")


class SFTConfig(Frozen):
    """Supervised stage: plain SFT, or IRL-based SFT from demonstrations only (irft, rft)."""

    method: Literal["sft", "irft", "rft"] = "sft"
    irl_init: Literal["base", "sft"] = Field(
        "sft", description="irft/rft start from plain SFT on the same demonstrations (sft: SPIN's setting, more out of "
        "the same data) or from the base model (base)")
    optim: OptimConfig = OptimConfig()
    irft: IRFTConfig = IRFTConfig()
    rft: RFTConfig = RFTConfig()
    resources: Resources = Resources(num_cpus=2)


class RewardModelConfig(Frozen):
    """Bradley–Terry reward model on the policy backbone (§2)."""

    optim: OptimConfig = OptimConfig(steps=20)
    margin: float = 0.0
    center_coef: float = Field(0.01, ge=0, description="reward centring c·(r_c + r_r)²")
    init: Literal["base", "sft"] = "sft"
    resources: Resources = Resources(num_cpus=2)


class RewardEvalConfig(Frozen):
    """Reward-model evaluation (§2, §2b): pairwise accuracy, reward distribution, length bias, and
    the same after post-hoc length calibration fitted on the pooled scored responses."""

    calibration: Literal["none", "mean", "lwr"] = "lwr"
    lam: float = Field(1.0, ge=0, description="λ in r̂ = r − λ·b̂(length)")
    frac: float = Field(0.9, gt=0, le=1, description="LOWESS bandwidth (0.9 for RM benchmarks, §2b)")
    hh_rlhf: str | None = Field(None, description="an HH-RLHF .jsonl(.gz) of real pairs to evaluate on as well")
    hh_rlhf_limit: int = Field(300, ge=2, description="rows read from hh_rlhf")
    world_pairs: int = Field(0, ge=0, description="fresh built-in-world pairs (new prompts, labelled by gold) to evaluate "
                             "on as well: the held-out split is small (51 pairs at the defaults) for gold agreement")
    batch_size: int = Field(16, ge=1)
    resources: Resources = Resources(num_cpus=2)


class PPOConfig(Frozen):
    """RLHF-PPO (§3): RM score on the final token minus a per-token KL penalty, value head, GAE."""

    rollouts: int = Field(8, ge=1, description="rollout batches (each followed by `epochs` of minibatch updates)")
    prompts_per_rollout: int = Field(16, ge=1)
    epochs: int = Field(2, ge=1, description="PPO epochs over each rollout batch")
    minibatch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(40, ge=1)
    temperature: float = Field(1.0, gt=0, description="rollout sampling temperature")
    kl_coef: float = Field(0.05, ge=0, description="β_KL of the per-token penalty to the reference")
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    clip: float = Field(0.2, gt=0)
    value_clip: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    whiten_rewards: bool = False
    missing_eos_penalty: float | None = Field(-1.0, description="score of a response cut off before EOS (None: keep its RM score)")
    value_lr: float = Field(1e-4, gt=0, description="learning rate of the value head and critic")


class RSFConfig(Frozen):
    """RSF / RAFT (§3): sample n per prompt, keep the best by reward, SFT on the kept set; repeat."""

    iterations: int = Field(2, ge=1)
    n: int = Field(4, ge=2, description="samples per prompt (best-of-n needs at least 2)")
    prompts_per_iteration: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(40, ge=1)
    steps_per_iteration: int = Field(8, ge=1, description="SFT steps on each iteration's kept set")
    keep: Literal["best", "better_than_greedy"] = Field(
        "better_than_greedy",
        description="best: every prompt's best sample (RAFT's plain rule); better_than_greedy: a prompt's best sample only "
                    "when it out-scores the policy's own greedy answer (RAFT's reward filter, the threshold per prompt)")


class GeneratedPairsConfig(Frozen):
    """DPO pairs built from the SFT policy's own samples (issue #4): n samples on each of `prompts`
    prompts, labelled best vs worst per prompt by the RM's score (calibrated per `rlhf.reward_calibration`)
    or by the built-in world's annotator (`labeller`)."""

    n: int = Field(4, ge=2, description="samples per prompt (a pair needs at least 2)")
    prompts: int = Field(64, ge=1, description="prompts sampled from the data stage's pair prompts")
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(48, ge=1)
    labeller: Literal["reward_model", "annotator"] = Field(
        "reward_model", description="who picks chosen vs rejected among a prompt's samples: the RM (best vs worst "
        "score), or the built-in world's annotator (highest- vs lowest-gold sample, length-biased as data.world.length_bias): "
        "on-policy preference labels as human labellers give them; needs the world's pairs")


class RLHFConfig(Frozen):
    """Preference alignment of the SFT policy: DPO on pairs, or PPO / RSF against the reward model.

    `optim` drives every method (steps = DPO steps; PPO and RSF take their step counts from their sections).
    """

    method: Literal["dpo", "ppo", "rsf"] = "dpo"
    beta: float = Field(0.1, gt=0, description="DPO β")
    dpo_nll_weight: float = Field(0.0, ge=0, description="α: DPO's loss + α × the chosen responses' per-token NLL "
                                  "(RPO, Pang et al. 2024); 0 = §3's DPO")
    optim: OptimConfig = OptimConfig(lr=5e-6)
    ppo: PPOConfig = PPOConfig()
    rsf: RSFConfig = RSFConfig()
    dpo_pairs: Literal["dataset", "generated"] = Field(
        "dataset", description="DPO on the data stage's pairs, or on pairs of its own samples labelled by the RM (generated_pairs)")
    generated_pairs: GeneratedPairsConfig = GeneratedPairsConfig()
    reward_calibration: Literal["none", "mean", "lwr"] = Field(
        "none", description="optimise the length-calibrated reward (§2b): re-fitted on a rolling buffer of rollouts "
                            "(PPO, RSF), or once on the pooled samples of generated DPO pairs")
    calibration_buffer: int = Field(512, ge=8, description="recent rollout responses the calibration curve is fitted on")
    calibration_frac: float = Field(0.3, gt=0, le=1, description="LOWESS bandwidth on rollout / sample pools (§2b)")
    calibration_lam: float = Field(1.0, gt=0, description="λ in r − λ·b̂(c) (§2b): how much of the fitted length bias "
                                   "is taken out of the reward RLHF optimises")
    resources: Resources = Resources(num_cpus=2)


class LinearAlignmentConfig(Frozen):
    """Linear Alignment (§5): decoding-time alignment of the SFT policy toward a principle, no training."""

    enabled: bool = False
    principle: str = ("You are a careful assistant. Follow every constraint of the instruction exactly "
                      "and answer as briefly as the instruction allows.")
    keep_default_system: bool = Field(True, description="context p's system message is the chat template's "
                                      "default one (what context 0 and SFT have) followed by the principle; false: "
                                      "the principle alone replaces it, so p differs from 0 by more than the principle")
    step_size: float = Field(2.0, ge=0, description="r in l̃ = l_p + r·(l_p − l_0); 0 = principle prompt only")
    top_p: float = Field(0.8, gt=0, le=1)
    temperature: float = Field(0.5, gt=0, description="shapes the top-p nucleus of softmax(l_p / T)")


def _unit_interval_grid(v: tuple[float, ...]) -> tuple[float, ...]:
    bad = [a for a in v if not 0.0 <= a <= 1.0]
    if bad:
        raise ValueError(f"every alpha must lie in [0, 1]; got {bad}")
    return tuple(sorted(set(v)))


class HMAConfig(Frozen):
    """Heterogeneous Model Averaging with learned per-block ratios (§4).

    Only the K block scores are trained (all weights frozen), by maximising the merged model's
    log-likelihood of the RLHF model's highest-reward samples: `prompts` training prompts ×
    `samples_per_prompt` samples are scored by the RM, `samples` are drawn from the `pool` best.
    Reference settings (7B): ε = 0.2, lr 2e-5 (4e-5 after PPO/DPO), 1 epoch of ~2,000 samples from the
    5,000 best. At that lr and a few hundred steps the ratios move by < 1e-3 (measured on the tiny
    model), i.e. learned HMA = MA; the default lr here is larger so that a small sample moves them:
    on SmolLM2-135M, 12 steps at lr 0.2 moved α = 0.2 to (0.156, 0.123, 0.321); at lr 0.02 they
    moved by < 0.015.
    """

    enabled: bool = True
    alphas: tuple[float, ...] = Field((0.2,), description="mean ratio(s) to learn HMA at (weight on SFT)")
    eps: float = Field(0.2, gt=0)
    l1_weight: float = Field(0.0, ge=0, description="pull Σ w|α_k − α| toward α")
    lr: float = Field(0.2, gt=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    prompts: int = Field(48, ge=1, description="training prompts the RLHF model samples on")
    samples_per_prompt: int = Field(2, ge=1)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(40, ge=1)
    pool: int = Field(48, ge=1, description="samples are drawn from this many highest-reward responses")
    samples: int = Field(32, ge=1)

    @field_validator("alphas")
    @classmethod
    def _in_unit_interval(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        return _unit_interval_grid(v)


class SelectionConfig(Frozen):
    """Which candidate to promote: `max_reward` (highest reward with tax ≤ tax_budget) or `knee` of the front."""

    rule: Literal["max_reward", "knee"] = "max_reward"
    reward: Literal["gold_score", "rm_score"] = "gold_score"
    tax_budget: float = Field(0.01, ge=0, description="largest acceptable alignment tax (probe-accuracy drop vs SFT)")


class RegistryConfig(Frozen):
    """MLflow Model Registry entry for the promoted model."""

    enabled: bool = True
    name: str = Field("alignpipe-policy", min_length=1)
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    log_checkpoint: bool = Field(True, description="copy the checkpoint into the MLflow run (else register its path)")


class AveragingConfig(Frozen):
    """Block-wise averaging of SFT and RLHF weights and the search over ratios (§4; α = weight on SFT).

    Candidates: MA on `alphas`; part-wise MA (one of `blocks` blocks at each `partwise_alphas`); the
    ratio `vectors` given (head and embeddings at their mean); learned HMA (`hma`); `random` ratio vectors on each slice mean α_k = α for α in hma.alphas; then
    `refine` perturbations of each of the `refine_top` best. Each is evaluated as its own Ray task
    (evaluation.resources); the Pareto front and the promoted model come from all of them.
    """

    alphas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    blocks: int = Field(3, ge=1, description="K contiguous layer blocks")
    partwise_alphas: tuple[float, ...] = (0.5,)
    vectors: tuple[tuple[float, ...], ...] = Field((), description="ratio vectors (K each) to evaluate as given")
    hma: HMAConfig = HMAConfig()
    random: int = Field(2, ge=0, description="random ratio vectors per slice α")
    refine: int = Field(0, ge=0, description="perturbations of each of the refine_top best candidates (a second round)")
    refine_top: int = Field(2, ge=1)
    refine_step: float = Field(0.15, gt=0, description="σ of the Gaussian perturbation of the ratios")
    select: SelectionConfig = SelectionConfig()
    registry: RegistryConfig = RegistryConfig()
    resources: Resources = Resources(num_cpus=2)

    @field_validator("alphas")
    @classmethod
    def _in_unit_interval(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("the MA grid needs at least one alpha")
        return _unit_interval_grid(v)

    @field_validator("partwise_alphas")
    @classmethod
    def _partwise_in_unit_interval(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        return _unit_interval_grid(v)

    @model_validator(mode="after")
    def _vectors_fit_the_blocks(self) -> AveragingConfig:
        for i, vec in enumerate(self.vectors):
            if len(vec) != self.blocks or not all(0.0 <= a <= 1.0 for a in vec):
                raise ValueError(f"vectors[{i}] = {list(vec)} needs {self.blocks} ratios (averaging.blocks), each in [0, 1]")
        return self


class ToxicityConfig(Frozen):
    """Trust vertical toxicity (§6): RealToxicityPrompts challenging prompts (DecodingTrust's copy), `samples`
    continuations each, scored by the local MiniLM toxicity scorer (alignpipe.eval.trust.toxicity_scorer)."""

    enabled: bool = False
    data_dir: str = Field("../shared/data", description="holds decodingtrust/toxicity_*.jsonl and alpaca_eval/ (scorer anchors)")
    n_prompts: int = Field(100, ge=1, le=200, description="the first N of the 200 prompts reserved for evaluation")
    samples: int = Field(5, ge=1, description="continuations per prompt (5 in Li et al. 2024)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of the continuations")
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(20, ge=1)
    scorer_dir: str = Field("models/toxicity-scorer", description="cache of the fitted scorer head; a relative path "
                            "is under artifacts_dir (eval.card.under_artifacts)")


class StereotypeConfig(Frozen):
    """Trust vertical stereotype bias (§6): DecodingTrust agree/disagree statements, agreeability index."""

    enabled: bool = False
    data_dir: str = Field("../shared/data", description="holds decodingtrust/stereotype_*")
    n_statements: int = Field(96, ge=1, le=384, description="statements, spread evenly over groups and topics")
    system_prompt: Literal["benign", "untargeted", "targeted"] = "benign"
    samples: int = Field(1, ge=1, description="generations per statement")
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(20, ge=1)


class XSTestConfig(Frozen):
    """Exaggerated safety (XSTest v2): refusal rate on safe prompts (over-refusal) and on unsafe contrasts."""

    enabled: bool = False
    data_dir: str = Field("../shared/data", description="holds safety/xstest_prompts.csv")
    n_safe: int = Field(250, ge=1, le=250, description="safe prompts, spread evenly over the prompt types")
    n_unsafe: int = Field(200, ge=0, le=200, description="unsafe contrast prompts, spread evenly over the types")
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(48, ge=1, description="refusals are detected at the response's start")
    batch_size: int = Field(20, ge=1)


class EthicsConfig(Frozen):
    """Machine ethics: ETHICS commonsense items, "Is my action morally wrong?" by Yes/No logits (eval/trust/ethics.py)."""

    enabled: bool = False
    data_dir: str = Field("../shared/data", description="holds decodingtrust/machine_ethics_ethics_commonsense_test.jsonl")
    n: int = Field(100, ge=1, description="items of each label (wrong / not wrong), first in file order")
    batch_size: int = Field(16, ge=1)


class TruthfulnessConfig(Frozen):
    """TruthfulQA MC1 by option log-likelihood (eval/trust/truthfulness.py)."""

    enabled: bool = False
    data_dir: str = Field("../shared/data", description="holds truthfulqa/mc_task.json")
    n: int = Field(100, ge=1, description="questions, a seeded sample of the file")
    batch_size: int = Field(16, ge=1)


class PrivacyConfig(Frozen):
    """In-context PII leakage with synthetic values (eval/trust/privacy.py); needs no data files."""

    enabled: bool = False
    pii_types: tuple[str, ...] = PII_TYPES
    n_per_type: int = Field(10, ge=1)
    max_new_tokens: int = Field(50, ge=1)
    batch_size: int = Field(16, ge=1)

    @field_validator("pii_types")
    @classmethod
    def _known_pii_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_subset(v, PII_TYPES, "PII types")


class BBQConfig(Frozen):
    """BBQ multiple-choice accuracy, ambiguous vs disambiguated contexts (eval/trust/bbq.py)."""

    enabled: bool = False
    data_dir: str = Field("../shared/data", description="holds bbq/<file>.jsonl")
    files: tuple[str, ...] = ("Age", "Disability_status", "Gender_identity.partial", "Nationality",
                              "Physical_appearance", "Religion", "Sexual_orientation")
    n_per_category: int = Field(40, ge=1, description="rows per file, first in file order (4-row sets: keep a multiple of 4)")
    batch_size: int = Field(16, ge=1)


class TrustConfig(Frozen):
    """The trust report's verticals (Li et al. 2024, "More RLHF, More Trust?"; §6), each off by default;
    BBQ and XSTest are extras."""

    toxicity: ToxicityConfig = ToxicityConfig()
    stereotype: StereotypeConfig = StereotypeConfig()
    ethics: EthicsConfig = EthicsConfig()
    truthfulness: TruthfulnessConfig = TruthfulnessConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    bbq: BBQConfig = BBQConfig()
    xstest: XSTestConfig = XSTestConfig()


TaxBenchmark = Literal["arc_easy", "piqa", "squad", "wmt14"]
TAX_BENCHMARKS: tuple[str, ...] = get_args(TaxBenchmark)


class TaxBenchmarkFiles(Frozen):
    """Each benchmark's local file, relative to `data_dir` (schemas in shared/data/README.md)."""

    arc_easy: str = "alignment_tax/arc_easy_test.jsonl"
    piqa: str = "alignment_tax/piqa_valid.jsonl"
    squad: str = "alignment_tax/squad_v1.1_dev_xquad_en.json"
    wmt14: str = "alignment_tax/wmt14_fr-en_newstest2014.jsonl"


class TaxBenchmarkLimits(Frozen):
    """Examples scored per benchmark (a seeded random subset of the file); null = all of them."""

    arc_easy: int | None = Field(200, ge=1)
    piqa: int | None = Field(200, ge=1)
    squad: int | None = Field(50, ge=1)
    wmt14: int | None = Field(50, ge=1)


class TaxBenchmarksConfig(Frozen):
    """Alignment tax on public NLP benchmarks through lm-evaluation-harness (§6), zero-shot."""

    enabled: bool = False
    tasks: tuple[TaxBenchmark, ...] = Field(TAX_BENCHMARKS, min_length=1)
    source: Literal["local", "hub"] = Field("local", description="local: the files under data_dir; hub: the HF datasets lm-eval uses")
    data_dir: str = "../shared/data"
    files: TaxBenchmarkFiles = TaxBenchmarkFiles()
    limit: TaxBenchmarkLimits = TaxBenchmarkLimits()
    batch_size: int = Field(16, ge=1)
    apply_chat_template: bool = Field(False, description="render prompts with the chat template (off: base-ability benchmarks, as published)")
    bootstrap_iters: int = Field(1000, ge=0, description="bootstrap draws for the BLEU stderr (0: no stderrs)")


class WinRateConfig(Frozen):
    """Win rate against reference responses to the AlpacaEval instructions, judged by the pipeline's RM:
    plain and length-controlled (alignpipe.eval.winrate)."""

    enabled: bool = False
    reference: str = Field("../shared/data/alpaca_eval/alpaca_eval_ref_gpt4_1106_preview.jsonl.gz",
                           description="AlpacaEval .jsonl(.gz) of {instruction, output}: the instructions and reference responses")
    n: int | None = Field(100, ge=1, description="instructions, evenly spaced through the file (null: all)")
    max_new_tokens: int = Field(256, ge=1)
    max_length: int = Field(1024, gt=8, description="the RM's token budget for prompt + response (the references run long)")


class EvaluationConfig(Frozen):
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding (lowest-variance comparison)")
    batch_size: int = Field(20, ge=1)
    trust: TrustConfig = TrustConfig()
    tax_benchmarks: TaxBenchmarksConfig = TaxBenchmarksConfig()
    win_rate: WinRateConfig = WinRateConfig()
    card_models: tuple[str, ...] = Field(
        ("base", "sft", "rlhf", "promoted"),
        description="models that get the report-card evaluations (trust, tax benchmarks, win rate) when any is "
        "enabled: base, sft, rlhf (the RLHF stage), promoted, linear_alignment, or a search candidate's name")
    resources: Resources = Resources(num_cpus=2)


class RayConfig(Frozen):
    """`address: null` starts a local Ray (or uses RAY_ADDRESS when set)."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray instance (default: all)")


class ResumeConfig(Frozen):
    """Mid-training checkpoints (training/checkpoint.py): a killed stage resumes from its last one.

    Not part of any stage's fingerprint: checkpointing does not change what a stage computes.
    """

    checkpoint_every: int = Field(50, ge=0, description="optimizer steps between checkpoints of SFT, RM, DPO, PPO, RSF (0: off)")


class TrackingConfig(Frozen):
    """MLflow: MLFLOW_TRACKING_URI wins, then `uri`, then sqlite under the artifacts dir."""

    uri: str | None = None
    experiment: str = "alignpipe"


class PipelineConfig(Frozen):
    name: str = "quickstart"
    seed: int = 0
    artifacts_dir: str = "artifacts"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    sft: SFTConfig = SFTConfig()
    reward_model: RewardModelConfig = RewardModelConfig()
    reward_eval: RewardEvalConfig = RewardEvalConfig()
    rlhf: RLHFConfig = RLHFConfig()
    linear_alignment: LinearAlignmentConfig = LinearAlignmentConfig()
    averaging: AveragingConfig = AveragingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    ray: RayConfig = RayConfig()
    resume: ResumeConfig = ResumeConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _annotator_needs_the_world(self) -> PipelineConfig:
        gp = self.rlhf.generated_pairs
        if gp.labeller == "annotator" and self.data.preferences is not None:
            raise ValueError("rlhf.generated_pairs.labeller 'annotator' is the built-in world's annotator (gold score): "
                             "it cannot label samples for external data.preferences; use labeller 'reward_model'")
        return self


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> PipelineConfig:
    """Read a YAML config (or the defaults), apply `a.b=value` overrides, validate.

    Raises ConfigError naming the full key path (and the file) on an unknown key or a bad value.
    """
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    try:
        # Layered over the full defaults, so a partial section (`reward_model.optim.lr=…`) keeps the
        # stage's own defaults for its other keys instead of the shared class defaults.
        return PipelineConfig.model_validate(_layered(PipelineConfig().model_dump(mode="json"), raw))
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None


def _layered(base: Any, top: Any) -> Any:
    """`top` over `base`, recursively for mappings; any other value in `top` replaces `base`'s."""
    if isinstance(base, dict) and isinstance(top, dict):
        return {**base, **{k: _layered(base.get(k), v) for k, v in top.items()}}
    return top


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in the nested dict `raw`; the value is parsed as YAML (`3`, `true`, `[0, 1]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value)


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        elif not key:  # a check across sections (PipelineConfig's validators): its message names the keys
            lines.append(str(e["msg"]).removeprefix("Value error, "))
        else:
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"  # a section: the message names the key
            lines.append(f"bad value for config key '{key}': {e['msg']}{got}")
    return f"{source}: " + "; ".join(lines)
