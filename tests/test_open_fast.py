"""The fast per-parameter optimisers against a straightforward per-tensor reference.

OPEN, OPEN-FF and No Features build their inputs over one flat vector of all parameters and
run their network as a few large matmuls (merged GRU gates, zero-padded contractions, the
LayerNorm mean folded into the Dense before it). The reference here is the slow, obvious
formulation: tensor by tensor, features from `open_features` / `nofeat_features` (normalised
over that tensor), flax's own `GRUCell` and MLP, dormancy and layer positions worked out from
the tree by hand, the zero-mean over everything. Three steps of the optimiser must agree with
it to float rounding (momenta, GRU carries, updates), so a wrong speed-up cannot pass.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TEST_DATA

from metarl_cli.learned.nofeat import NoFeatAlgorithm, nofeat_features, nofeat_optimiser
from metarl_cli.learned.open import import_open_npy, init_theta, open_features, open_optimiser
from metarl_cli.learned.open_network import open_mlp
from metarl_cli.learned.perparam import DECAYS, Layout
from metarl_cli.rl.slots import OptContext

# An actor with a state-independent log-std and a critic, odd widths (no size is a multiple
# of 4, so the zero-padding of the contractions is exercised).
SHAPES = {"actor": ((7, 5), (5, 5), (5, 3)), "critic": ((7, 5), (5, 5), (5, 1))}


def _problem(seed: int):
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    params, acts = {}, {}
    for net, shapes in SHAPES.items():
        names = [f"dense_{i}" for i in range(len(shapes) - 1)] + ["head"]
        params[net] = {
            "mlp": {
                name: {
                    "kernel": 0.3 * jax.random.normal(next(keys), shape),
                    "bias": 0.1 * jax.random.normal(next(keys), shape[1:]),
                }
                for name, shape in zip(names, shapes, strict=True)
            }
        }
        acts[net] = {
            name: jnp.abs(jax.random.normal(next(keys), shape[1:]))
            for name, shape in zip(names, shapes, strict=True)
        }
    params["actor"]["log_std"] = 0.1 * jax.random.normal(next(keys), (3,))
    acts["actor"]["log_std"] = jnp.exp(params["actor"]["log_std"])  # as the trainer's actor
    grads = [
        jax.tree.map(lambda x, k=k: 1e-2 * jax.random.normal(k, x.shape), params)
        for k in jax.random.split(next(keys), 3)
    ]
    return params, grads, acts


def _leaves(tree):
    """(net, layer, path, leaf) in the optimiser's flat order: nets sorted, JAX tree order."""
    out = []
    for net in sorted(tree):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree[net])[0]:
            keys = [p.key for p in path]
            layer = keys[-2] if keys[-1] in ("kernel", "bias") else keys[-1]
            out.append((net, layer, tuple(keys), leaf))
    return out


def _layer_position(net: str, layer: str) -> float:
    order = [f"dense_{i}" for i in range(len(SHAPES[net]) - 1)] + ["head"]
    order += ["log_std"] if net == "actor" else []
    return order.index(layer) / (len(order) - 1)


def _reference_step(kind, theta, params, grads, mom, carry, acts, ctx):
    """One step of the optimiser, tensor by tensor (see the module doc)."""
    decays = jnp.asarray(DECAYS)
    sizes = [leaf.size for *_, leaf in _leaves(params)]
    eps_flat = jax.random.normal(ctx.key, (sum(sizes),))
    updates, new_mom, new_carry, i = [], [], [], 0
    for (net, layer, _, p), (*_, g), m, c in zip(
        _leaves(params), _leaves(grads), mom, carry, strict=True
    ):
        m = decays * m + (1 - decays) * g[..., None]
        new_mom.append(m)
        if kind != "open":
            new_carry.append(c)
        if kind == "nofeat":
            out = open_mlp(32, out=2).apply(theta, nofeat_features(p, g, m))
            updates.append(out[..., 0] * 1e-3 * jnp.exp(out[..., 1] * 1e-3))
            continue
        a = acts[net].get(layer, jnp.ones(p.shape[-1:])) + 1e-11
        dorm = jnp.broadcast_to(a / a.sum() * a.size, p.shape)
        x = open_features(
            p, g, m, ctx.training_prop, _layer_position(net, layer), ctx.epoch_prop, dorm
        )
        if kind == "open":
            c, x = nn.GRUCell(features=16).apply(theta["gru_params"], c, x)
            new_carry.append(c)
        out = open_mlp(32).apply(theta["params"], x)
        eps = eps_flat[i : i + p.size].reshape(p.shape) * (net == "actor")
        updates.append(out[..., 0] * 1e-3 * jnp.exp(out[..., 1] * 1e-3) + out[..., 2] * eps * 1e-3)
        i += p.size
    mean = sum(u.sum() for u in updates) / sum(sizes)
    new_params = [p - (u - mean) for (*_, p), u in zip(_leaves(params), updates, strict=True)]
    return new_params, new_mom, new_carry


def _optimiser(kind):
    if kind == "nofeat":
        return nofeat_optimiser(32), NoFeatAlgorithm().init(jax.random.key(3), 32)
    if kind == "open":  # the released 32/16 checkpoint: realistic gates
        return open_optimiser(32, 16, True), import_open_npy(TEST_DATA / "multi_OPEN.npy")[0]
    return open_optimiser(32, 16, False), init_theta(jax.random.key(3), 32, 16, False)


@pytest.mark.parametrize("kind", ["open", "open_ff", "nofeat"])
def test_fast_update_equals_the_per_tensor_reference(kind):
    params, grads, acts = _problem(0)
    opt, theta = _optimiser(kind)
    layout = Layout(params)
    state = opt.init(theta, params, jax.random.key(0))
    ref_params = [leaf for *_, leaf in _leaves(params)]
    ref_mom = [jnp.zeros((*p.shape, 6)) for p in ref_params]
    ref_carry = [jnp.zeros((*p.shape, 16)) for p in ref_params]
    update, reference = jax.jit(opt.update), jax.jit(_reference_step, static_argnums=0)
    for step in range(3):
        ctx = OptContext(
            jnp.float32(0.1 * step), jnp.float32(0.5 * step), jnp.float32(0.0),
            jnp.float32(1.0), acts, jax.random.key(10 + step),
        )  # fmt: skip
        before = [leaf for *_, leaf in _leaves(params)]
        params, state = update(theta, grads[step], state, params, ctx)
        ref_tree = layout.unflatten(jnp.concatenate([p.reshape(-1) for p in ref_params]))
        ref_new, ref_mom, ref_carry = reference(
            kind, theta, ref_tree, grads[step], ref_mom, ref_carry, acts, ctx
        )
        got = [np.asarray(leaf - b) for (*_, leaf), b in zip(_leaves(params), before, strict=True)]
        want = [np.asarray(new - old) for new, old in zip(ref_new, ref_params, strict=True)]
        # Updates are ~1e-3 and agree to the float rounding of the network (~1e-6 relative);
        # atol is the rounding of `p - u` at |p| ~ 1.
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=3e-7)
        assert max(np.abs(a).max() for a in got) > 1e-4
        ref_params = ref_new
        np.testing.assert_allclose(state["mom"], _rows(ref_mom, 6), rtol=1e-5, atol=1e-10)
        if kind == "open":
            np.testing.assert_allclose(state["rule"]["carry"], _rows(ref_carry, 16), atol=2e-6)
            assert np.abs(state["rule"]["carry"]).max() > 0.1


def _rows(per_leaf, width):
    """Per-leaf `[*shape, width]` arrays as the flat `[N, width]` state."""
    return np.concatenate([np.reshape(x, (-1, width)) for x in per_leaf])


def test_the_update_program_builds_no_layout_table():
    """The per-tensor scales are applied by static slices; no `[N]` index table is built
    inside the program (the old `jnp.repeat` lowered to a cumulative sum that XLA
    constant-folded at every compile, with a slow-operation alarm on Breakout)."""
    params, grads, acts = _problem(1)
    opt, theta = _optimiser("open")
    state = opt.init(theta, params, jax.random.key(0))
    ctx = OptContext(
        jnp.float32(0.5), jnp.float32(0.5), jnp.float32(0.0), jnp.float32(1.0), acts,
        jax.random.key(0),
    )  # fmt: skip
    text = jax.jit(opt.update).lower(theta, grads[0], state, params, ctx).as_text()
    assert "reduce_window" not in text and "gather" not in text
