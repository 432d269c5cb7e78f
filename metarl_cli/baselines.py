"""Built-in hand-designed baselines, evaluated by name (`metarl evaluate ppo`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metarl_cli.registry import Registry


@dataclass(frozen=True)
class Baseline:
    """A hand-designed algorithm: builds the trainer's slots from a `TrainConfig`."""

    name: str
    description: str
    build: Callable[[Any], Any]  # cfg -> Slots


def _ppo(cfg: Any) -> Any:
    from metarl_cli.rl.slots import AdamOptimiser, PPOClipDrift, Slots

    return Slots(PPOClipDrift(), AdamOptimiser(cfg.lr, cfg.b1, cfg.b2, cfg.adam_eps))


BASELINES: Registry[Baseline] = Registry("baseline")
BASELINES.register(
    "ppo", Baseline("ppo", "PPO clip objective + Adam (paper's per-env LR and betas)", _ppo)
)
