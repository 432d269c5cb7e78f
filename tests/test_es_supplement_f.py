"""Supplement F's ES options: antithetic task sampling (each ± pair shares a level) and identity
fitness shaping; the defaults stay the paper's main settings (shared seeds, centred ranks).

The key layout and the shaping run on real evosax and real gridworld levels; one tiny CLI run
checks the flags reach the artefact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_cli.cli.app import main
from metarl_cli.envs.gridworld import GridworldVecEnv
from metarl_cli.meta.es.config import ESConfig
from metarl_cli.meta.es.fitness import combine_fitness, run_keys_of
from metarl_cli.meta.es.loop import evolve, fitness_keys
from metarl_cli.seeds import es_fitness_keys


def _config(**kw) -> ESConfig:
    base = dict(
        algo="toy", envs=["toy"], architecture={}, popsize=6, num_rollouts=2, eval_runs=0,
        select="final", num_generations=1, noise_level=0.1, sigma_decay=1.0,
    )  # fmt: skip
    return ESConfig(**{**base, **kw})


def _rows(keys) -> list[tuple[int, ...]]:
    data = np.asarray(jax.random.key_data(keys)).reshape(-1, 2)
    return [tuple(int(v) for v in row) for row in data]


def test_antithetic_pairs_share_keys_of_their_own_and_shared_is_unchanged():
    shared = fitness_keys(_config(), 3)
    assert _rows(shared) == _rows(es_fitness_keys(0, 3, 2))  # the old layout, bit for bit
    cfg = _config(task_sampling="antithetic")
    keys = fitness_keys(cfg, 3)
    assert keys.shape == (6, 2)
    for i in range(3):  # OpenAI-ES's pair i is members i and i + popsize/2
        assert _rows(keys[i]) == _rows(keys[i + 3])
    firsts = _rows(keys[:3])
    assert len(set(firsts)) == 6  # 3 pairs x 2 rollouts, all different
    assert not set(firsts) & set(_rows(fitness_keys(cfg, 4)))  # generations never share
    runs = np.arange(12)  # run i: member i // 2, its rollout i % 2
    assert _rows(run_keys_of(keys, runs)) == _rows(keys)


def test_each_antithetic_pair_meets_one_gridworld_level_and_pairs_differ():
    env = GridworldVecEnv("gridworld/rand_all", "rand_all", 1)
    keys = fitness_keys(_config(popsize=16, num_rollouts=1, task_sampling="antithetic"), 0)

    def level(key):
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(env.reset(key)[1].level)])

    levels = [level(k) for k in keys[:, 0]]
    assert all(np.array_equal(levels[i], levels[i + 8]) for i in range(8))
    assert len({lv.tobytes() for lv in levels[:8]}) == 8  # eight pairs, eight levels


class Outlier:
    """Fitness N(0, 1) per member (fixed), but 1e4 for member 0; records the population."""

    def __init__(self) -> None:
        self.template = self.start = {"w": jnp.zeros(64)}
        self.env_steps_per_generation = 0

    def fitness(self, population, keys):
        self.population = population
        n = jax.tree.leaves(population)[0].shape[0]
        f = np.random.default_rng(0).normal(size=(n, 1))
        f[0] = 1e4
        return combine_fitness({"toy": f}, {"toy": None})


@pytest.mark.parametrize("shaping", ["identity", "centered_rank"])
def test_identity_shaping_follows_the_fitness_itself(shaping):
    """One outlier member: told the fitness itself, OpenAI-ES steps the mean along that
    member's noise in every coordinate; told centred ranks (the outlier is merely the best),
    along a mixture of many members' noise (measured: 64/64 coordinates agree vs 42/64)."""
    problem = Outlier()
    result = evolve(_config(popsize=16, fitness_shaping=shaping, lr=0.01), problem)
    step = np.asarray(result.mean["w"])
    noise = np.asarray(problem.population["w"][0])
    agree = int(np.sum(np.sign(step) == np.sign(noise)))
    assert agree == 64 if shaping == "identity" else agree < 56, agree


def test_options_need_open_es_and_reach_the_artefact(tmp_path, capsys):
    out = tmp_path / "f.safetensors"
    base = [
        "train", "es", "--algo", "lpo", "--envs", "cartpole", "--popsize", "4", "--timesteps",
        "128", "--hsize", "8", "--set", "num_envs=4", "--set", "num_steps=16",
        "--set", "num_minibatches=2", "--set", "update_epochs=1", "--num-generations", "1",
        "--eval-runs", "0", "-o", str(out),
    ]  # fmt: skip
    assert main([*base, "--strategy", "snes", "--task-sampling", "antithetic"]) == 2
    assert "needs --strategy open_es" in capsys.readouterr().err and not out.exists()
    flags = ["--task-sampling", "antithetic", "--fitness-shaping", "identity"]
    assert main([*base, *flags]) == 0, capsys.readouterr().err
    from metarl_cli.artefacts import load_artefact

    config = load_artefact(out)[0].meta_learner.config
    assert config["es"]["task_sampling"] == "antithetic"
    assert config["es"]["fitness_shaping"] == "identity"
    assert config["fitness_seeds"]["num_runs"] == 2  # one per pair per generation


def test_identity_shaping_tells_a_failed_member_the_worst_finite_fitness():
    """`WORST_FITNESS` (-1e6) would swamp an identity-shaped step; centred ranks only rank it."""
    from metarl_cli.meta.es.loop import told_fitness

    fit = combine_fitness({"toy": np.array([[0.5], [np.nan], [0.2]])}, {"toy": None})
    told = np.asarray(told_fitness(_config(fitness_shaping="identity"), fit))
    np.testing.assert_allclose(told, [-0.5, -0.2, -0.2], rtol=1e-6)
    assert np.asarray(told_fitness(_config(), fit))[1] == 1e6  # evosax minimises
