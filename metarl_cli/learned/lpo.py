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
from typing import Any

import jax
import jax.numpy as jnp

from metarl_cli.learned.base import ALGORITHMS, Feature, FeatureSpec
from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    code_kernel,
    signature_for,
)
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


CODE_PARAMETERS = ("ratio", "advantage", "epsilon")
CODE_SIGNATURE = signature_for(CODE_PARAMETERS, ("drift",), differentiable=True)
CODE_INPUTS = {
    "ratio": "r, the ratio of the new policy to the previous policy for the taken action",
    "advantage": "A, the GAE advantage estimate (normalised per minibatch)",
    "epsilon": "the clip epsilon value used in PPO",
}
SYMBOLIC_VARIABLES = {
    "r": "the policy ratio pi / pi_old",
    "A": "the normalised advantage",
    "log_r": "log r",
    "r_minus_1": "r - 1",
    "epsilon": "PPO's clip epsilon",
    **{f.name: f.meaning for f in SPEC.features},
}
WARM_START = """def PPO_clip(ratio, advantage, epsilon):
    ratio_clip = ratio - jnp.clip(ratio, 1 - epsilon, 1 + epsilon)
    ratio_adv = ratio_clip * advantage
    drift = nn.relu(ratio_adv)
    return drift
"""


@dataclass(frozen=True)
class LPO:
    """The LPO learned algorithm (registry id `lpo`)."""

    name: str = "lpo"
    slot: str = "drift"
    spec: FeatureSpec = SPEC
    forms: tuple[str, ...] = ("neural", "symbolic", "code")
    code_parameters: tuple[str, ...] = CODE_PARAMETERS
    code_signature: KernelSignature = CODE_SIGNATURE
    code_output: str = (
        "drift: non-negative everywhere, zero at r = 1 with zero gradient in r at r = 1; the "
        "actor loss is -mean(r * A - drift)"
    )
    warm_start: str = WARM_START

    @property
    def code_inputs(self) -> dict[str, str]:
        return dict(CODE_INPUTS)

    @property
    def symbolic_variables(self) -> dict[str, str]:
        return dict(SYMBOLIC_VARIABLES)

    @property
    def symbolic_aliases(self) -> dict[str, str]:
        return {"ratio": "r", "advantage": "A"}

    def sample_inputs(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """Ratios and advantages over the distillation grid's ranges (reference §5.5):
        `log r ~ U(-2, 2)`, `A ~ U(-8, 8)`."""
        k1, k2 = jax.random.split(key)
        return {
            "ratio": jnp.exp(jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)),
            "advantage": jax.random.uniform(k2, (n,), minval=-8.0, maxval=8.0),
        }

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: one hidden layer of 128 units for every suite."""
        del suite
        return {"hidden": 128}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        return {"hidden": int(hsize)}

    def init(self, key: jax.Array, hidden: int = 128) -> dict:
        """theta = 0: the drift is exactly PPO's."""
        del key
        n = len(SPEC.features)
        return {"w1": jnp.zeros((n, hidden)), "w2": jnp.zeros((hidden, 1))}

    def kernel(
        self,
        cfg,
        architecture: dict,
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ):
        del cfg
        if form == "neural":
            return LPODrift(hidden=int(architecture.get("hidden", 128)))
        if form == "symbolic":
            from metarl_cli.learned.symbolic import compile_symbolic

            return SymbolicDrift(
                compile_symbolic(text, self.symbolic_variables, self.symbolic_aliases)
            )
        return CodeDrift(code_kernel(code))


ALGORITHMS.register("lpo", LPO())
