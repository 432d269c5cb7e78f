"""The distillation run configuration: a frozen pydantic model (no JAX import).

Defaults follow the paper (§4.2, §A.3: a learning-rate sweep over [0.1, 0.02, 0.001], smaller
students halve every layer width) and the original scripts where the paper is silent (batches
of 2048 synthetic points, a held-out set of 10,000, 8 RL seeds per periodic evaluation).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from metarl_cli.config.models import OptionalBudget

PAPER_LRS: tuple[float, ...] = (0.1, 0.02, 0.001)
"""The paper's distillation learning-rate sweep (§A.3)."""

ROLLOUTS: dict[str, int] = {"long": 100, "short": 20}
"""Recurrent OPEN's generated sequence lengths (§7.5: 'Long' and 'Short Rollouts')."""


class DistilConfig(BaseModel):
    """Everything that determines a distillation run (a resumed run must match it exactly).

    Attributes:
        teacher: the teacher artefact's file name; teacher_digest: its file sha256 (identity).
        algo: the learned algorithm (`lpo`, `open`, `open_ff`, `nofeat`).
        size: `same`, `smaller` (every width halved) or `hsize` (an explicit `--hsize`).
        teacher_architecture, student_architecture: the networks' sizes.
        lrs: Adam learning rates swept (each annealed linearly to `lr_end` over its run).
        lr_end: the learning rate at the end of each run (the original scripts' `--lr-stop`).
        epochs, iters: epochs per learning rate and Adam steps per epoch; the defaults give the
            original scripts' 1e6 Adam steps per learning rate (100 x 100 x 100 batches).
        batch_size: synthetic points (recurrent OPEN: sequences) per step, fresh every step.
        test_size: points (sequences) in the fixed held-out set.
        target: LPO only: `value` (the drift's learned term) or `grad` (d drift / d ratio).
        rollout, seq_len: recurrent OPEN only: `long` (100 steps) or `short` (20).
        schedule: recurrent OPEN only: (updates, epochs, minibatches) of the PPO run whose
            optimiser steps the sequences imitate (training and epoch proportions).
        clip_eps: PPO's clip epsilon in LPO's drift.
        envs: environments of the periodic RL evaluations.
        num_runs: RL seeds per env per evaluation (0: select by held-out loss alone).
        timesteps, overrides: the evaluations' PPO budget and `--set` values.
        eval_every: epochs between evaluations (the last epoch is always evaluated).
        seed: master seed (student init, data, held-out set, RL seeds).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    teacher: str
    teacher_digest: str
    algo: str
    size: Literal["same", "smaller", "hsize"]
    teacher_architecture: dict[str, int]
    student_architecture: dict[str, int]
    lrs: list[float] = Field(default_factory=lambda: list(PAPER_LRS), min_length=1)
    lr_end: float = Field(1e-5, ge=0.0)
    epochs: int = Field(10, ge=1)
    iters: int = Field(100_000, ge=1)
    batch_size: int = Field(2048, ge=2)
    test_size: int = Field(10_000, ge=2)
    target: Literal["value", "grad"] | None = None
    rollout: Literal["long", "short"] | None = None
    seq_len: int | None = Field(None, ge=1)
    schedule: tuple[int, int, int] | None = None
    clip_eps: float = Field(0.2, gt=0.0)
    envs: list[str] = Field(default_factory=list)
    num_runs: int = Field(8, ge=0)
    timesteps: OptionalBudget = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    eval_every: int = Field(1, ge=1)
    seed: int = 0

    @field_validator("lrs")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not x > 0]
        if bad:
            raise ValueError(f"learning rates must be positive, got {bad}")
        return v

    @property
    def total_steps(self) -> int:
        """Adam steps per learning rate."""
        return self.epochs * self.iters


def config_differences(saved: dict[str, Any], current: DistilConfig) -> list[str]:
    """Fields whose values differ, as 'name: saved -> now' (a resume must change none)."""
    from metarl_cli.meta.rundir import config_differences as differences

    return differences(saved, current.model_dump(mode="json"))
