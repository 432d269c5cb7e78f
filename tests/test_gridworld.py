"""Gridworld dynamics, level distributions and the DP optimal return against brute force."""

from __future__ import annotations

import itertools
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_cli.envs.gridworld import DISTRIBUTIONS, Gridworld, GridworldVecEnv, optimal_return
from metarl_cli.envs.gridworld.env import free_cells
from metarl_cli.envs.gridworld.levels import Level

DEBUG = DISTRIBUTIONS.get("debug")  # max_grid 4, 2 objects, 2 types, tabular


def level_3x3(reward=(1.0, -0.5), p_term=(0.3, 0.0), p_respawn=(0.5, 0.2), walls=(1,), steps=6):
    """A 3x3 level on the debug board (stride 3): start at cell 0, a wall at cell 1,
    object 0 (type 0) at cell 8 and object 1 (type 1) at cell 2."""
    return Level(
        grid_size=jnp.int32(3),
        max_steps=jnp.int32(steps),
        walls=jnp.zeros(16, bool).at[jnp.asarray(walls, jnp.int32)].set(True),
        start_pos=jnp.int32(0),
        obj_pos=jnp.array([8, 2], jnp.int32),
        obj_type=jnp.array([0, 1], jnp.int32),
        n_objs=jnp.int32(2),
        reward=jnp.asarray(reward, jnp.float32),
        p_terminate=jnp.asarray(p_term, jnp.float32),
        p_respawn=jnp.asarray(p_respawn, jnp.float32),
    )


def walk(env, level, actions, key=0):
    """(positions, rewards, terminated, truncated) along `actions` (step_env, no reset)."""
    _, state = env.reset_env(jax.random.key(key), level)
    out = []
    for i, a in enumerate(actions):
        _, state, r, term, trunc, _ = env.step_env(jax.random.key(100 + i), state, a, level)
        out.append((int(state.pos), float(r), bool(term), bool(trunc)))
    return out, state


def test_moves_are_blocked_by_edges_and_walls_and_stay_stays():
    env = Gridworld(DEBUG)
    level = level_3x3(p_term=(0.0, 0.0), p_respawn=(0.0, 0.0))
    # up off the board, right into the wall, down, stay, right, right off the 3-wide board
    steps, _ = walk(env, level, [0, 3, 1, 4, 3, 3, 3])
    assert [s[0] for s in steps] == [0, 0, 3, 3, 4, 5, 5]  # 5 -> right does not wrap to 6
    assert all(r == 0 and not t for _, r, t, _ in steps)


def test_collecting_rewards_respawn_and_termination():
    env = Gridworld(DEBUG)
    # Object 1 (reward -0.5) respawns at once; collecting object 0 (+1) always terminates.
    level = level_3x3(p_term=(1.0, 0.0), p_respawn=(0.0, 1.0), steps=20)
    steps, state = walk(env, level, [1, 3, 3, 0])  # 0 -> 3 -> 4 -> 5 -> 2: collects object 1
    assert steps[-1][:3] == (2, -0.5, False) and not bool(state.exists[1])
    steps, state = walk(env, level, [1, 3, 3, 0, 4, 4])  # it reappears, then is collected again
    assert [s[1] for s in steps[-2:]] == [0.0, -0.5]
    steps, _ = walk(env, level, [1, 1, 3, 3])  # 0 -> 3 -> 6 -> 7 -> 8: object 0 ends it
    assert steps[-1][1:] == (1.0, True, False)


def test_time_limit_truncates_and_auto_reset_keeps_the_level():
    env = Gridworld(DEBUG)
    level = level_3x3(p_term=(0.0, 0.0), p_respawn=(0.0, 0.0), steps=3)
    _, state = env.reset_env(jax.random.key(0), level)
    for i, a in enumerate([1, 3, 3]):
        _, state, _, term, trunc, info = env.step(jax.random.key(i), state, a, level)
    assert bool(trunc) and not bool(term)
    assert int(state.pos) == 0 and int(state.time) == 0  # restarted at the start cell
    final = np.asarray(info["final_observation"])
    assert final[-1] == pytest.approx(0.003) and final[5 + 16 * 3] == 1  # cell 5, both objects


def test_non_tabular_objects_respawn_only_on_free_cells():
    """The reference drew respawn cells with `isin` on a boolean wall mask (walls allowed)."""
    dist = DISTRIBUTIONS.get("rand_all")
    env = Gridworld(dist)
    level = dist.sample(jax.random.key(3)).replace(
        p_respawn=jnp.ones(5), p_terminate=jnp.zeros(5), max_steps=jnp.int32(10_000)
    )
    free = np.asarray(free_cells(level))
    assert (~free[: int(level.grid_size) ** 2]).any()  # the level has walls on its board

    def body(state, key):
        k_a, k_s = jax.random.split(key)
        action = jax.random.randint(k_a, (), 0, 5)
        _, state, *_ = env.step_env(k_s, state, action, level)
        return state, (state.obj_pos, state.exists)

    _, state = env.reset_env(jax.random.key(0), level)
    _, (pos, exists) = jax.lax.scan(body, state, jax.random.split(jax.random.key(1), 200))
    pos, exists = np.asarray(pos), np.asarray(exists)
    assert exists.sum() > 200 and free[pos[exists]].all()


def test_every_distribution_draws_valid_levels():
    for name in DISTRIBUTIONS.names():
        dist = DISTRIBUTIONS.get(name)
        lv = jax.tree.map(
            np.asarray, jax.vmap(dist.sample)(jax.random.split(jax.random.key(0), 32))
        )
        cells = np.concatenate([lv.start_pos[:, None], lv.obj_pos], axis=1)  # [32, 1 + K]
        used = np.arange(cells.shape[1])[None] <= lv.n_objs[:, None]  # start + objects in use
        assert all(len(set(c[u])) == u.sum() for c, u in zip(cells, used, strict=True)), name
        assert (cells < lv.grid_size[:, None] ** 2).all(), name
        assert not np.take_along_axis(lv.walls, cells, 1)[used].any(), name
        assert (lv.n_objs >= 1).all() and (lv.n_objs <= dist.max_objs).all(), name
        assert (lv.max_steps >= 1).all() and (lv.max_steps <= dist.episode_cap).all(), name
        if dist.reward is None:  # a random distribution: the paper's ranges
            assert lv.reward[:, 0].min() >= 0 and lv.reward.min() >= -1, name
            assert lv.p_terminate.min() >= 1e-2 - 1e-7 and lv.p_respawn.max() <= 0.1 + 1e-7
            assert len(set(lv.grid_size.tolist())) > 1 and lv.walls.sum(1).max() > 0
        env = GridworldVecEnv(f"gridworld/{name}", name, 2)
        obs = jax.eval_shape(env.reset, jax.random.key(1))[0]
        assert obs.shape == (2, dist.obs_dim) == (2, env.spec.obs_dim), name
    assert DISTRIBUTIONS.get("all_shortlife").obs_dim == 3201  # the reference's sizes
    assert DISTRIBUTIONS.get("rand_all").obs_dim == 601


# --- the DP optimal return ----------------------------------------------------------------------


def expectimax(level: Level, horizon: int) -> float:
    """The optimal expected return by exhaustive recursion over actions and every respawn and
    termination outcome, written from the rules in plain Python (independent of the DP)."""
    g = int(level.grid_size)
    walls = {int(i) for i in np.flatnonzero(np.asarray(level.walls))}
    n = int(level.n_objs)
    cell = [int(c) for c in level.obj_pos[:n]]
    typ = [int(t) for t in level.obj_type[:n]]
    rew, pt, pr = (np.asarray(x, float) for x in (level.reward, level.p_terminate, level.p_respawn))

    def step_to(pos, a):
        r, c = divmod(pos, g)
        r, c = r + (-1, 1, 0, 0, 0)[a], c + (0, 0, -1, 1, 0)[a]
        ok = 0 <= r < g and 0 <= c < g and r * g + c not in walls
        return r * g + c if ok else pos

    @cache
    def value(pos, exists, t):
        if t == horizon:
            return 0.0
        best = -np.inf
        for a in range(5):
            p2 = step_to(pos, a)
            got = [i for i in range(n) if exists[i] and cell[i] == p2]
            r = sum(rew[typ[i]] for i in got)
            q = min(1.0, sum(pt[typ[i]] for i in got))
            absent = [i for i in range(n) if not exists[i]]
            future = 0.0
            for back in itertools.product((0, 1), repeat=len(absent)):
                prob, nxt = 1.0, [exists[i] and i not in got for i in range(n)]
                for i, b in zip(absent, back, strict=True):
                    prob *= pr[typ[i]] if b else 1 - pr[typ[i]]
                    nxt[i] = bool(b)
                future += prob * value(p2, tuple(nxt), t + 1)
            best = max(best, r + (1 - q) * future)
        return best

    return value(int(level.start_pos), (True,) * n, 0)


def test_dp_optimal_return_matches_exhaustive_expectimax():
    dp = jax.jit(optimal_return, static_argnums=0)
    for level in (level_3x3(), level_3x3(reward=(0.4, 0.7), p_term=(0.9, 0.1), steps=5)):
        assert float(dp(DEBUG, level)) == pytest.approx(expectimax(level, int(level.max_steps)))


def test_dp_optimal_return_is_the_best_action_sequence_of_the_real_env():
    """A deterministic level: the best open-loop sequence (all 5**6, stepped through the env's
    own dynamics) earns exactly the DP optimum: +1 at cell 8 in 4 moves, then 0.6 at cell 2."""
    env = Gridworld(DEBUG)
    level = level_3x3(reward=(1.0, 0.6), p_term=(0.0, 0.0), p_respawn=(0.0, 1.0), steps=6)
    seqs = jnp.array(list(itertools.product(range(5), repeat=6)))

    def total(actions):
        _, state = env.reset_env(jax.random.key(0), level)

        def body(carry, a):
            state, ret, alive = carry
            _, state, r, term, trunc, _ = env.step_env(jax.random.key(1), state, a, level)
            return (state, ret + alive * r, alive & ~term & ~trunc), None

        (_, ret, _), _ = jax.lax.scan(body, (state, 0.0, True), actions)
        return ret

    best = float(jnp.max(jax.jit(jax.vmap(total))(seqs)))
    assert best == pytest.approx(float(optimal_return(DEBUG, level))) == pytest.approx(1.6)
