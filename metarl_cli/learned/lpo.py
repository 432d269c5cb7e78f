"""Learned Policy Optimisation (Lu et al., 2022, arXiv:2210.05639): a learned PPO drift.

Inputs are the paper's eq. (2) (Goldie et al., 2025): seven transformations of the ratio r and
the advantage A, all zero at r = 1. (The original code uses eight: these plus (log r)^2; we
follow the paper and record it in the spec.) The network is Dense(128, no bias)
-> tanh -> Dense(1, no bias), so it outputs 0 at r = 1. The drift is
`relu(ppo_drift(r, A) + net(x))`: with theta = 0 it is exactly PPO's clipped drift, which is
where evolution starts ("initialised at PPO").
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metarl_cli.learned.base import ALGORITHMS, Feature, FeatureSpec
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
class LPO:
    """The LPO learned algorithm (registry id `lpo`)."""

    name: str = "lpo"
    slot: str = "drift"
    spec: FeatureSpec = SPEC

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: one hidden layer of 128 units for every suite."""
        del suite
        return {"hidden": 128}

    def init(self, key: jax.Array, hidden: int = 128) -> dict:
        """theta = 0: the drift is exactly PPO's."""
        del key
        n = len(SPEC.features)
        return {"w1": jnp.zeros((n, hidden)), "w2": jnp.zeros((hidden, 1))}

    def kernel(self, cfg, architecture: dict) -> LPODrift:
        del cfg
        return LPODrift(hidden=int(architecture.get("hidden", 128)))


ALGORITHMS.register("lpo", LPO())
