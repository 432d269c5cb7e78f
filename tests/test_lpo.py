"""LPO: initialised exactly at PPO, valid drifts pass the checks, artefacts evaluate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from metarl_cli.cli.app import main
from metarl_cli.envs import make_env
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.checks import check_drift
from metarl_cli.learned.io import save_learned
from metarl_cli.learned.lpo import LPODrift, features
from metarl_cli.results import read_result
from metarl_cli.rl.ppo import make_train
from metarl_cli.rl.slots import PPOClipDrift, Slots, empty_theta


def test_features_are_the_papers_eq_2_and_vanish_at_r_equal_1():
    lpo = get_algorithm("lpo")
    assert lpo.spec.names[0] == "one_minus_r" and len(lpo.spec.names) == 7
    x = features(jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0]))
    np.testing.assert_allclose(x[0], np.zeros(7))
    log2 = np.log(2.0)
    np.testing.assert_allclose(x[1], [-1, 1, 1, -1, log2, -log2, -(log2**2)], rtol=1e-6)


def test_lpo_at_zero_theta_trains_exactly_like_ppo():
    cfg = tiny_config("classic/cartpole")
    env = make_env(cfg)
    lpo = get_algorithm("lpo")
    ppo = jax.jit(make_train(cfg, env))(empty_theta(), jax.random.key(5))
    theta = {"drift": lpo.init(jax.random.key(0)), "optimiser": {}}
    learned = jax.jit(make_train(cfg, env, Slots(drift=LPODrift())))(theta, jax.random.key(5))
    # Same episodes, same returns. The loss values agree to float32 rounding only: the extra
    # (all-zero) network terms change how XLA fuses the loss reduction, not its value.
    np.testing.assert_array_equal(ppo.curve, learned.curve)
    np.testing.assert_array_equal(ppo.final_return, learned.final_return)
    np.testing.assert_allclose(ppo.losses, learned.losses, rtol=1e-4)


def test_validity_checks_accept_ppo_and_reject_invalid_drifts():
    assert check_drift(PPOClipDrift()) == []
    lpo_zero = get_algorithm("lpo").init(jax.random.key(0))
    assert check_drift(LPODrift(), lpo_zero) == []
    assert any("negative" in p for p in check_drift(lambda t, r, a, e: (r - 1.0) * a))
    assert any("not 0 at r = 1" in p for p in check_drift(lambda t, r, a, e: r + 0 * a))
    assert any("slope" in p for p in check_drift(lambda t, r, a, e: jnp.abs(r - 1.0) + 0 * a))


def test_random_lpo_is_non_negative_and_zero_at_one():
    theta = {
        "w1": jax.random.normal(jax.random.key(1), (7, 128)),
        "w2": jax.random.normal(jax.random.key(2), (128, 1)),
    }
    problems = check_drift(LPODrift(), theta)
    assert not any("negative" in p or "not 0" in p for p in problems)


def test_lpo_artefact_evaluates_like_ppo(tmp_path, capsys):
    lpo = get_algorithm("lpo")
    art = tmp_path / "lpo.safetensors"
    save_learned(art, lpo, lpo.init(jax.random.key(0)), architecture={"hidden": 128})
    tiny = ["--envs", "cartpole", "-n", "2", "--timesteps", "512", "--set", "num_steps=16"]
    assert main(["evaluate", str(art), *tiny, "-o", str(tmp_path / "lpo.json")]) == 0
    assert main(["evaluate", "ppo", *tiny, "-o", str(tmp_path / "ppo.json")]) == 0
    learned, ppo = read_result(tmp_path / "lpo.json"), read_result(tmp_path / "ppo.json")
    assert learned.target.algorithm == "lpo" and learned.target.spec_digest == lpo.spec.digest
    assert learned.envs[0].curves == ppo.envs[0].curves
    assert main(["inspect", str(art), "--json"]) == 0
    shown = capsys.readouterr().out
    assert '"algorithm": "lpo"' in shown and "w1" in shown


def test_artefact_with_another_feature_spec_is_refused(tmp_path, capsys):
    from metarl_cli.artefacts import FeatureSpecRef, Manifest, save_artefact

    lpo = get_algorithm("lpo")
    manifest = Manifest(
        algorithm="lpo",
        slot="drift",
        form="neural",
        feature_spec=FeatureSpecRef(version=1, digest="0" * 64),
        meta_learner=None,
        versions={},
    )
    art = tmp_path / "old.safetensors"
    save_artefact(art, lpo.init(jax.random.key(0)), manifest)
    assert main(["evaluate", str(art), "--envs", "cartpole"]) == 2
    assert "does not match" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_hand_designed_references_run(tmp_path, name):
    path = tmp_path / f"{name}.json"
    tiny = ["--envs", "cartpole", "-n", "1", "--timesteps", "512", "--set", "num_steps=16"]
    tiny += ["--set", "curve_points=2"]  # 4 updates per point: an episode surely ends in one
    assert main(["evaluate", name, *tiny, "-o", str(path)]) == 0
    result = read_result(path)
    assert result.target.name == name
    last = result.envs[0].curves[0][-1]  # None would mean no episode finished: a failure here
    assert last is not None and 8.0 <= last <= 500.0  # CartPole's range of episode returns
