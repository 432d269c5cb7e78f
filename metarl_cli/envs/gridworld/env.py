"""Gridworld dynamics (Oh et al., 2020, arXiv:2007.08794) as a gymnax-1.x-style environment.

`Gridworld(dist)` is one environment whose params are a `Level`: `reset(key)` draws a level
from the distribution and starts an episode in it; `step(key, state, action, level)` returns
gymnax 1.x's `(obs, state, reward, terminated, truncated, info)`, resets a finished episode in
the same level and keeps the pre-reset observation in `info["final_observation"]`. Termination
(collecting an object whose type ends the episode, with its probability) and truncation (the
level's time limit) are reported apart, so a learner can bootstrap through a time limit.

One step, in order: the agent moves (0 up, 1 down, 2 left, 3 right, 4 stay; a move off the board
or into a wall leaves it in place); every existing object on its new cell is collected; every
absent object reappears with its type's respawn probability (at its own cell in tabular levels,
at a uniformly drawn free cell otherwise); collected objects are removed; the episode terminates
with probability min(1, sum of the collected objects' termination probabilities); the reward
is the sum of the collected objects' rewards; the clock advances, and the episode is truncated
when it reaches the level's `max_steps` (and did not terminate).

Observation: tabular levels one-hot the pair (cell, which objects exist), `max_grid**2 *
2**max_objs` entries; other levels concatenate a one-hot of the agent's cell and one occupancy
map per object type; both append `0.001 * time`, as the reference code does.

The reference code (EmptyJackson/groove) draws respawn cells with `isin(cells, walls)` over a
*boolean* wall mask, which compares cell indices with 0/1 and so lets objects respawn inside
walls. Here the respawn cell is drawn from the cells on the board that are not walls.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from metarl_cli.envs.base import EnvSpec, StepOut
from metarl_cli.envs.gridworld.levels import DISTRIBUTIONS, Distribution, Level

NUM_ACTIONS = 5
_D_ROW = jnp.array([-1, 1, 0, 0, 0], jnp.int32)
_D_COL = jnp.array([0, 0, -1, 1, 0], jnp.int32)


@struct.dataclass
class GridState:
    """One episode's state: the agent's cell, each object's cell and presence, the clock."""

    pos: jax.Array
    obj_pos: jax.Array
    exists: jax.Array
    time: jax.Array


def move(level: Level, pos: jax.Array, action: jax.Array) -> jax.Array:
    """The agent's cell after `action` (blocked by the board's edge and by walls)."""
    g = level.grid_size
    row, col = pos // g + _D_ROW[action], pos % g + _D_COL[action]
    target = row * g + col
    inside = (row >= 0) & (row < g) & (col >= 0) & (col < g)
    blocked = ~inside | level.walls[jnp.clip(target, 0, level.walls.shape[0] - 1)]
    return jnp.where(blocked, pos, target).astype(jnp.int32)


def free_cells(level: Level) -> jax.Array:
    """[max_grid**2] bool: cells on the board that are not walls."""
    cells = jnp.arange(level.walls.shape[0])
    return (cells < level.grid_size**2) & ~level.walls


class Gridworld:
    """A gymnax-1.x-style gridworld whose params (`Level`) are drawn from `dist` on reset."""

    def __init__(self, dist: Distribution) -> None:
        self.dist = dist
        self.num_actions = NUM_ACTIONS

    @property
    def obs_dim(self) -> int:
        return self.dist.obs_dim

    def sample_level(self, key: jax.Array) -> Level:
        """A level drawn from the distribution."""
        return self.dist.sample(key)

    def observation(self, state: GridState, level: Level) -> jax.Array:
        """The observation of `state` (module doc), [obs_dim] float32."""
        d = self.dist
        cells = d.max_grid**2
        time = jnp.asarray([0.001 * state.time], jnp.float32)
        if d.tabular:
            mask = jnp.sum(state.exists.astype(jnp.int32) << jnp.arange(d.max_objs))
            onehot = jax.nn.one_hot(state.pos + cells * mask, cells * 2**d.max_objs)
            return jnp.concatenate([onehot, time])
        agent = jax.nn.one_hot(state.pos, cells)
        per_obj = jax.nn.one_hot(state.obj_pos, cells) * state.exists[:, None]  # [K, cells]
        by_type = jax.nn.one_hot(level.obj_type, d.max_types).T @ per_obj  # [T, cells]
        return jnp.concatenate([agent, jnp.minimum(by_type, 1.0).reshape(-1), time])

    def reset_env(self, key: jax.Array, level: Level) -> tuple[jax.Array, GridState]:
        """A new episode in `level`: the start cell, every object present, time 0."""
        obj_pos = level.obj_pos
        if not self.dist.tabular:  # objects start on random free cells
            logits = jnp.where(free_cells(level), 0.0, -jnp.inf)
            obj_pos = jax.random.categorical(key, logits, shape=obj_pos.shape).astype(jnp.int32)
        exists = jnp.arange(self.dist.max_objs) < level.n_objs
        state = GridState(level.start_pos, obj_pos, exists, jnp.asarray(0, jnp.int32))
        return self.observation(state, level), state

    def reset(self, key: jax.Array, level: Level | None = None) -> tuple[jax.Array, GridState]:
        """gymnax's `reset(key, params)`: with no `level`, one is drawn from the distribution
        first (returned states do not carry it: keep it to step)."""
        k_level, k_reset = jax.random.split(key)
        return self.reset_env(k_reset, self.sample_level(k_level) if level is None else level)

    def step_env(self, key: jax.Array, state: GridState, action: jax.Array, level: Level):
        """One step without reset: (obs, state, reward, terminated, truncated, info)."""
        k_respawn, k_cell, k_term = jax.random.split(key, 3)
        slots = jnp.arange(self.dist.max_objs)
        in_use = slots < level.n_objs
        pos = move(level, state.pos, action)
        collected = state.exists & (state.obj_pos == pos)
        p_respawn = level.p_respawn[level.obj_type]
        respawn = (jax.random.uniform(k_respawn, slots.shape) < p_respawn) & ~state.exists
        obj_pos = state.obj_pos
        if not self.dist.tabular:
            logits = jnp.where(free_cells(level), 0.0, -jnp.inf)
            cells = jax.random.categorical(k_cell, logits, shape=slots.shape).astype(jnp.int32)
            obj_pos = jnp.where(respawn, cells, obj_pos)
        exists = (state.exists | respawn) & ~collected & in_use
        hit = collected.astype(jnp.float32)
        p_term = jnp.minimum(jnp.sum(level.p_terminate[level.obj_type] * hit), 1.0)
        terminated = jax.random.uniform(k_term) < p_term
        reward = jnp.sum(level.reward[level.obj_type] * hit)
        time = state.time + 1
        truncated = (time >= level.max_steps) & ~terminated
        new = GridState(pos, obj_pos, exists, time)
        return self.observation(new, level), new, reward, terminated, truncated, {}

    def step(self, key: jax.Array, state: GridState, action: jax.Array, level: Level):
        """gymnax 1.x's auto-resetting step in the same level."""
        k_step, k_reset = jax.random.split(key)
        obs, new, reward, terminated, truncated, info = self.step_env(k_step, state, action, level)
        obs_reset, state_reset = self.reset_env(k_reset, level)
        done = terminated | truncated
        next_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state_reset, new)
        next_obs = jnp.where(done, obs_reset, obs)
        info = {**info, "final_observation": obs}
        return next_obs, next_state, reward, terminated, truncated, info


@struct.dataclass
class GridVecState:
    """A run's level (shared by its envs) and each env's episode state ([N] leaves)."""

    level: Level
    env: GridState


class GridworldVecEnv:
    """`num_envs` copies of a gridworld playing one level, drawn by `reset(key)`.

    Every env of a run plays the same level, as in the reference: an agent meets one level per
    lifetime. Auto-reset keeps the level.
    """

    def __init__(self, env_id: str, distribution: str | Distribution, num_envs: int) -> None:
        if isinstance(distribution, str):
            distribution = DISTRIBUTIONS.get(distribution)
        self.env = Gridworld(distribution)
        self.num_envs = num_envs
        self.spec = EnvSpec(
            env_id=env_id,
            obs_dim=self.env.obs_dim,
            action_dim=NUM_ACTIONS,
            continuous=False,
            can_truncate=True,
        )

    def reset_in(self, key: jax.Array, level: Level) -> tuple[jax.Array, GridVecState]:
        """Starts every env in `level`."""
        keys = jax.random.split(key, self.num_envs)
        obs, state = jax.vmap(self.env.reset_env, in_axes=(0, None))(keys, level)
        return obs, GridVecState(level, state)

    def reset(self, key: jax.Array) -> tuple[jax.Array, GridVecState]:
        """Draws a level and starts every env in it."""
        k_level, k_reset = jax.random.split(key)
        return self.reset_in(k_reset, self.env.sample_level(k_level))

    def step(self, key: jax.Array, state: GridVecState, action: jax.Array) -> StepOut:
        """Steps every env; a finished episode restarts in the same level."""
        keys = jax.random.split(key, self.num_envs)
        obs, env, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(keys, state.env, action, state.level)
        return StepOut(
            obs=obs,
            state=GridVecState(state.level, env),
            reward=reward.astype(jnp.float32),
            done=terminated | truncated,
            truncated=truncated,
            final_obs=info["final_observation"],
            episode_return=jnp.zeros(self.num_envs, jnp.float32),
        )


def level_of(state: Any) -> Level:
    """The level inside a (possibly wrapped) vec-env state."""
    while not isinstance(state, GridVecState):
        state = state.inner
    return state.level
