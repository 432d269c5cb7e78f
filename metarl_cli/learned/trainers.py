"""Which trainer runs a learned algorithm, and with which rollout sizes.

Most algorithms fill a slot of the PPO trainer (`slots_for`); an update rule (LPG) replaces the
whole update and brings its own trainer (`rl/lpg_train.py`). `make_trainer` is the one place
that chooses, for every meta-learner and scorer that runs an algorithm's neural kernel.

An algorithm (or a baseline) may carry an optional `train_defaults` member: the `TrainConfig`
values it runs with unless the user sets them. LPG's are its 64 x 20 rollouts (Goldie et al.,
2025, arXiv:2507.17668, Table 3), not the env's PPO preset. They sit above the preset and below
a config file, `--set` and `--timesteps`: `with_train_defaults` puts them beneath the file's
values given to `config.build_config`.
"""

from __future__ import annotations

from typing import Any

from metarl_cli.config import TrainConfig
from metarl_cli.learned.base import LearnedAlgorithm, slots_for
from metarl_cli.rl.lpg_train import OwnTrainer
from metarl_cli.rl.ppo import make_train


def train_defaults(algorithm: Any) -> dict[str, Any]:
    """`algorithm`'s `train_defaults` (a copy), `{}` when it has none."""
    return dict(getattr(algorithm, "train_defaults", None) or {})


def with_train_defaults(algorithm: Any, file_values: dict[str, Any] | None) -> dict[str, Any]:
    """`file_values` with `algorithm`'s `train_defaults` beneath them: a config file's flat keys
    and per-env tables, then `--set`, still win."""
    return {**train_defaults(algorithm), **(file_values or {})}


def make_trainer(
    algorithm: LearnedAlgorithm, cfg: TrainConfig, env: Any, architecture: dict[str, Any]
) -> Any:
    """The trainer of `algorithm`'s neural kernel on `env`: PPO with the kernel in its slot, or
    an update rule's own trainer. Either takes `Theta.for_slot(algorithm.slot, theta)`."""
    if algorithm.slot == "update_rule":
        return OwnTrainer(algorithm.kernel(cfg, architecture)).trainer(cfg, env)
    return make_train(cfg, env, slots_for(algorithm, cfg, architecture))
