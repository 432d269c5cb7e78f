"""Gridworlds (Oh et al., 2020, arXiv:2007.08794): level distributions, dynamics, DP optimum.

`levels.py` holds the named distributions (`DISTRIBUTIONS`), `env.py` the gymnax-1.x-style
environment and the vectorised adapter (`GridworldVecEnv`, one level per run), `optimal.py`
the exact optimal return of a tabular level.
"""

from __future__ import annotations

from metarl_cli.envs.gridworld.env import GridState, GridVecState, Gridworld, GridworldVecEnv
from metarl_cli.envs.gridworld.levels import DISTRIBUTIONS, Distribution, Level
from metarl_cli.envs.gridworld.optimal import optimal_return

__all__ = [
    "DISTRIBUTIONS",
    "Distribution",
    "GridState",
    "GridVecState",
    "Gridworld",
    "GridworldVecEnv",
    "Level",
    "optimal_return",
]
