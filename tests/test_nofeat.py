"""No Features learned optimiser: size, update maths, registry, trainer integration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from metarl_cli.learned.nofeat import (
    NoFeatAlgorithm,
    _mlp,
    init_theta,
    nofeat_features,
    nofeat_optimiser,
    theta_size,
)
from metarl_cli.learned.perparam import Layout
from metarl_cli.rl.slots import OptContext


@pytest.mark.parametrize("hidden,n", [(16, 514), (32, 1538)])
def test_parameter_count(hidden, n):
    assert theta_size(hidden) == n
    leaves = jax.tree.leaves(init_theta(jax.random.key(0), hidden))
    assert sum(x.size for x in leaves) == n


def test_registry_and_spec():
    from metarl_cli.learned.base import ALGORITHMS

    algo = ALGORITHMS.get("nofeat")
    assert isinstance(algo, NoFeatAlgorithm) and algo.slot == "optimiser"
    assert algo.spec.names == [
        "p",
        "m_0_1",
        "m_0_5",
        "m_0_9",
        "m_0_99",
        "m_0_999",
        "m_0_9999",
        "g",
    ]
    # Table 8: 32 on MinAtar, 16 on Ant
    assert algo.default_architecture("minatar") == {"hidden": 32}
    assert algo.default_architecture("brax") == {"hidden": 16}
    opt = algo.kernel(None, {"hidden": 32})
    assert opt == nofeat_optimiser(32) and opt.separate_clip and not opt.needs_activations


def test_features_normalised():
    k1, k2 = jax.random.split(jax.random.key(0))
    p = jax.random.normal(k1, (5, 4)) * 3.0
    g = jax.random.normal(k2, (5, 4)) * 0.5  # well above the 1e-5 floor
    m = jnp.stack([g * (i + 1) for i in range(6)], -1)
    f = nofeat_features(p, g, m)
    assert f.shape == (5, 4, 8)
    np.testing.assert_allclose(jnp.mean(f**2, axis=(0, 1)), 1.0, rtol=1e-3)
    # raw values (no sign/log): g keeps its sign
    np.testing.assert_array_equal(np.sign(f[..., 7]), np.sign(g))


def _toy_problem():
    ks = jax.random.split(jax.random.key(3), 6)

    def dense(k, i, o):
        return {"kernel": jax.random.normal(k, (i, o)), "bias": jnp.zeros(o)}

    params = {
        "actor": {"mlp": {"dense_0": dense(ks[0], 3, 4), "head": dense(ks[1], 4, 2)}},
        "critic": {"mlp": {"dense_0": dense(ks[2], 3, 4), "head": dense(ks[3], 4, 1)}},
    }
    grads = jax.tree.map(lambda x: jax.random.normal(ks[4], x.shape), params)
    ctx = OptContext(
        jnp.float32(0.3), jnp.float32(0.5), jnp.float32(0.0), jnp.float32(1.0), None, ks[5]
    )
    return params, grads, ctx


def _flat_delta(new, old):
    d = jax.tree.leaves(jax.tree.map(lambda a, b: np.asarray(a - b), new, old))
    return np.concatenate([x.ravel() for x in d])


def test_update_zero_mean_finite_and_momenta_first():
    opt = nofeat_optimiser(16)
    theta = init_theta(jax.random.key(7), 16)
    params, grads, ctx = _toy_problem()
    state = opt.init(theta, params, jax.random.key(0))
    layout = Layout(params)
    assert state["mom"].shape == (layout.size, 6)
    new, state2 = jax.jit(opt.update)(theta, grads, state, params, ctx)
    flat = _flat_delta(new, params)
    assert np.all(np.isfinite(flat))
    assert np.abs(flat).max() > 0
    assert abs(flat.sum()) < 1e-5 * max(1.0, np.abs(flat).sum())
    # momenta updated before features: m = (1 - b) * g after one step from zero
    for net in ("actor", "critic"):
        g = grads[net]["mlp"]["head"]["kernel"]
        m = layout.unflatten(state2["mom"])[net]["mlp"]["head"]["kernel"]
        assert m.shape == (*g.shape, 6)
        np.testing.assert_allclose(m[..., 0], 0.9 * g, rtol=1e-6)
        np.testing.assert_allclose(m[..., 5], (1 - np.float32(0.9999)) * g, rtol=1e-5)
    # and the features the network saw used the updated momenta: recompute by hand
    p = params["actor"]["mlp"]["dense_0"]["kernel"]
    g = grads["actor"]["mlp"]["dense_0"]["kernel"]
    m = layout.unflatten(state2["mom"])["actor"]["mlp"]["dense_0"]["kernel"]
    out = _mlp(16).apply(theta, nofeat_features(p, g, m))
    u = np.asarray(out[..., 0] * 1e-3 * jnp.exp(out[..., 1] * 1e-3))
    d = np.asarray(new["actor"]["mlp"]["dense_0"]["kernel"] - p)
    shift = d + u  # p_new = p - (u - global mean): d + u is the global mean everywhere
    np.testing.assert_allclose(shift, shift.mean(), atol=1e-6)


def test_zero_theta_leaves_params_unchanged():
    opt = nofeat_optimiser(16)
    params, grads, ctx = _toy_problem()
    state = opt.init(None, params, jax.random.key(0))
    zero = jax.tree.map(jnp.zeros_like, init_theta(jax.random.key(0), 16))
    new, _ = opt.update(zero, grads, state, params, ctx)
    assert np.all(_flat_delta(new, params) == 0)


def test_nofeat_in_real_trainer():
    from metarl_cli.envs import make_env
    from metarl_cli.rl.ppo import make_train
    from metarl_cli.rl.slots import Slots

    cfg = tiny_config("classic/cartpole")
    trainer = make_train(cfg, make_env(cfg), Slots(optimiser=nofeat_optimiser(16)))
    theta = {"drift": {}, "optimiser": NoFeatAlgorithm().init(jax.random.key(0))}
    out = jax.jit(trainer)(theta, jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(out.losses)))
