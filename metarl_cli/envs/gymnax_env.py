"""Adapter for gymnax 1.x environments (CartPole-v1 and MinAtar).

gymnax 1.x returns `(obs, state, reward, terminated, truncated, info)`, auto-resets, and keeps
the pre-reset observation in `info["final_observation"]`; we pass truncation through so the
trainer can bootstrap the value of the final observation instead of treating a time limit as a
terminal state.
"""

from __future__ import annotations

import math
from typing import Any

import gymnax
import jax
import jax.numpy as jnp

from metarl_cli.envs.base import EnvSpec, StepOut


class GymnaxVecEnv:
    """`num_envs` copies of a gymnax environment with flattened observations."""

    def __init__(self, env_id: str, gymnax_name: str, num_envs: int) -> None:
        self.env, self.params = gymnax.make(gymnax_name)
        self.num_envs = num_envs
        obs_shape = self.env.observation_space(self.params).shape
        action_space = self.env.action_space(self.params)
        obs_dim = math.prod(int(d) for d in obs_shape)
        self.spec = EnvSpec(
            env_id=env_id,
            obs_dim=obs_dim,
            action_dim=int(action_space.n),
            continuous=False,
            can_truncate=True,
        )

    def _flat(self, obs: jax.Array) -> jax.Array:
        return obs.reshape(obs.shape[0], -1).astype(jnp.float32)

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        """Resets `num_envs` copies: (flat observations, state)."""
        keys = jax.random.split(key, self.num_envs)
        obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)
        return self._flat(obs), state

    def step(self, key: jax.Array, state: Any, action: jax.Array) -> StepOut:
        """Steps `num_envs` copies; gymnax resets a finished env itself (`final_obs`: its last)."""
        keys = jax.random.split(key, self.num_envs)
        obs, state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(keys, state, action, self.params)
        terminated = terminated.astype(bool)
        truncated = jnp.logical_and(truncated.astype(bool), ~terminated)
        return StepOut(
            obs=self._flat(obs),
            state=state,
            reward=reward.astype(jnp.float32),
            done=jnp.logical_or(terminated, truncated),
            truncated=truncated,
            final_obs=self._flat(info["final_observation"]),
            episode_return=jnp.zeros(self.num_envs, jnp.float32),
        )
