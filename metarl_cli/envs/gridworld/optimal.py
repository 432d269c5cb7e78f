"""The exact optimal expected episode return of a tabular gridworld level, by dynamic programming.

In a tabular level the full state is (agent cell, which objects exist, time), and objects
reappear at their own cells, so backward induction over the time limit is exact:

    V_T(p, m) = 0,   T = max_steps
    V_t(p, m) = max_a  r(p', m) + (1 - q(p', m)) * E_R[ V_{t+1}(p', (m minus c) | R) ]

with p' the cell `a` leads to, c the existing objects at p' (collected), r and q their summed
reward and (capped) termination probability, and R the absent objects (in use, not in m) that
reappear, each independently with its type's respawn probability. The expectation over R is a
sum over the 2**max_objs masks, weighted by `_respawn_matrix`.

Returns are undiscounted, as the episode returns the trainers log; `optimal_return` is the
"optimal" end of an optimal-normalised gridworld score.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_cli.envs.gridworld.env import NUM_ACTIONS, move
from metarl_cli.envs.gridworld.levels import Distribution, Level


def _bits(masks: jax.Array, k: int) -> jax.Array:
    """[..., k] float: bit i of each mask."""
    return ((masks[..., None] >> jnp.arange(k)) & 1).astype(jnp.float32)


def _respawn_matrix(level: Level, k: int) -> jax.Array:
    """[M, M]: P(R | m), the probability that exactly the absent in-use objects in R reappear
    when the objects in m exist (zero where R is not a set of absent in-use objects)."""
    masks = jnp.arange(2**k)
    in_use = jnp.sum((jnp.arange(k) < level.n_objs).astype(jnp.int32) << jnp.arange(k))
    p = level.p_respawn[level.obj_type]  # [k]
    absent = _bits(in_use & ~masks, k)  # [M, k]: may reappear
    chosen = _bits(masks, k)  # [M(R), k]
    allowed = jnp.all(chosen[None] <= absent[:, None], axis=-1)  # R within the absent set
    per_obj = jnp.where(
        absent[:, None] > 0, jnp.where(chosen[None] > 0, p, 1.0 - p), 1.0
    )  # [M, M(R), k]
    return jnp.where(allowed, jnp.prod(per_obj, axis=-1), 0.0)


def value_table(dist: Distribution, level: Level) -> jax.Array:
    """V_0 over (cell, existing-objects mask): [max_grid**2, 2**max_objs]."""
    if not dist.tabular:
        raise ValueError(f"{dist.name} is not tabular: its optimal return has no small DP")
    k, cells = dist.max_objs, dist.max_grid**2
    masks, slots = jnp.arange(2**k), jnp.arange(k)
    in_use = slots < level.n_objs
    occ = jnp.sum(
        ((level.obj_pos[None, :] == jnp.arange(cells)[:, None]) & in_use).astype(jnp.int32)
        << slots,
        axis=-1,
    )  # [cells] mask of the objects at each cell
    collected = masks[None, :] & occ[:, None]  # [cells, M]
    hit = _bits(collected, k)  # [cells, M, k]
    reward = hit @ level.reward[level.obj_type]
    p_term = jnp.minimum(hit @ level.p_terminate[level.obj_type], 1.0)
    base = masks[None, :] & ~collected  # [cells, M]
    nxt = base[:, :, None] | masks[None, None, :]  # [cells, M, M(R)]
    q = _respawn_matrix(level, k)  # [M, M(R)]
    moves = jax.vmap(lambda p: jax.vmap(lambda a: move(level, p, a))(jnp.arange(NUM_ACTIONS)))(
        jnp.arange(cells)
    )  # [cells, A]

    def backward(v_next: jax.Array, t: jax.Array) -> tuple[jax.Array, None]:
        ahead = jnp.take_along_axis(v_next, nxt.reshape(cells, -1), axis=1).reshape(nxt.shape)
        expected = jnp.sum(ahead * q[None], axis=-1)  # [cells, M]
        after = reward + (1.0 - p_term) * expected  # value of arriving at p' with mask m
        v = jnp.max(after[moves], axis=1)  # [cells, A, M] -> [cells, M]
        return jnp.where(t < level.max_steps, v, 0.0), None

    horizon = jnp.arange(dist.episode_cap)[::-1]
    v0, _ = jax.lax.scan(backward, jnp.zeros((cells, 2**k)), horizon)
    return v0


def optimal_return(dist: Distribution, level: Level) -> jax.Array:
    """The largest expected undiscounted episode return any policy gets in `level` (tabular)."""
    full = jnp.sum(
        (jnp.arange(dist.max_objs) < level.n_objs).astype(jnp.int32) << jnp.arange(dist.max_objs)
    )
    return value_table(dist, level)[level.start_pos, full]
