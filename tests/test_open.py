"""OPEN learned optimiser: flat layout, checkpoint import, update maths, trainer integration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TEST_DATA, tiny_config

from metarl_cli.errors import ArtefactError
from metarl_cli.learned.open import (
    flatten_theta,
    import_open_npy,
    init_theta,
    open_features,
    open_optimiser,
    theta_size,
    unflatten_theta,
)
from metarl_cli.learned.perparam import Layout
from metarl_cli.rl.slots import OptContext

PRETRAINED = TEST_DATA


@pytest.mark.parametrize(
    "hidden,gru,recurrent,n",
    [(16, 8, True, 1211), (32, 16, True, 3571), (16, 8, False, 707), (32, 16, False, 1923)],
)
def test_flat_round_trip(hidden, gru, recurrent, n):
    assert theta_size(hidden, gru, recurrent) == n
    x = jax.random.normal(jax.random.key(1), (n,))
    back = flatten_theta(unflatten_theta(x, hidden, gru, recurrent))
    np.testing.assert_array_equal(np.asarray(back), np.asarray(x))
    # and a freshly initialised theta has that layout
    assert flatten_theta(init_theta(jax.random.key(0), hidden, gru, recurrent)).shape == (n,)


def test_import_released_checkpoints():
    expected = {"multi_OPEN.npy": (32, 16)}
    files = sorted(PRETRAINED.glob("*.npy"))
    assert len(files) == 6
    for f in files:
        theta, hidden, gru = import_open_npy(f)
        assert (hidden, gru) == expected.get(f.name, (16, 8)), f.name
        np.testing.assert_array_equal(np.asarray(flatten_theta(theta)), np.load(f))


def test_reference_offsets_h16():
    flat = np.load(PRETRAINED / "asterix_OPEN.npy")
    theta, _, _ = import_open_npy(PRETRAINED / "asterix_OPEN.npy")
    gru, mlp = theta["gru_params"]["params"], theta["params"]["params"]
    np.testing.assert_array_equal(gru["hn"]["bias"], flat[0:8])
    np.testing.assert_array_equal(gru["hn"]["kernel"], flat[8:72].reshape(8, 8))
    np.testing.assert_array_equal(gru["in"]["kernel"], flat[208:360].reshape(19, 8))
    np.testing.assert_array_equal(gru["iz"]["kernel"], flat[528:680].reshape(19, 8))
    np.testing.assert_array_equal(mlp["layers_0"]["kernel"], flat[696:824].reshape(8, 16))
    np.testing.assert_array_equal(mlp["layers_1"]["scale"], flat[840:856])
    np.testing.assert_array_equal(mlp["layers_6"]["bias"], flat[1160:1163])
    np.testing.assert_array_equal(mlp["layers_6"]["kernel"], flat[1163:1211].reshape(16, 3))


def test_import_rejects_bad_files(tmp_path):
    bad_len = tmp_path / "bad.npy"
    np.save(bad_len, np.zeros(1000, np.float32))
    with pytest.raises(ArtefactError, match=r"1000.*1211.*3571"):
        import_open_npy(bad_len)
    bad_dtype = tmp_path / "f64.npy"
    np.save(bad_dtype, np.zeros(1211, np.float64))
    with pytest.raises(ArtefactError):
        import_open_npy(bad_dtype)
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ArtefactError):
        import_open_npy(pickled)


def test_features_normalised():
    k1, k2 = jax.random.split(jax.random.key(0))
    p = jax.random.normal(k1, (5, 4)) * 3.0
    g = jax.random.normal(k2, (5, 4)) * 1e-3
    m = jnp.stack([g * (i + 1) for i in range(6)], -1)
    f = open_features(p, g, m, 0.25, 0.5, 1.0, jnp.arange(4.0))
    assert f.shape == (5, 4, 19)
    ms = jnp.mean(f[..., :15] ** 2, axis=(0, 1))
    np.testing.assert_allclose(ms, 1.0, rtol=1e-3)
    np.testing.assert_allclose(f[..., 15], 0.25)
    np.testing.assert_allclose(f[..., 16], 0.5)
    np.testing.assert_allclose(f[..., 17], 1.0)
    np.testing.assert_allclose(f[2, :, 18], jnp.arange(4.0))  # dormancy tiled over input dim


def _toy_problem(continuous=True):
    ks = jax.random.split(jax.random.key(3), 8)

    def dense(k, i, o):
        return {"kernel": jax.random.normal(k, (i, o)), "bias": jnp.zeros(o)}

    actor = {"mlp": {"dense_0": dense(ks[0], 3, 4), "head": dense(ks[1], 4, 2)}}
    if continuous:
        actor["log_std"] = jnp.zeros(2)
    params = {
        "actor": actor,
        "critic": {"mlp": {"dense_0": dense(ks[2], 3, 4), "head": dense(ks[3], 4, 1)}},
    }
    grads = jax.tree.map(lambda x: jax.random.normal(ks[4], x.shape), params)
    acts = {
        "actor": {"dense_0": jnp.arange(4.0), "head": jnp.ones(2), "log_std": jnp.ones(2)},
        "critic": {"dense_0": jnp.ones(4), "head": jnp.ones(1)},
    }
    ctx = OptContext(
        jnp.float32(0.3), jnp.float32(0.5), jnp.float32(0.0), jnp.float32(1.0), acts, ks[5]
    )
    return params, grads, ctx


def _delta(new, old):
    return jax.tree.map(lambda a, b: np.asarray(a - b), new, old)


@pytest.mark.parametrize("recurrent", [True, False])
def test_update_zero_mean_and_finite(recurrent):
    opt = open_optimiser(16, 8, recurrent)
    theta = init_theta(jax.random.key(7), 16, 8, recurrent)
    params, grads, ctx = _toy_problem()
    state = opt.init(theta, params, jax.random.key(0))
    new, state2 = jax.jit(opt.update)(theta, grads, state, params, ctx)
    d = jax.tree.leaves(_delta(new, params))
    flat = np.concatenate([x.ravel() for x in d])
    assert np.all(np.isfinite(flat))
    assert np.abs(flat).max() > 0
    assert abs(flat.sum()) < 1e-5 * max(1.0, np.abs(flat).sum())
    # momenta updated before features: m = (1 - b) * g after one step from zero
    k = params["actor"]["mlp"]["dense_0"]["kernel"]
    layout = Layout(params)
    m = layout.unflatten(state2["mom"])["actor"]["mlp"]["dense_0"]["kernel"]
    assert m.shape == (*k.shape, 6)
    np.testing.assert_allclose(
        m[..., 0], 0.9 * grads["actor"]["mlp"]["dense_0"]["kernel"], rtol=1e-6
    )
    if recurrent:
        c = layout.unflatten(state2["rule"]["carry"])["critic"]["mlp"]["head"]["kernel"]
        assert c.shape == (4, 1, 8) and np.abs(np.asarray(c)).max() > 0


def _bias_only_theta(bias, recurrent=True):
    theta = jax.tree.map(jnp.zeros_like, init_theta(jax.random.key(0), 16, 8, recurrent))
    theta["params"]["params"]["layers_6"]["bias"] = jnp.asarray(bias, jnp.float32)
    return theta


@pytest.mark.parametrize("recurrent", [True, False])
def test_output_parameterisation(recurrent):
    opt = open_optimiser(16, 8, recurrent)
    params, grads, ctx = _toy_problem()
    state = opt.init(None, params, jax.random.key(0))
    # All-zero theta: o = 0 -> no change at all.
    zero = jax.tree.map(jnp.zeros_like, init_theta(jax.random.key(0), 16, 8, recurrent))
    new, _ = opt.update(zero, grads, state, params, ctx)
    for d in jax.tree.leaves(_delta(new, params)):
        assert np.all(d == 0)
    # Constant deterministic output: the same u everywhere is removed by the zero-mean.
    new, _ = opt.update(_bias_only_theta([2.0, 50.0, 0.0], recurrent), grads, state, params, ctx)
    for d in jax.tree.leaves(_delta(new, params)):
        np.testing.assert_allclose(d, 0.0, atol=1e-7)
    # Noise only: critic (mask 0) moves by one shared constant, the actor by zero-mean noise.
    new, _ = opt.update(_bias_only_theta([0.0, 0.0, 1.0], recurrent), grads, state, params, ctx)
    dc = np.concatenate(
        [x.ravel() for x in jax.tree.leaves(_delta(new["critic"], params["critic"]))]
    )
    da = np.concatenate([x.ravel() for x in jax.tree.leaves(_delta(new["actor"], params["actor"]))])
    np.testing.assert_allclose(dc, dc.mean(), atol=2e-7)  # float32 rounding of p - c
    assert da.std() > 1e-4  # eps * step_mult ~ 1e-3
    np.testing.assert_allclose(da.sum() + dc.sum(), 0.0, atol=1e-6)


@pytest.mark.parametrize("recurrent", [True, False])
def test_open_in_real_trainer(recurrent):
    from metarl_cli.envs import make_env
    from metarl_cli.rl.ppo import make_train
    from metarl_cli.rl.slots import Slots

    if recurrent:
        opt_theta, hidden, gru = import_open_npy(PRETRAINED / "asterix_OPEN.npy")
    else:
        hidden, gru = 16, 8
        opt_theta = init_theta(jax.random.key(0), hidden, gru, recurrent=False)
    cfg = tiny_config("classic/cartpole")
    slots = Slots(optimiser=open_optimiser(hidden, gru, recurrent))
    trainer = make_train(cfg, make_env(cfg), slots)
    out = jax.jit(trainer)({"drift": {}, "optimiser": opt_theta}, jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(out.losses)))


def test_open_on_a_continuous_action_env():
    """Brax: the actor has `log_std`, gets a layer proportion, and training stays finite."""
    from metarl_cli.envs import make_env
    from metarl_cli.learned.base import get_algorithm, slots_for
    from metarl_cli.rl.ppo import make_train

    alg = get_algorithm("open")
    cfg = tiny_config("brax/ant", num_envs=8, num_steps=4)
    arch = alg.default_architecture(cfg.suite)
    assert arch == {"hidden": 16, "gru": 8}  # Table 8, Ant
    trainer = make_train(cfg, make_env(cfg), slots_for(alg, cfg, arch))
    theta = {"drift": {}, "optimiser": init_theta(jax.random.key(1), **arch)}
    state = jax.jit(trainer.init)(theta, jax.random.key(0))
    layout = Layout(state.params)
    names = [(leaf.net, leaf.layer) for leaf in layout.leaves]
    assert ("actor", "log_std") in names
    log_std = layout.leaves[names.index(("actor", "log_std"))]
    assert log_std.layer_prop == 1.0
    out = jax.jit(trainer.run)(theta, state)
    assert np.isfinite(np.asarray(out.losses)).all()
