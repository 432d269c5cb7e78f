"""LPO's drift slot: its seven input features, its network and the three kernel forms.

`LPODrift` is `relu(ppo_drift(r, A) + net(x(r, A)))` (Lu et al., 2022, arXiv:2210.05639; inputs
of eq. (2) in Goldie et al., 2025); `SymbolicDrift` and `CodeDrift` fill the same slot from an
expression or an exported program. The algorithm itself is `learned/lpo.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from metarl_cli.learned.base import Feature, FeatureSpec
from metarl_cli.learned.exported import ExportedKernel
from metarl_cli.rl.slots import PPOClipDrift

SPEC = FeatureSpec(
    algorithm="lpo",
    version=1,
    features=(
        Feature("one_minus_r", "1 - r, r = pi/pi_old the policy ratio", (-1.0, 1.0)),
        Feature("one_minus_r_sq", "(1 - r)^2", (0.0, 1.0)),
        Feature("one_minus_r_adv", "(1 - r) * A, A the normalised advantage", (-3.0, 3.0)),
        Feature("one_minus_r_sq_adv", "(1 - r)^2 * A", (-3.0, 3.0)),
        Feature("log_r", "log r", (-1.0, 1.0)),
        Feature("log_r_adv", "log(r) * A", (-3.0, 3.0)),
        Feature("log_r_sq_adv", "log(r)^2 * A", (-3.0, 3.0)),
    ),
)


def features(ratio: jax.Array, advantage: jax.Array) -> jax.Array:
    """Eq. (2) inputs, stacked on a new last axis."""
    one_minus = 1.0 - ratio
    log_r = jnp.log(ratio)
    a = advantage
    return jnp.stack(
        [one_minus, one_minus**2, one_minus * a, one_minus**2 * a, log_r, log_r * a, log_r**2 * a],
        axis=-1,
    )


def apply(theta: dict, x: jax.Array) -> jax.Array:
    """The drift network: x [..., 7] -> [...]."""
    hidden = jnp.tanh(x @ theta["w1"])
    return (hidden @ theta["w2"])[..., 0]


@dataclass(frozen=True)
class LPODrift:
    """The drift slot: `relu(ppo_drift + net(features))`."""

    hidden: int = 128

    def __call__(self, theta, ratio, advantage, clip_eps):
        ppo = PPOClipDrift()({}, ratio, advantage, clip_eps)
        return jax.nn.relu(ppo + apply(theta, features(ratio, advantage)))


@dataclass(frozen=True)
class SymbolicDrift:
    """A symbolic drift: `relu(f(r, A, ...))` (the original subtracted 1e-6 before the relu and
    added no PPO term; reference §6.4)."""

    kernel: Any  # SymbolicKernel

    def __call__(self, theta, ratio, advantage, clip_eps):
        del theta
        values = dict(zip(SPEC.names, jnp.moveaxis(features(ratio, advantage), -1, 0), strict=True))
        values.update(
            r=ratio,
            A=advantage,
            log_r=jnp.log(ratio),
            r_minus_1=ratio - 1.0,
            epsilon=jnp.full_like(ratio, clip_eps),
        )
        return jax.nn.relu(self.kernel(**values))


@dataclass(frozen=True)
class CodeDrift:
    """A code drift (Supplement D): `drift = f(ratio, advantage, epsilon)`, used as returned.

    The function runs as its verified StableHLO export (`learned/exported.py`), never as Python.
    """

    code: ExportedKernel

    def __call__(self, theta, ratio, advantage, clip_eps):
        del theta
        advantage = jnp.broadcast_to(advantage, ratio.shape)
        (out,) = self.code(ratio.reshape(-1), advantage.reshape(-1), clip_eps)
        return out.reshape(ratio.shape).astype(ratio.dtype)
