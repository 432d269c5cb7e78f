"""The ES meta-training configuration: a frozen pydantic model (no JAX import).

Defaults are the paper's Table 8 (lr 3e-2, decay 0.999, sigma 3e-2, decay 0.999, population 64)
and the original scripts' 800 generations, 1 rollout and a checkpoint every 8 generations.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from metarl_cli.config.models import OptionalBudget

Strategy = Literal["open_es", "pgpe", "snes", "sep_cma_es"]
# Strategies whose population is sampled in antithetic pairs (so popsize must be even).
ANTITHETIC: frozenset[str] = frozenset({"open_es", "pgpe"})
# Fields that may differ when a run is resumed: they do not change the search trajectory.
RESUMABLE_CHANGES: frozenset[str] = frozenset({"num_generations", "select"})
# Fields added after run dirs were first written, with the value such a run had.
ADDED_DEFAULTS: dict[str, Any] = {"task_sampling": "shared", "fitness_shaping": "centered_rank"}


class ESConfig(BaseModel):
    """Everything that determines an ES meta-training run.

    Attributes:
        algo: learned-algorithm id (`lpo`, `open`, `open_ff`, `nofeat`).
        envs: canonical training env ids; fitness is the mean of per-env normalised returns.
        architecture: the algorithm's network sizes.
        num_generations: generations to run in total (may be raised on resume).
        popsize: population members per generation.
        num_rollouts: PPO runs (seeds) per member and env; fitness is their mean.
        lr, lr_decay, lr_limit: Adam step size of the ES mean, its per-generation decay and floor.
        noise_level, sigma_decay, sigma_limit: the search sigma, its decay and floor.
        save_every_k: generations between checkpoints, periodic artefacts and evaluations.
        eval_runs: seeds per env when evaluating the mean at a checkpoint (0: no evaluation).
        timesteps: PPO budget per run (None: the preset's).
        overrides: `--set` values applied to every env's `TrainConfig`.
        seed: master seed; generation g asks and tells with `fold_in(key(seed), g)`, and its
            RL runs draw from the seed streams of `seeds.py` (fitness, selection).
        strategy: the evosax algorithm (`open_es` is the paper's).
        chunk: population runs per device per call, as `ShardedRunner`'s (None: all).
        select: which candidate becomes the output: the mean with the best periodic
            evaluation on the training envs (default; the paper counts training up to peak
            in-distribution performance), or the final mean.
        task_sampling: which runs score whom. "shared" (the paper's main runs): every member
            uses the generation's `num_rollouts` keys (common random numbers). "antithetic"
            (Supplement F, after Goldie et al. 2024): each ± pair of OpenAI-ES (members i and
            i + popsize/2) shares keys of its own, so on a gridworld distribution a generation
            meets popsize/2 levels per rollout instead of one.
        fitness_shaping: what the strategy is told: centred ranks (the paper's main runs) or
            the fitness itself ("identity", Supplement F's gridworld runs; failed members get
            the generation's worst finite fitness instead of `WORST_FITNESS`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    algo: str
    envs: list[str] = Field(min_length=1)
    architecture: dict[str, int]
    strategy: Strategy = "open_es"
    select: Literal["final", "best-eval"] = "best-eval"
    num_generations: int = Field(800, ge=1)
    popsize: int = Field(64, ge=2)
    num_rollouts: int = Field(1, ge=1)
    lr: float = Field(3e-2, gt=0.0)
    lr_decay: float = Field(0.999, gt=0.0, le=1.0)
    lr_limit: float = Field(1e-3, ge=0.0)
    noise_level: float = Field(3e-2, gt=0.0)
    sigma_decay: float = Field(0.999, gt=0.0, le=1.0)
    sigma_limit: float = Field(1e-2, ge=0.0)
    save_every_k: int = Field(8, ge=1)
    eval_runs: int = Field(8, ge=0)
    timesteps: OptionalBudget = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    chunk: int | None = Field(None, ge=1)
    task_sampling: Literal["shared", "antithetic"] = "shared"
    fitness_shaping: Literal["centered_rank", "identity"] = "centered_rank"

    # Field validators (not a model validator) so that errors name the field to change;
    # `strategy` and `select` are declared first so that they are in `info.data` here.
    @field_validator("popsize")
    @classmethod
    def _even_for_antithetic(cls, v: int, info: ValidationInfo) -> int:
        strategy = info.data.get("strategy")
        if strategy in ANTITHETIC and v % 2:
            raise ValueError(
                f"must be even for {strategy} (antithetic pairs), got {v}; use {v - 1} or {v + 1}"
            )
        return v

    @field_validator("task_sampling", "fitness_shaping")
    @classmethod
    def _open_es_only(cls, v: str, info: ValidationInfo) -> str:
        default = cls.model_fields[str(info.field_name)].default
        if v != default and info.data.get("strategy") != "open_es":
            raise ValueError(f"{v!r} needs --strategy open_es (its ± pairs and shaping)")
        return v

    @field_validator("eval_runs")
    @classmethod
    def _evals_for_best_eval(cls, v: int, info: ValidationInfo) -> int:
        if info.data.get("select") == "best-eval" and v == 0:
            raise ValueError("--select best-eval needs periodic evaluations; set --eval-runs >= 1")
        return v

    @property
    def lr_floor(self) -> float:
        """The lr never decays below this (nor is it raised to it)."""
        return min(self.lr_limit, self.lr)

    @property
    def sigma_floor(self) -> float:
        return min(self.sigma_limit, self.noise_level)


def config_differences(saved: dict[str, Any], current: ESConfig) -> list[str]:
    """Fields (other than `RESUMABLE_CHANGES`) whose values differ, as 'name: saved -> now'."""
    from metarl_cli.meta.rundir import config_differences as differences

    saved = {**ADDED_DEFAULTS, **saved}  # a run saved before these fields had their defaults
    return differences(saved, current.model_dump(mode="json"), ignore=RESUMABLE_CHANGES)
