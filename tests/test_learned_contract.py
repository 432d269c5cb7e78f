"""Contract tests over every registered learned algorithm: build, train under jit, round-trip."""

from __future__ import annotations

from dataclasses import astuple, replace

import jax
import numpy as np
import pytest
from conftest import tiny_config
from jax.flatten_util import ravel_pytree

from metarl_cli.artefacts import load_artefact
from metarl_cli.envs import make_env
from metarl_cli.evaluation import evaluate
from metarl_cli.learned.base import ALGORITHMS, Feature, FeatureSpec, get_algorithm, slots_for
from metarl_cli.learned.io import save_learned
from metarl_cli.rl.lpg_train import OwnTrainer
from metarl_cli.rl.ppo import make_train
from metarl_cli.rl.slots import Theta
from metarl_cli.seeds import META_TEST, run_keys

get_algorithm("lpo")  # imports every algorithm module so the registry is complete
NAMES = ALGORITHMS.names()


def test_registry_holds_the_papers_algorithms():
    assert {"lpo", "open", "open_ff"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_spec_digest_is_a_function_of_the_spec_content(name):
    """The digest changes with every part of the spec an artefact depends on, and only then."""
    spec = get_algorithm(name).spec
    assert len(spec.digest) == 64 and int(spec.digest, 16) >= 0
    copy = FeatureSpec(
        spec.algorithm, spec.version, tuple(Feature(*astuple(f)) for f in spec.features)
    )
    assert copy.digest == spec.digest
    first, *rest = spec.features
    changed = [
        replace(spec, version=spec.version + 1),
        replace(spec, algorithm=spec.algorithm + "_x"),
        replace(spec, features=(replace(first, name=first.name + "_x"), *rest)),
        replace(spec, features=(replace(first, meaning=first.meaning + "."), *rest)),
        replace(spec, features=(replace(first, typical_range=(-9.0, 9.0)), *rest)),
        replace(spec, features=spec.features[:-1]),
    ]
    if len(set(spec.features)) > 1:
        changed.append(replace(spec, features=(*rest, first)))  # order matters
    digests = [c.digest for c in changed]
    assert spec.digest not in digests and len(set(digests)) == len(digests)


def test_spec_digests_differ_between_algorithms():
    digests = [get_algorithm(n).spec.digest for n in NAMES]
    assert len(set(digests)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_algorithm_trains_and_round_trips_through_an_artefact(name, tmp_path):
    alg = get_algorithm(name)
    assert alg.slot in ("drift", "optimiser", "update_rule")
    assert len(set(alg.spec.names)) == len(alg.spec.names)
    cfg = tiny_config("classic/cartpole", num_minibatches=2)
    arch = alg.default_architecture(cfg.suite)
    # Away from the init (LPO's is all zeros), so a load that loses theta cannot pass.
    flat, unravel = ravel_pytree(alg.init(jax.random.key(0), **arch))
    theta_slot = unravel(flat + 0.05 * jax.random.normal(jax.random.key(1), flat.shape))
    if alg.slot == "update_rule":  # the whole update: the rule brings its own trainer
        trainer = OwnTrainer(alg.kernel(cfg, arch)).trainer(cfg, make_env(cfg))
        theta = theta_slot
    else:
        trainer = make_train(cfg, make_env(cfg), slots_for(alg, cfg, arch))
        theta = Theta.for_slot(alg.slot, theta_slot)
    # Run 0 of the meta-test stream: the key `evaluate` gives its first run (seeds.py).
    key = run_keys(META_TEST, 0, 1)[0]
    out = jax.jit(trainer)(theta, key)
    assert np.isfinite(out.losses).all()

    path = tmp_path / f"{name}.safetensors"
    save_learned(path, alg, theta_slot, architecture=arch)
    manifest, tensors = load_artefact(path)
    assert manifest.algorithm == name and manifest.feature_spec.digest == alg.spec.digest
    for a, b in zip(jax.tree.leaves(theta_slot), jax.tree.leaves(tensors), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    overrides = {k: getattr(cfg, k) for k in ("num_envs", "num_steps", "num_minibatches")}
    overrides |= {"update_epochs": cfg.update_epochs, "curve_points": cfg.curve_points}
    loaded = evaluate(
        str(path), ["classic/cartpole"], num_runs=1, chunk=1,
        timesteps=cfg.total_timesteps, overrides=overrides,
    )  # fmt: skip
    # The artefact, loaded and run by `evaluate`, trains exactly as the in-memory theta did.
    assert loaded.target.algorithm == name
    assert loaded.envs[0].config == cfg.model_dump()
    np.testing.assert_array_equal(
        np.array(loaded.envs[0].curves[0], dtype=float), np.asarray(out.curve, dtype=float)
    )
    assert loaded.envs[0].final_episodes == [int(out.final_episodes)]
