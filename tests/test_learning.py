"""PPO learns at the paper's presets (the acceptance checks of the foundation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.evaluation import evaluate


def test_cartpole_at_the_paper_preset_reaches_475():
    result = evaluate("ppo", ["classic/cartpole"], num_runs=4)
    env = result.envs[0]
    assert env.env_steps_per_run == 499_712  # 976 whole updates of 512 steps
    assert env.summary.mean >= 475.0, env.final_returns


def random_policy_return(gymnax_name: str, episodes: int = 64) -> float:
    import gymnax

    env, params = gymnax.make(gymnax_name)

    def episode(key):
        k_reset, key = jax.random.split(key)
        _, state = env.reset(k_reset, params)

        def body(carry):
            key, state, total, _ = carry
            key, k_act, k_step = jax.random.split(key, 3)
            action = jax.random.randint(k_act, (), 0, env.num_actions)
            _, state, reward, term, trunc, _ = env.step(k_step, state, action, params)
            return key, state, total + reward, jnp.logical_or(term, trunc)

        _, _, total, _ = jax.lax.while_loop(
            lambda c: ~c[3], body, (key, state, jnp.float32(0.0), jnp.bool_(False))
        )
        return total

    keys = jax.random.split(jax.random.key(123), episodes)
    return float(jax.jit(jax.vmap(episode))(keys).mean())


# PPO's return on Breakout at 1e6 steps, measured with `evaluate("ppo", ["minatar/breakout"],
# num_runs=8, timesteps=1e6)` (meta-test runs 0-7, CPU, 2 devices) after the trainer stopped
# splitting a minibatch key Adam never reads (2026-11-30; the random stream changed):
# 23.8, 12.4, 27.0, 25.9, 26.4, 34.4, 28.1, 25.5; mean 25.4 (the commit before it: 24.1 on the
# same runs; the near-random initial policy: 0.4-0.5).
PPO_BREAKOUT_1E6 = 25.4


def test_breakout_learns_at_1e6_steps():
    random_return = random_policy_return("Breakout-MinAtar")
    result = evaluate("ppo", ["minatar/breakout"], num_runs=4, timesteps=1e6)
    finals = np.array(result.envs[0].final_returns, dtype=float)
    assert random_return < 2.0
    # At least half of PPO's measured mean; over 4 runs (2 runs' mean swings from 12 to 30).
    assert finals.mean() >= 0.5 * PPO_BREAKOUT_1E6, (finals, random_return)
    curve = np.array(result.envs[0].curves[0], dtype=float)
    assert np.nanmean(curve[-10:]) > np.nanmean(curve[:10])
