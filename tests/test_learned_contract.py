"""Contract tests over every registered learned algorithm: build, train under jit, round-trip."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import tiny_config

from metarl_cli.artefacts import load_artefact
from metarl_cli.envs import make_env
from metarl_cli.evaluation import evaluate
from metarl_cli.learned.base import ALGORITHMS, get_algorithm, slots_for
from metarl_cli.learned.io import save_learned
from metarl_cli.rl.ppo import make_train

get_algorithm("lpo")  # imports every algorithm module so the registry is complete
NAMES = ALGORITHMS.names()


def test_registry_holds_the_papers_algorithms():
    assert {"lpo", "open", "open_ff"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_algorithm_trains_and_round_trips_through_an_artefact(name, tmp_path):
    alg = get_algorithm(name)
    assert alg.slot in ("drift", "optimiser") and alg.spec.digest == alg.spec.digest
    assert len(set(alg.spec.names)) == len(alg.spec.names)
    cfg = tiny_config("classic/cartpole", num_minibatches=2)
    arch = alg.default_architecture(cfg.suite)
    theta_slot = alg.init(jax.random.key(0), **arch)
    slots = slots_for(alg, cfg, arch)
    theta = {"drift": {}, "optimiser": {}, alg.slot: theta_slot}
    out = jax.jit(make_train(cfg, make_env(cfg), slots))(theta, jax.random.key(0))
    assert np.isfinite(out.losses).all()

    path = tmp_path / f"{name}.safetensors"
    save_learned(path, alg, theta_slot, architecture=arch)
    manifest, tensors = load_artefact(path)
    assert manifest.algorithm == name and manifest.feature_spec.digest == alg.spec.digest
    for a, b in zip(jax.tree.leaves(theta_slot), jax.tree.leaves(tensors), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    overrides = {k: getattr(cfg, k) for k in ("num_envs", "num_steps", "num_minibatches")}
    overrides |= {"update_epochs": cfg.update_epochs, "curve_points": cfg.curve_points}
    direct = evaluate(
        str(path), ["classic/cartpole"], num_runs=1, chunk=1,
        timesteps=cfg.total_timesteps, overrides=overrides,
    )  # fmt: skip
    again = evaluate(
        str(path), ["classic/cartpole"], num_runs=1, chunk=1,
        timesteps=cfg.total_timesteps, overrides=overrides,
    )  # fmt: skip
    assert direct.envs[0].curves == again.envs[0].curves
    assert direct.target.algorithm == name
