"""The LPO objective's slope in the ratio, on a grid (Lu et al., 2022; paper Supplement G).

The LPO actor objective is `r * A - drift(r, A)`; Figures 18-19 show its derivative in r over
`r in [e^-0.75, e^0.75]` and advantages `A in [-4, 4]`. PPO's clipped objective has slope A
inside the clip range and 0 where it clips; a learned drift bends that picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.artefacts import load_artefact
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.loader import load_kernel
from metarl_cli.rl.slots import PPOClipDrift

LOG_RATIO_MAX = 0.75
ADVANTAGE_MAX = 4.0


def objective_gradient(
    drift: Any,
    theta: Any,
    *,
    clip_eps: float = 0.2,
    n_ratio: int = 121,
    n_advantage: int = 101,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d(r*A - drift)/dr on the grid: (log_ratio [n_ratio], advantage [n_advantage],
    gradient [n_advantage, n_ratio]); non-finite where the kernel is not differentiable."""
    log_r = np.linspace(-LOG_RATIO_MAX, LOG_RATIO_MAX, n_ratio)
    adv = np.linspace(-ADVANTAGE_MAX, ADVANTAGE_MAX, n_advantage)

    def objective(r, a):
        return r * a - drift(theta, r, a, clip_eps)

    grad = jax.vmap(jax.grad(objective))
    rr, aa = np.meshgrid(np.exp(log_r), adv)
    g = grad(jnp.asarray(rr.ravel(), jnp.float32), jnp.asarray(aa.ravel(), jnp.float32))
    return log_r, adv, np.asarray(g, dtype=np.float64).reshape(aa.shape)


def ppo_drift() -> Any:
    """PPO's clipped drift, the reference of the gradient maps."""
    return PPOClipDrift()


def kernel_of(target: Any, artefact: Path | None) -> tuple[Any, Any] | str:
    """(drift, theta) of a drift result's kernel (LPO's), or the reason it cannot be built."""
    alg = get_algorithm(target.algorithm)
    if target.form == "code":  # runs only from the artefact's verified StableHLO
        if artefact is None:
            return "a code kernel runs from its artefact file, which was not found"
        return load_kernel(artefact, alg.name).kernel(None), {}
    if target.form == "symbolic":
        text = target.text
        if text is None and artefact is not None:
            manifest, _ = load_artefact(artefact)
            text = manifest.expression
        if text is None:
            return "its text is not in the result and the artefact file was not found"
        return alg.kernel(None, dict(target.architecture), target.form, text), {}
    if artefact is None:
        return "the artefact file (for its weights) was not found or its digest differs"
    manifest, tensors = load_artefact(artefact)
    theta = jax.tree.map(jnp.asarray, tensors)
    return alg.kernel(None, dict(manifest.architecture), "neural"), theta
