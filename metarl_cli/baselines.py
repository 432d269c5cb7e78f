"""Built-in hand-designed baselines, evaluated by name (`metarl evaluate ppo`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from metarl_cli.registry import Registry
from metarl_cli.rl.lpg_train import ROLLOUT_DEFAULTS
from metarl_cli.rl.slots import AdamOptimiser, SGDOptimiser, fill_slots


@dataclass(frozen=True)
class Baseline:
    """A hand-designed algorithm: builds the trainer's slots from a `TrainConfig`.

    `train_defaults`: `TrainConfig` values it runs with unless the user sets them
    (`learned/trainers.py`; A2C: LPG's 64 x 20 rollouts).
    """

    name: str
    description: str
    build: Callable[[Any], Any]  # cfg -> Slots
    train_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _ppo(cfg: Any) -> Any:
    return fill_slots(cfg)


def _adam(cfg: Any) -> Any:
    # The learned-optimiser reference: standard betas, the "L2O Adam" learning rate (Tables 4-6).
    return fill_slots(cfg, optimiser=AdamOptimiser(cfg.l2o_lr, 0.9, 0.999, cfg.adam_eps))


def _sgd(cfg: Any) -> Any:
    return fill_slots(cfg, optimiser=SGDOptimiser(cfg.sgd_lr))


def _a2c(cfg: Any) -> Any:
    # Not PPO: A2C brings its own trainer (the LPG agent's networks and optimisers).
    from metarl_cli.rl.lpg_train import OwnTrainer

    return OwnTrainer()


BASELINES: Registry[Baseline] = Registry("baseline")
BASELINES.register(
    "ppo", Baseline("ppo", "PPO clip objective + Adam (paper's per-env LR and betas)", _ppo)
)
BASELINES.register(
    "adam", Baseline("adam", "PPO + Adam at the L2O learning rate, betas 0.9/0.999", _adam)
)
BASELINES.register("sgd", Baseline("sgd", "PPO + SGD at the paper's per-env SGD rate", _sgd))
BASELINES.register(
    "a2c",
    Baseline(
        "a2c",
        "A2C with the LPG agent (LPG's hand-designed reference, Oh et al.), 64 x 20 rollouts",
        _a2c,
        train_defaults=ROLLOUT_DEFAULTS,
    ),
)
