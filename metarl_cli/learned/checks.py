"""Validity checks for drift functions (mirror learning, Kuba et al., 2022, arXiv:2208.01682).

A valid drift is >= 0 everywhere, 0 at r = 1 and has zero derivative in r at r = 1. The
derivative is checked by one-sided finite differences (|D(1 +- h)| / h -> 0), not by
`jax.grad` at r = 1, which reports 0 for any ReLU kink there.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np


def check_drift(drift: Callable, theta=None, clip_eps: float = 0.2, tol: float = 1e-4) -> list[str]:
    """Returns the violated conditions (empty when valid) on a grid of r and A."""
    theta = {} if theta is None else theta
    ratios = jnp.exp(jnp.linspace(-2.0, 2.0, 201))
    advs = jnp.linspace(-5.0, 5.0, 41)
    r, a = jnp.meshgrid(ratios, advs)
    problems = []
    values = np.asarray(drift(theta, r, a, clip_eps))
    if not np.isfinite(values).all():
        problems.append("drift is not finite on the grid")
    elif values.min() < -tol:
        problems.append(f"drift is negative (min {values.min():.3g})")
    at_one = np.asarray(drift(theta, jnp.ones_like(advs), advs, clip_eps))
    if np.abs(at_one).max() > tol:
        problems.append(f"drift is not 0 at r = 1 (max |D| {np.abs(at_one).max():.3g})")
    for h in (1e-3,):
        for side in (1.0 + h, 1.0 - h):
            slope = np.abs(np.asarray(drift(theta, jnp.full_like(advs, side), advs, clip_eps))) / h
            if slope.max() > 10 * h + tol / h:
                problems.append(
                    f"drift has a non-zero slope at r = 1 (|D(r)|/|r-1| {slope.max():.3g})"
                )
                break
    return problems
