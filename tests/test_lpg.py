"""LPG: network sizes, episode isolation, the agent it trains, and the exact meta-gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from metarl_cli.envs.base import EpisodeLog
from metarl_cli.envs.gridworld import Distribution, GridworldVecEnv
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.lpg import LPGRule, sample_sequences
from metarl_cli.meta.metagrad.config import MetagradConfig
from metarl_cli.meta.metagrad.step import agent_objective
from metarl_cli.meta.metagrad.train import lifetime_config
from metarl_cli.rl.lpg_agent import AgentConfig, LPGAgent
from metarl_cli.rl.lpg_train import A2CTrainer, LPGTrainer

LPG = get_algorithm("lpg")
TINY = {"gru": 8, "embed": 4, "target": 8}
MARGIN = 0.3  # measured: see test_an_analytic_rule_in_the_update_slot_learns_a_gridworld


def test_paper_and_smaller_student_sizes():
    """Table 9's LPG has 203,946 parameters (paper: "~200k"); the halved student 52,826."""
    sizes = []
    for widths in ({"gru": 256, "embed": 16}, {"gru": 128, "embed": 8}):
        arch = LPG.architecture_with(widths)
        shapes = jax.eval_shape(lambda k, a=arch: LPG.init(k, **a), jax.random.key(0))
        sizes.append(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)))
    assert sizes == [203_946, 52_826]
    assert LPG.default_architecture("gridworld") == {"gru": 256, "embed": 16, "target": 8}
    assert len(LPG.spec.features) == 19  # "LPG has 19 inputs" (paper §6)


def test_nothing_crosses_an_episode_end_backwards():
    """Rewards after an episode end (d_t = 1) cannot change LPG's outputs at or before t."""
    theta = LPG.init(jax.random.key(0), **TINY)
    b = sample_sequences(jax.random.key(1), 3)
    b["d"] = jnp.zeros_like(b["d"]).at[6].set(1.0)
    rule = jax.jit(LPGRule(**TINY))
    before = rule(theta, b["r"], b["d"], b["pi"], b["y_t"], b["y_tp1"])
    changed = b["r"].at[7:].add(5.0)
    after = rule(theta, changed, b["d"], b["pi"], b["y_t"], b["y_tp1"])
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(np.asarray(x[:7]), np.asarray(y[:7]))
        assert not np.allclose(np.asarray(x[7:]), np.asarray(y[7:]))  # later steps do see it
    assert np.allclose(np.asarray(before[1]).sum(-1), 1.0, atol=1e-5)  # y_hat is a softmax


def reinforce_rule(theta, r, d, pi, y_t, y_tp1):
    """An analytic update rule: pi_hat = -(normalised return-to-go within the episode), so the
    agent's descent on log(pi) * pi_hat is REINFORCE; y_hat = y (no change)."""
    del theta, pi, y_tp1

    def back(g, x):
        reward, done = x
        g = reward + 0.9 * g * (1.0 - done)
        return g, g

    _, ret = jax.lax.scan(back, jnp.zeros_like(r[0]), (r, d), reverse=True)
    return -(ret - ret.mean()) / (ret.std() + 1e-8), y_t


def zero_rule(theta, r, d, pi, y_t, y_tp1):
    """A rule that changes nothing (the agent keeps its initial policy)."""
    del theta, d, pi, y_tp1
    return jnp.zeros_like(r), y_t


# A small sparse level: 4 x 4, a +1 and a -1 object that both end the episode, 20 steps.
SMALL_SPARSE = Distribution(
    "small_sparse", "test level", max_grid=4, max_objs=2, max_types=2, tabular=True,
    lifetime=30, obj_type=(0, 1), max_steps=20, n_objs=2, grid_size=4, reward=(1.0, -1.0),
    p_terminate=(1.0, 1.0), p_respawn=(0.0, 0.0),
)  # fmt: skip


def _curves(trainer, n=4):
    keys = jax.random.split(jax.random.key(3), n)  # the same levels for every rule
    out = jax.jit(jax.vmap(lambda k: trainer(None, k)))(keys)
    return np.asarray(out.curve)


def test_an_analytic_rule_in_the_update_slot_learns_a_gridworld():
    """Plumbing: REINFORCE written as an update rule beats a rule that changes nothing, and so
    does the A2C baseline, on the same levels."""
    cfg = lifetime_config("gridworld/debug", 30, 8, 20)  # sizes only: 30 updates of 8 x 20
    env = EpisodeLog(GridworldVecEnv("gridworld/small_sparse", SMALL_SPARSE, cfg.num_envs))
    agent = AgentConfig(hidden=16, lr=1e-2, y_lr=1e-2)
    learn = _curves(LPGTrainer(cfg, env, reinforce_rule, agent))
    still = _curves(LPGTrainer(cfg, env, zero_rule, agent))
    a2c = _curves(A2CTrainer(cfg, env, agent))
    late = np.s_[:, -5:]
    assert np.nanmean(learn[late]) > np.nanmean(still[late]) + MARGIN
    assert np.nanmean(a2c[late]) > np.nanmean(still[late]) + MARGIN


def _as_f64(tree):
    return jax.tree.map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_meta_gradient_matches_central_finite_differences(optimiser):
    """d(meta-loss)/d(theta) through K=2 agent updates, against central differences along
    random directions, in float64."""
    from metarl_cli.envs import make_env

    with jax.enable_x64(True):
        arch = {"gru": 4, "embed": 2, "target": 8}
        cfg = MetagradConfig(
            algo=LPG.name, envs=["gridworld/debug"], architecture=arch,
            num_agents=1, num_mini_batches=1, agent_updates=2, num_envs=2, num_steps=4,
            remat=False,
        )  # fmt: skip
        tc = lifetime_config("gridworld/debug", 4, 2, 4)
        lr = 0.5 if optimiser == "sgd" else 0.05
        agent = LPGAgent(
            AgentConfig(hidden=4, optimiser=optimiser, lr=lr, y_lr=lr), make_env(tc),
            LPGRule(**arch), 4,
        )  # fmt: skip
        state = _as_f64(agent.init(jax.random.key(0)))
        theta = _as_f64(LPG.init(jax.random.key(1), **arch))
        flat, unravel = ravel_pytree(theta)

        def loss(x):
            return agent_objective(cfg, agent, 4, unravel(x), state, jax.random.key(2))[0]

        value_and_grad = jax.jit(jax.value_and_grad(loss))  # one program for both
        _, grad = value_and_grad(flat)
        assert float(jnp.linalg.norm(grad)) > 1e-4
        for i in range(3):
            v = jax.random.normal(jax.random.key(10 + i), flat.shape)
            eps = 1e-5
            up, down = value_and_grad(flat + eps * v)[0], value_and_grad(flat - eps * v)[0]
            fd = (up - down) / (2 * eps)
            assert float(grad @ v) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)
