"""Generalised advantage estimation (Schulman et al., 2016, arXiv:1506.02438) as a reverse scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(
    values: jax.Array,
    rewards: jax.Array,
    dones: jax.Array,
    last_value: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets.

    Args:
        values: V(s_t), [T, N].
        rewards: r_t, [T, N] (truncation already bootstrapped into r_t by the trainer).
        dones: whether the episode ended after step t, [T, N]; cuts the recursion.
        last_value: V(s_T) of the observation after the last step, [N].
        gamma: discount.
        lam: GAE lambda.

    Returns:
        (advantages, targets), each [T, N], with targets = advantages + values.
    """
    not_done = 1.0 - dones.astype(values.dtype)

    def step(carry, x):
        adv_next, value_next = carry
        value, reward, nd = x
        delta = reward + gamma * value_next * nd - value
        adv = delta + gamma * lam * nd * adv_next
        return (adv, value), adv

    init = (jnp.zeros_like(last_value), last_value)
    _, advantages = jax.lax.scan(step, init, (values, rewards, not_done), reverse=True, unroll=16)
    return advantages, advantages + values
