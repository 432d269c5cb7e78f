"""The symbolic distillation configuration: a frozen pydantic model (no JAX import).

Defaults are Table 10 of the paper mapped to Operon (see docs/symbolic.md), the search space
from each algorithm (`algorithm.symbolic_search`: programs of at most 40 nodes for LPO and 60
for the optimisers, populations of about PySR's 31 x 33 and 160 x 33), then 10 generations per
round, 40 rounds, batches of 5000 rows, constant optimisation on.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from metarl_cli.config.models import OptionalBudget
from metarl_cli.meta.symbolic.backends import SearchSettings

RESUMABLE_CHANGES = frozenset({"rounds", "threads", "num_runs"})


class SymbolicConfig(BaseModel):
    """Everything that determines a symbolic distillation run.

    Attributes:
        algo: the teacher's algorithm (`lpo`, `open_ff`, `nofeat`).
        teacher_digest: the teacher artefact's file sha256.
        backend: `operon` (default) or `pysr`.
        rounds: search rounds (the paper's 40); each ends with an RL evaluation.
        iterations: generations per round (the paper's 10 PySR iterations).
        population, max_size, max_depth, operators: the program search space (Table 10).
        optimizer_iterations, local_search_probability: constant optimisation.
        batch_size: rows per round (Table 10's 5000).
        num_points: teacher data points (LPO: a grid of about this many).
        grad_loss: LPO: fit d drift / d r instead of the drift.
        clip_eps: LPO: the teacher's PPO clip epsilon.
        envs: RL evaluation envs (default: the teacher's training envs).
        num_runs: RL seeds per env and round (0: no RL evaluation).
        timesteps, overrides: the RL evaluation's budget and `--set` values.
        seed: master seed.
        threads: backend worker threads.
        selection_points, holdout_points: rows of the selection set and of the round trip.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    algo: str
    teacher_digest: str
    backend: Literal["operon", "pysr"] = "operon"
    rounds: int = Field(40, ge=1)
    iterations: int = Field(10, ge=1)
    population: int = Field(ge=4)
    max_size: int = Field(ge=3)
    max_depth: int = Field(ge=2)
    operators: list[str]
    optimizer_iterations: int = Field(8, ge=0)
    local_search_probability: float = Field(1.0, ge=0.0, le=1.0)
    batch_size: int = Field(5000, ge=10)
    num_points: int = Field(ge=100)
    grad_loss: bool = False
    clip_eps: float = 0.2
    envs: list[str] = Field(default_factory=list)
    num_runs: int = Field(8, ge=0)
    timesteps: OptionalBudget = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    threads: int = Field(1, ge=1)
    selection_points: int = Field(10_000, ge=10)
    holdout_points: int = Field(10_000, ge=10)

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, v: list[str]) -> list[str]:
        from metarl_cli.meta.symbolic.backends import OPERATORS

        unknown = [o for o in v if o not in OPERATORS]
        if unknown:
            raise ValueError(f"unknown operator {unknown[0]!r}; known: {', '.join(OPERATORS)}")
        return v

    def settings(self) -> SearchSettings:
        return SearchSettings(
            operators=tuple(self.operators),
            max_size=self.max_size,
            max_depth=self.max_depth,
            population=self.population,
            generations=self.iterations,
            optimizer_iterations=self.optimizer_iterations,
            local_search_probability=self.local_search_probability,
            threads=self.threads,
        )


def default_config(teacher: Any, **values: Any) -> SymbolicConfig:
    """The config for `teacher`: Table 10's defaults for its algorithm
    (`algorithm.symbolic_search`), then `values` (None values are left at the default)."""
    merged = {**teacher.algorithm.symbolic_search, "threads": os.cpu_count() or 1}
    merged.update({k: v for k, v in values.items() if v is not None})
    return SymbolicConfig(algo=teacher.name, teacher_digest=teacher.digest, **merged)


def config_differences(saved: dict[str, Any], current: SymbolicConfig) -> list[str]:
    """Fields (other than `RESUMABLE_CHANGES`) whose values differ, as 'name: saved -> now'."""
    from metarl_cli.meta.rundir import config_differences as differences

    return differences(saved, current.model_dump(mode="json"), ignore=RESUMABLE_CHANGES)
