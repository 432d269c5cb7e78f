"""Tests for the Brax and Craftax adapters: shapes, time limits, resets, clipping, determinism.

Each backend is built and compiled once per module (fixtures below) because compiling a Brax
or Craftax step on CPU takes seconds; every test then reuses the jitted functions.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from metarl_cli.envs.brax_env import BraxVecEnv
from metarl_cli.envs.craftax_env import DEFAULT_NAME, CraftaxVecEnv

N = 4


@pytest.fixture(scope="module")
def brax_ant():
    env = BraxVecEnv("brax/ant", "ant", N, episode_length=3)
    return env, jax.jit(env.reset), jax.jit(env.step)


@pytest.fixture(scope="module")
def craftax():
    env = CraftaxVecEnv("craftax/classic", DEFAULT_NAME, N, reset_pool=2)
    return env, jax.jit(env.reset), jax.jit(env.step)


def test_adapters_import_backends_lazily():
    code = (
        "import sys, metarl_cli.envs.brax_env, metarl_cli.envs.craftax_env; "
        "print('brax' in sys.modules, 'craftax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_brax_shapes_and_dtypes(brax_ant):
    env, reset, step = brax_ant
    assert (env.spec.obs_dim, env.spec.action_dim) == (27, 8)
    assert env.spec.continuous and env.spec.can_truncate
    obs, state = reset(jax.random.key(0))
    assert obs.shape == (N, 27) and obs.dtype == jnp.float32
    out = step(jax.random.key(1), state, jnp.zeros((N, 8)))
    assert out.obs.shape == out.final_obs.shape == (N, 27)
    assert out.obs.dtype == out.final_obs.dtype == jnp.float32
    assert out.reward.shape == (N,) and out.reward.dtype == jnp.float32
    for flag in (out.done, out.truncated):
        assert flag.shape == (N,) and flag.dtype == jnp.bool_
    assert out.episode_return.shape == (N,)
    assert bool(jnp.isfinite(out.obs).all())


def test_brax_time_limit_truncates_and_resets(brax_ant):
    _, reset, step = brax_ant
    obs0, state = reset(jax.random.key(0))
    action = jnp.zeros((N, 8))
    for t in range(1, 4):
        out = step(jax.random.key(t), state, action)
        state = out.state
        terminated = out.done & ~out.truncated
        if t < 3:
            assert not out.truncated.any()
            assert bool((out.state.steps == t).all())
    alive = ~terminated
    assert bool(alive.any())
    assert bool((out.truncated == alive).all())
    assert bool(out.done.all())
    # Every env restarted from its first state: counter back to 0, obs is the reset obs, and
    # the final observation is the one the episode ended on.
    assert bool((out.state.steps == 0).all())
    assert bool(jnp.array_equal(out.obs, obs0))
    assert bool((jnp.abs(out.final_obs - out.obs).max(axis=1) > 0).all())


def test_brax_clip_action(brax_ant):
    _, reset, step = brax_ant
    _, state = reset(jax.random.key(0))
    big = step(jax.random.key(1), state, jnp.full((N, 8), 5.0, jnp.float32))
    one = step(jax.random.key(1), state, jnp.full((N, 8), 1.0, jnp.float32))
    half = step(jax.random.key(1), state, jnp.full((N, 8), 0.5, jnp.float32))
    assert bool(jnp.array_equal(big.obs, one.obs))
    assert bool(jnp.array_equal(big.reward, one.reward))
    assert not bool(jnp.array_equal(one.obs, half.obs))


def test_brax_deterministic(brax_ant):
    _, reset, step = brax_ant
    a = jnp.full((N, 8), 0.3, jnp.float32)
    obs_a, st_a = reset(jax.random.key(7))
    obs_b, st_b = reset(jax.random.key(7))
    obs_c, _ = reset(jax.random.key(8))
    assert bool(jnp.array_equal(obs_a, obs_b))
    assert not bool(jnp.array_equal(obs_a, obs_c))
    out_a = step(jax.random.key(1), st_a, a)
    out_b = step(jax.random.key(1), st_b, a)
    assert bool(jnp.array_equal(out_a.obs, out_b.obs))


def test_craftax_shapes_and_dtypes(craftax):
    env, reset, step = craftax
    assert (env.spec.obs_dim, env.spec.action_dim) == (1345, 17)
    assert not env.spec.continuous and env.spec.can_truncate
    obs, state = reset(jax.random.key(0))
    assert obs.shape == (N, 1345) and obs.dtype == jnp.float32
    out = step(jax.random.key(1), state, jnp.zeros(N, jnp.int32))
    assert out.obs.shape == out.final_obs.shape == (N, 1345)
    assert out.obs.dtype == jnp.float32 and out.reward.dtype == jnp.float32
    assert out.done.dtype == out.truncated.dtype == jnp.bool_
    # Nobody finishes on the first step, so the optimistic reset does not touch anything.
    assert not out.done.any()
    assert bool(jnp.array_equal(out.obs, out.final_obs))
    assert bool((out.state.timestep == 1).all())
    # Reset and step states have identical types, so the jitted step compiles only once.
    assert jax.tree.map(jax.typeof, state) == jax.tree.map(jax.typeof, out.state)


def test_craftax_done_envs_get_fresh_worlds(craftax):
    env, reset, step = craftax
    _, state = reset(jax.random.key(0))
    state = step(jax.random.key(1), state, jnp.zeros(N, jnp.int32)).state
    limit = env.params.max_timesteps
    # env 0 dies, env 1 plays on, env 2 dies on the time limit's step, env 3 hits the limit.
    state = state.replace(
        player_health=state.player_health.at[jnp.array([0, 2])].set(0),
        timestep=state.timestep.at[jnp.array([2, 3])].set(limit - 1),
    )
    out = step(jax.random.key(2), state, jnp.zeros(N, jnp.int32))
    assert out.done.tolist() == [True, False, True, True]
    assert out.truncated.tolist() == [False, False, False, True]
    assert out.state.timestep.tolist() == [0, 2, 0, 0]
    # The done envs show a fresh world's first observation, not the one they ended on.
    fresh_obs = jax.vmap(env.env.get_obs)(out.state).reshape(N, -1)
    assert bool(jnp.array_equal(out.obs, fresh_obs))
    for i in (0, 2, 3):
        assert not bool(jnp.array_equal(out.obs[i], out.final_obs[i]))
        assert int(out.state.player_health[i]) == 9
    # The env that kept playing keeps its world and its observation.
    assert bool(jnp.array_equal(out.state.map[1], state.map[1]))
    assert bool(jnp.array_equal(out.obs[1], out.final_obs[1]))
    # Pool of 2: done envs of rank 0 and 2 (envs 0 and 3) share a world, rank 1 gets another.
    assert bool(jnp.array_equal(out.state.map[0], out.state.map[3]))
    assert not bool(jnp.array_equal(out.state.map[0], out.state.map[2]))


def test_craftax_deterministic(craftax):
    _, reset, step = craftax
    obs_a, st_a = reset(jax.random.key(3))
    obs_b, st_b = reset(jax.random.key(3))
    obs_c, _ = reset(jax.random.key(4))
    assert bool(jnp.array_equal(obs_a, obs_b))
    assert not bool(jnp.array_equal(obs_a, obs_c))
    actions = jnp.arange(N, dtype=jnp.int32)
    out_a = step(jax.random.key(5), st_a, actions)
    out_b = step(jax.random.key(5), st_b, actions)
    assert bool(jnp.array_equal(out_a.obs, out_b.obs))


def test_craftax_worlds_are_those_of_their_keys():
    """Worlds are generated one at a time: world i is bit for bit the world of key i generated
    alone, whatever the number of envs (vectorised generation on CPU flips ~3-17% of cells
    depending on the batch layout, and costs 40x more per world at 1024 envs); none repeats."""
    import numpy as np

    n = 40
    key = jax.random.key(3)
    env = CraftaxVecEnv("craftax/classic", DEFAULT_NAME, n)
    maps = np.asarray(jax.jit(lambda k: env._reset_many(k, n))(key)[1].map)
    single = jax.jit(lambda k: env.env.reset(k, env.params)[1].map)
    for i, k in enumerate(jax.random.split(key, n)):
        np.testing.assert_array_equal(maps[i], np.asarray(single(k)))
    assert len({m.tobytes() for m in maps}) == n
