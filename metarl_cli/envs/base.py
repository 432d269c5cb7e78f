"""The vectorised environment interface every adapter implements.

One interface over gymnax 1.x (6-tuple step), Brax and Craftax (5-tuple step): a `VecEnv`
steps `num_envs` copies at once, auto-resets finished episodes and reports, per env, whether the
episode ended, whether it ended by a time limit (so the trainer bootstraps through truncation
instead of treating it as a terminal state), the observation before the reset, and the raw
return of every episode that ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import struct


@dataclass(frozen=True)
class EnvSpec:
    """Static facts the trainer needs to build networks.

    Attributes:
        env_id: canonical id, e.g. "minatar/breakout".
        obs_dim: length of the flattened observation.
        action_dim: number of discrete actions, or the action vector length.
        continuous: whether actions are real vectors in [-1, 1].
        can_truncate: whether episodes can end by a time limit (bootstrap needed).
    """

    env_id: str
    obs_dim: int
    action_dim: int
    continuous: bool
    can_truncate: bool


class StepOut(NamedTuple):
    """The result of one vectorised step; every array has leading axis `num_envs`."""

    obs: jax.Array  # observation after auto-reset, [N, obs_dim]
    state: Any
    reward: jax.Array  # reward the learner sees (normalised where configured), [N]
    done: jax.Array  # episode ended here (terminated or truncated), [N]
    truncated: jax.Array  # ended by a time limit and not by the MDP, [N]
    final_obs: jax.Array  # observation before the reset, [N, obs_dim]
    episode_return: jax.Array  # raw return of the episode that ended here (0 elsewhere), [N]


class VecEnv(Protocol):
    """A batch of `num_envs` environments with auto-reset. Pure functions of explicit state."""

    spec: EnvSpec
    num_envs: int

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        """Returns the first observations [N, obs_dim] and the batched state."""
        ...

    def step(self, key: jax.Array, state: Any, action: jax.Array) -> StepOut:
        """Steps all envs with `action` ([N] ints or [N, action_dim] floats)."""
        ...


def where_tree(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Per-env `jnp.where` over two pytrees whose leaves have leading axis N."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        m = mask.reshape(mask.shape + (1,) * (jnp.ndim(b) - 1))
        return jnp.where(m, a, b)

    return jax.tree.map(pick, on_true, on_false)


@struct.dataclass
class LogState:
    """`EpisodeLog`'s state: the inner env's and each env's running return."""

    inner: Any
    running_return: jax.Array


class EpisodeLog:
    """Accumulates raw rewards and reports each finished episode's return."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.num_envs = inner.num_envs

    def reset(self, key: jax.Array) -> tuple[jax.Array, LogState]:
        """Resets every env and zeroes the running returns."""
        obs, state = self.inner.reset(key)
        return obs, LogState(state, jnp.zeros(self.num_envs, jnp.float32))

    def step(self, key: jax.Array, state: LogState, action: jax.Array) -> StepOut:
        """Steps every env and records the raw return of each episode that ended."""
        out = self.inner.step(key, state.inner, action)
        total = state.running_return + out.reward.astype(jnp.float32)
        ended = jnp.where(out.done, total, 0.0)
        running = jnp.where(out.done, 0.0, total)
        return out._replace(state=LogState(out.state, running), episode_return=ended)


@struct.dataclass
class RunningStats:
    """Running mean and variance over batches (the parallel update of Chan et al.)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> RunningStats:
        # count starts at 1e-4 as in the original wrappers, so the first update dominates.
        """Fresh statistics of `shape`: mean 0, variance 1, count 1e-4."""
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4))

    def update(self, batch: jax.Array) -> RunningStats:
        """Parallel (Chan et al.) update of mean and variance with a batch along axis 0."""
        b_mean = batch.mean(axis=0)
        b_var = batch.var(axis=0)
        b_count = batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        return RunningStats(mean, m2 / total, total)


@struct.dataclass
class NormObsState:
    """`NormalizeObservation`'s state: the inner env's and the observation statistics."""

    inner: Any
    stats: RunningStats


class NormalizeObservation:
    """Normalises observations with running statistics kept in the env state (per run)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.num_envs = inner.num_envs

    def _norm(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        return (obs - stats.mean) / jnp.sqrt(stats.var + 1e-8)

    def reset(self, key: jax.Array) -> tuple[jax.Array, NormObsState]:
        """Resets every env and normalises the first observations."""
        obs, state = self.inner.reset(key)
        stats = RunningStats.zeros(obs.shape[1:]).update(obs)
        return self._norm(stats, obs), NormObsState(state, stats)

    def step(self, key: jax.Array, state: NormObsState, action: jax.Array) -> StepOut:
        """Steps every env, updates the statistics and normalises the observation."""
        out = self.inner.step(key, state.inner, action)
        stats = state.stats.update(out.obs)
        return out._replace(
            obs=self._norm(stats, out.obs),
            final_obs=self._norm(stats, out.final_obs),
            state=NormObsState(out.state, stats),
        )


@struct.dataclass
class NormRewState:
    """`NormalizeReward`'s state: the inner env's, the discounted return, its statistics."""

    inner: Any
    discounted: jax.Array
    stats: RunningStats


class NormalizeReward:
    """Scales rewards by the running std of the discounted return (as the original code does)."""

    def __init__(self, inner: Any, gamma: float) -> None:
        self.inner = inner
        self.gamma = gamma
        self.spec = inner.spec
        self.num_envs = inner.num_envs

    def reset(self, key: jax.Array) -> tuple[jax.Array, NormRewState]:
        """Resets every env and the discounted returns."""
        obs, state = self.inner.reset(key)
        zeros = jnp.zeros(self.num_envs)
        return obs, NormRewState(state, zeros, RunningStats.zeros(()))

    def step(self, key: jax.Array, state: NormRewState, action: jax.Array) -> StepOut:
        """Steps every env and scales the reward by the discounted return's std."""
        out = self.inner.step(key, state.inner, action)
        discounted = state.discounted * self.gamma * (1.0 - out.done) + out.reward
        stats = state.stats.update(discounted)
        reward = out.reward / jnp.sqrt(stats.var + 1e-8)
        return out._replace(reward=reward, state=NormRewState(out.state, discounted, stats))
