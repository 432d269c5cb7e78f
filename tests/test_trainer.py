"""Oracle and hygiene tests of the PPO trainer, its slots and the sharded runner."""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

from metarl_cli.envs import make_env
from metarl_cli.rl.gae import gae
from metarl_cli.rl.parallel import ShardedRunner, make_mesh
from metarl_cli.rl.ppo import Transition, curve_steps, make_train
from metarl_cli.rl.slots import AdamOptimiser, PPOClipDrift, SGDOptimiser, Slots, empty_theta


def gae_loop(values, rewards, dones, last_value, gamma, lam):
    t_max = values.shape[0]
    adv = np.zeros_like(values)
    next_adv = np.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(t_max)):
        nd = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nd - values[t]
        next_adv = delta + gamma * lam * nd * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(1, 40),
    n=st.integers(1, 5),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_gae_scan_equals_python_loop(t, n, gamma, lam, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(t, n)).astype(np.float32)
    rewards = rng.normal(size=(t, n)).astype(np.float32)
    dones = (rng.random((t, n)) < 0.2).astype(np.float32)
    last = rng.normal(size=n).astype(np.float32)
    adv, tgt = gae(
        jnp.array(values), jnp.array(rewards), jnp.array(dones), jnp.array(last), gamma, lam
    )
    adv_ref, tgt_ref = gae_loop(values, rewards, dones, last, gamma, lam)
    np.testing.assert_allclose(adv, adv_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tgt, tgt_ref, rtol=1e-4, atol=1e-4)


def test_ppo_clip_drift_is_the_clipped_objective():
    rng = np.random.default_rng(0)
    r = jnp.exp(jnp.array(rng.normal(0, 0.5, 1000), jnp.float32))
    a = jnp.array(rng.normal(0, 1, 1000), jnp.float32)
    clipped = -jnp.minimum(r * a, jnp.clip(r, 0.8, 1.2) * a)
    drift = PPOClipDrift()({}, r, a, 0.2)
    np.testing.assert_allclose(-(r * a - drift), clipped, atol=1e-6)
    assert (drift >= 0).all()
    assert float(PPOClipDrift()({}, jnp.ones(3), jnp.array([1.0, -1.0, 0.5]), 0.2).max()) == 0.0


@pytest.fixture(scope="module")
def cartpole():
    cfg = tiny_config("classic/cartpole")
    return cfg, make_train(cfg, make_env(cfg))


def test_same_key_same_result_and_different_key_differs(cartpole):
    _, trainer = cartpole
    run = jax.jit(trainer)
    a = run(empty_theta(), jax.random.key(1))
    b = run(empty_theta(), jax.random.key(1))
    c = run(empty_theta(), jax.random.key(2))
    assert jax.tree.all(
        jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y, equal_nan=True)), a, b)
    )
    assert not np.array_equal(a.losses, c.losses)
    assert np.isfinite(a.losses).all()


def test_second_call_with_new_keys_compiles_nothing(cartpole):
    _, trainer = cartpole
    run = jax.jit(jax.vmap(trainer.run, in_axes=(None, 0)))
    # Sequential init, as the runner does: a vmapped orthogonal init can hang multi-device XLA:CPU.
    init = jax.jit(lambda theta, keys: jax.lax.map(lambda k: trainer.init(theta, k), keys))
    theta = empty_theta()
    s1 = init(theta, jax.random.split(jax.random.key(0), 2))
    s2 = init(theta, jax.random.split(jax.random.key(7), 2))
    jax.block_until_ready(run(theta, s1))
    with jax.log_compiles():
        before = run._cache_size()
        out = run(theta, s2)
        jax.block_until_ready(out)
        assert run._cache_size() == before
    assert out.losses.shape == (2, 3)


@pytest.mark.parametrize("chunk", [1])
def test_sharded_over_two_devices_equals_one_device(cartpole, chunk):
    assert len(jax.devices()) == 2, "tests run with two host devices (see conftest)"
    _, trainer = cartpole
    keys = jax.random.split(jax.random.key(3), 5)  # odd: exercises padding
    out2, _ = ShardedRunner(trainer, make_mesh(5), chunk=chunk)(empty_theta(), keys)
    out1, _ = ShardedRunner(trainer, make_mesh(1), chunk=chunk)(empty_theta(), keys)
    assert out2.final_return.shape == (5,)
    for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_runner_vmaps_each_device_and_pads(cartpole):
    _, trainer = cartpole
    runner = ShardedRunner(trainer, make_mesh(3))
    assert runner.padded(3) == 4
    out, _ = runner(empty_theta(), jax.random.split(jax.random.key(3), 3))
    assert out.losses.shape == (3, 3) and np.isfinite(out.losses).all()


def test_sharded_runner_reuses_its_compilation(cartpole):
    _, trainer = cartpole
    runner = ShardedRunner(trainer, make_mesh(2))

    class CountingLower:
        """Counts the lowerings (hence compilations) of the runner's sharded program."""

        def __init__(self, jitted):
            self.jitted, self.lowered = jitted, 0

        def lower(self, *args):
            self.lowered += 1
            return self.jitted.lower(*args)

    program = runner._program
    counting = CountingLower(program(runner.mesh_for(2), False))
    runner._program = lambda mesh, per_run: counting
    runner(empty_theta(), jax.random.split(jax.random.key(0), 2))
    assert counting.lowered == 1
    init_programs = runner._init._cache_size()
    runner(empty_theta(), jax.random.split(jax.random.key(1), 2))
    assert counting.lowered == 1 and len(runner._compiled) == 1  # nothing lowered again
    assert runner._init._cache_size() == init_programs  # nor the init program re-traced


@dataclass(frozen=True)
class RecordingSGD:
    """An optimiser slot that reports, through a host callback, every context it receives and
    moves parameters by theta["lr"] x gradient."""

    separate_clip: bool = True
    needs_activations: bool = True

    def init(self, theta, params, key):
        return ()

    def update(self, theta, grads, state, params, ctx):
        jax.debug.callback(
            _record,
            jnp.stack([ctx.training_prop, ctx.epoch_prop, ctx.minibatch_prop, ctx.lr_scale]),
            ctx.activations["actor"]["dense_0"],
            ordered=True,
        )
        return jax.tree.map(lambda p, g: p - theta["lr"] * g, params, grads), state


_SEEN: list = []


def _record(ctx, acts):
    _SEEN.append((np.asarray(ctx), np.asarray(acts)))


def test_optimiser_slot_receives_theta_and_the_documented_context():
    cfg = tiny_config("classic/cartpole", update_epochs=2)  # 2 updates x 2 epochs x 2 minibatches
    trainer = make_train(cfg, make_env(cfg), Slots(optimiser=RecordingSGD()))
    state = trainer.init({"drift": {}, "optimiser": {}}, jax.random.key(0))
    run = jax.jit(trainer.run)
    _SEEN.clear()
    frozen = run({"drift": {}, "optimiser": {"lr": jnp.float32(0.0)}}, state)
    jax.effects_barrier()
    ctx = np.stack([c for c, _ in _SEEN])
    assert ctx.shape == (8, 4)
    np.testing.assert_allclose(ctx[:, 0], [0, 0, 0, 0, 1, 1, 1, 1])  # training progress
    np.testing.assert_allclose(ctx[:, 1], [0, 0, 1, 1, 0, 0, 1, 1])  # epoch progress
    np.testing.assert_allclose(ctx[:, 2], [0, 1, 0, 1, 0, 1, 0, 1])  # minibatch progress
    np.testing.assert_allclose(ctx[:, 3], [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5])  # linear annealing
    acts = _SEEN[0][1]
    assert acts.shape == (cfg.hidden_size,) and (acts >= 0).all() and acts.max() > 0
    moved = run({"drift": {}, "optimiser": {"lr": jnp.float32(0.1)}}, state)
    assert not np.array_equal(frozen.losses, moved.losses)


def test_sgd_and_adam_slots_give_different_runs():
    cfg = tiny_config("classic/cartpole")
    env = make_env(cfg)
    adam = jax.jit(make_train(cfg, env, Slots(optimiser=AdamOptimiser(cfg.lr))))
    sgd = jax.jit(make_train(cfg, env, Slots(optimiser=SGDOptimiser(cfg.sgd_lr))))
    a = adam(empty_theta(), jax.random.key(0))
    b = sgd(empty_theta(), jax.random.key(0))
    assert not np.array_equal(a.losses, b.losses)


def test_curve_steps_cover_the_run():
    cfg = tiny_config("classic/cartpole", curve_points=3)
    steps = curve_steps(cfg)
    assert steps[-1] == cfg.env_steps
    assert steps == sorted(steps)


def test_orthogonal_init_is_orthogonal_and_qr_free():
    from metarl_cli.rl.networks import orthogonal

    for shape in [(64, 64), (4, 64), (64, 2), (1345, 64)]:
        w = np.asarray(orthogonal(2.0)(jax.random.key(0), shape), np.float64)
        small = min(shape)
        gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
        np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-4)
    w2 = orthogonal()(jax.random.key(1), (64, 64))
    assert not np.allclose(w2, orthogonal()(jax.random.key(0), (64, 64)))
    jaxpr = str(jax.make_jaxpr(lambda k: orthogonal()(k, (64, 64)))(jax.random.key(0)))
    assert not re.search(r"\b(qr|geqrf|householder_product)\b", jaxpr)
    assert "sqrt" in jaxpr  # the pattern would see primitives: normalisation is there


def test_vmapped_init_of_many_seeds_does_not_hang():
    # The QR-based initialiser deadlocked here when vmapped over seeds (see networks.py).
    cfg = tiny_config("minatar/breakout")
    trainer = make_train(cfg, make_env(cfg))
    init = jax.jit(jax.vmap(trainer.init, in_axes=(None, 0)))
    for seed in range(5):
        states = init(empty_theta(), jax.random.split(jax.random.key(seed), 16))
        jax.block_until_ready(states)
    assert states.params["actor"]["mlp"]["dense_0"]["kernel"].shape == (16, 400, 64)


def test_truncated_steps_bootstrap_the_value_of_their_own_final_observation():
    """The trainer computes V(pre-reset obs) one step late, batched with the next step's
    critic pass; the shift must put gamma * V(final obs of step t) on step t's reward."""
    cfg = tiny_config("classic/cartpole")
    trainer = make_train(cfg, make_env(cfg))
    state = trainer.init(empty_theta(), jax.random.key(0))
    critic = state.params["critic"]
    t, n = 6, cfg.num_envs
    final_obs = jax.random.normal(jax.random.key(1), (t, n, 4))
    v_final = np.stack([np.asarray(trainer._value(critic, final_obs[i])[0]) for i in range(t)])
    truncated = jax.random.bernoulli(jax.random.key(2), 0.5, (t, n))
    reward = jax.random.normal(jax.random.key(3), (t, n))
    prev = np.concatenate([np.full((1, n), np.nan), v_final[:-1]])  # step 0's is never used
    traj = Transition(*([None] * 7), truncated=truncated, prev_final_value=jnp.asarray(prev))
    traj = traj._replace(reward=reward)
    runner = state.replace(final_obs=final_obs[-1])
    last_value, rewards = trainer._bootstrap(runner, traj)
    expected = np.asarray(reward) + cfg.gamma * v_final * np.asarray(truncated)
    np.testing.assert_allclose(rewards, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(last_value, trainer._value(critic, state.obs)[0], rtol=1e-6)


def _count_prims(jaxpr, names) -> int:
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in names
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _count_prims(sub, names)
    return count


@dataclass(frozen=True)
class ReadsOnly(AdamOptimiser):
    """Adam that checks, while the trainer is traced, that unread context fields are None."""

    def update(self, theta, grads, state, params, ctx):
        for field in ctx._fields:
            assert (getattr(ctx, field) is None) == (field not in self.context_reads), field
        return super().update(theta, grads, state, params, ctx)


def test_the_program_computes_only_the_context_its_optimiser_reads():
    cfg = tiny_config("classic/cartpole")
    env = make_env(cfg)

    def random_ops(reads):
        trainer = make_train(cfg, env, Slots(optimiser=ReadsOnly(cfg.lr, context_reads=reads)))
        jaxpr = jax.make_jaxpr(trainer.run)(empty_theta(), trainer.init(empty_theta(), KEY))
        return _count_prims(
            jaxpr.jaxpr, {"random_split", "random_fold_in", "random_bits", "threefry2x32"}
        )

    lean = random_ops(frozenset({"lr_scale"}))
    keyed = random_ops(frozenset({"lr_scale", "key"}))
    assert lean < keyed  # the minibatch key split exists only for an optimiser that reads it


KEY = jax.random.key(0)
