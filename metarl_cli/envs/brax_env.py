"""Adapter for Brax locomotion environments (ant, humanoid, hopper, walker2d).

We use the raw Brax environment and write the vectorised auto-reset ourselves instead of using
Brax's training wrappers: `AutoResetWrapper` overwrites the observation with the reset one and
`EpisodeWrapper` folds the time limit into `done`, so the trainer could neither see the
observation the episode ended on nor tell a time limit from a fall. Resets return to the
per-env first state drawn at `reset` (as Brax's `AutoResetWrapper` does), which costs one
`jnp.where` per leaf instead of a physics initialisation per step.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from metarl_cli.envs.base import EnvSpec, StepOut, where_tree


@struct.dataclass
class BraxVecState:
    """Batched state of `BraxVecEnv`.

    Attributes:
        env_state: the batched Brax `State` (leading axis `num_envs`).
        first_state: each env's state right after `reset`; a finished episode restarts from it.
        steps: steps taken in the current episode, [N] int32.
    """

    env_state: Any
    first_state: Any
    steps: jax.Array


class BraxVecEnv:
    """`num_envs` copies of a Brax environment with a time limit and auto-reset.

    Args:
        env_id: canonical id reported in `spec`, e.g. "brax/ant".
        brax_name: Brax registry name, e.g. "ant".
        num_envs: number of parallel environments.
        backend: Brax physics pipeline ("spring", "positional", "generalized" or "mjx").
        episode_length: time limit in steps; reaching it ends the episode as truncated.
        clip_action: clip actions to [-1, 1] before the env sees them. The learner's
            log-probabilities stay those of the unclipped sample.
    """

    def __init__(
        self,
        env_id: str,
        brax_name: str,
        num_envs: int,
        *,
        backend: str = "positional",
        episode_length: int = 1000,
        clip_action: bool = True,
    ) -> None:
        # mujoco prints "Failed to import warp" to stdout on import when the optional GPU
        # package is absent; keep it out of the CLI's output.
        with contextlib.redirect_stdout(io.StringIO()):
            import brax.envs

        with warnings.catch_warnings():
            # Brax warns on every model load that it is no longer maintained; that is known
            # and says nothing about this run.
            warnings.filterwarnings("ignore", message="Brax System", category=UserWarning)
            self.env = brax.envs.get_environment(brax_name, backend=backend)
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.clip_action = clip_action
        self.spec = EnvSpec(
            env_id=env_id,
            obs_dim=int(self.env.observation_size),
            action_dim=int(self.env.action_size),
            continuous=True,
            can_truncate=True,
        )

    def reset(self, key: jax.Array) -> tuple[jax.Array, BraxVecState]:
        """Draws `num_envs` initial states.

        Args:
            key: PRNG key.

        Returns:
            Observations [N, obs_dim] float32 and the batched state.
        """
        keys = jax.random.split(key, self.num_envs)
        env_state = jax.vmap(self.env.reset)(keys)
        state = BraxVecState(
            env_state=env_state,
            first_state=env_state,
            steps=jnp.zeros(self.num_envs, jnp.int32),
        )
        return env_state.obs.astype(jnp.float32), state

    def step(self, key: jax.Array, state: BraxVecState, action: jax.Array) -> StepOut:
        """Steps every env and restarts the finished ones from their first state.

        Args:
            key: PRNG key (unused: Brax dynamics are deterministic and resets reuse the first
                state; kept for the `VecEnv` interface).
            state: the batched state.
            action: [N, action_dim] float actions.

        Returns:
            The `StepOut`; `final_obs` is the observation the episode ended on.
        """
        del key
        if self.clip_action:
            action = jnp.clip(action, -1.0, 1.0)
        # The incoming state never has done set: finished envs were reset at the end of the
        # previous step, so Brax's step never sees a finished episode.
        env_state = jax.vmap(self.env.step)(state.env_state, action)
        terminated = env_state.done > 0.5
        steps = state.steps + 1
        truncated = (steps >= self.episode_length) & ~terminated
        done = terminated | truncated
        final_obs = env_state.obs.astype(jnp.float32)
        # Read the reward before the reset: the first state's reward is 0.
        reward = env_state.reward.astype(jnp.float32)
        env_state = where_tree(done, state.first_state, env_state)
        steps = jnp.where(done, 0, steps)
        return StepOut(
            obs=env_state.obs.astype(jnp.float32),
            state=BraxVecState(env_state=env_state, first_state=state.first_state, steps=steps),
            reward=reward,
            done=done,
            truncated=truncated,
            final_obs=final_obs,
            episode_return=jnp.zeros(self.num_envs, jnp.float32),
        )
