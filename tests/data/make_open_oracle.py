"""Makes tests/data/open_oracle.npz with the ORIGINAL OPEN code (not run by the test suite).

Runs `GRU_Opt` from AlexGoldie/rl-learned-optimization (`rl_optimizer/network.py`) for three
consecutive updates of a small actor-critic with the released asterix_OPEN weights and stores
the inputs and outputs. tests/data/README.md gives the commits, versions and the command:

    cd <checkout>/rl_optimizer && <venv>/bin/python make_open_oracle.py open_oracle.npz

Nothing in the original code is modified. Two read-only probes record what it computes:
* the GRU cell is wrapped so the 19-feature input of every tensor is recorded;
* `jax.random.normal` is wrapped so the N(0, 1) draws of the stochastic output are recorded
  (metarl draws its noise from its own key layout; the test replays these draws).
"""

import os
import sys

sys.path.insert(0, os.getcwd())  # rl_optimizer/, as when running the original scripts

import jax
import jax.flatten_util  # network.py uses jax.flatten_util without importing it
import jax.numpy as jnp
import network  # the original rl_optimizer/network.py
import numpy as np

OUT = sys.argv[1]
NAMES = {"Dense_0": "dense_0", "Dense_1": "dense_1", "Dense_2": "head"}  # metarl layer names
SHAPES = {
    "actor": {"Dense_0": (6, 4), "Dense_1": (4, 4), "Dense_2": (4, 3)},
    "critic": {"Dense_0": (6, 4), "Dense_1": (4, 4), "Dense_2": (4, 1)},
}
STEPS = [  # (training_prop, batch_prop) per update
    (0.0, 0.0),
    (0.4, 0.5),
    (0.9, 1.0),
]
store = {}


def tree(fn):
    """`{net: {"params": {Dense_i: {"bias", "kernel"}}}}` of `fn(net, layer, leaf, shape)`."""
    out = {}
    for net, layers in SHAPES.items():
        out[net] = {"params": {}}
        for layer, (i, o) in layers.items():
            out[net]["params"][layer] = {
                "bias": fn(net, layer, "bias", (o,)),
                "kernel": fn(net, layer, "kernel", (i, o)),
            }
    return out


def put(name, t, trailing=0):
    """Stores a tree as one array: leaves in tree order (actor then critic, Dense_0..2, bias
    before kernel), each flattened row-major over the parameter's own axes; `trailing` extra
    axes (carry 8, momenta 6, features 19) are kept: [N] or [N, k]."""
    leaves = [np.asarray(x, np.float32) for x in jax.tree_util.tree_leaves(t)]
    store[name] = np.concatenate(
        [x.reshape(-1, x.shape[-1]) if trailing else x.ravel() for x in leaves]
    )


rng = np.random.default_rng(20250101)
params = tree(lambda n, ly, lf, s: jnp.asarray(rng.normal(0, 0.5, s), jnp.float32))
put("params_0", params)
store["leaves"] = np.array(
    [f"{n}/{NAMES[ly]}/{lf}" for n in SHAPES for ly in SHAPES[n] for lf in ("bias", "kernel")]
)

# The released weights, reshaped as the original eval.py does (evosax ParameterReshaper on the
# template GRU_Opt(16, 8).init(PRNGKey(0)) = leaves in tree order).
flat = np.load("asterix_OPEN.npy")
meta_opt = network.GRU_Opt(hidden_size=16, gru_features=8)
template = meta_opt.init(jax.random.PRNGKey(0))
_, unravel = jax.flatten_util.ravel_pytree(template)
theta = unravel(jnp.asarray(flat))
assert np.array_equal(np.asarray(jax.flatten_util.ravel_pytree(theta)[0]), flat)


class RecordingGRU:
    """Delegates to the original flax GRUCell; records the 19-feature input of each call."""

    def __init__(self, cell):
        self.cell, self.calls = cell, []

    def initialize_carry(self, *a, **k):
        return self.cell.initialize_carry(*a, **k)

    def init(self, *a, **k):
        return self.cell.init(*a, **k)

    def apply(self, theta_gru, carry, inp):
        self.calls.append(np.asarray(inp))
        return self.cell.apply(theta_gru, carry, inp)


gru = RecordingGRU(meta_opt._gru)
meta_opt._gru = gru
opt = meta_opt.opt_fn(theta)

key = jax.random.PRNGKey(7)
key, k_a, k_c = jax.random.split(key, 3)
state_a = opt.init(params["actor"], key=k_a)
state_c = opt.init(params["critic"], key=k_c)

leaf_order = [
    (net, layer, leaf)
    for net in ("actor", "critic")
    for layer in ("Dense_0", "Dense_1", "Dense_2")
    for leaf in ("bias", "kernel")
]
layer_props = tree(lambda n, ly, lf, s: jnp.float32(int(ly[-1]) / 2))  # as train.py: i / (L - 1)
mask = tree(lambda n, ly, lf, s: 1 if n == "actor" else 0)  # as train.py's hard-coded mask
config = {"VISUALISE": False}
real_normal = jax.random.normal

for step, (t_p, b_p) in enumerate(STEPS):
    scale = 10.0 ** rng.uniform(-4, -1)
    grads = tree(lambda n, ly, lf, s, sd=scale: jnp.asarray(rng.normal(0, sd, s), jnp.float32))
    if step == 1:  # an exactly zero gradient exercises log(|g| + 1e-13) and sign(0)
        grads["actor"]["params"]["Dense_1"]["kernel"] = (
            grads["actor"]["params"]["Dense_1"]["kernel"].at[0, 0].set(0.0)
        )
    acts = {}
    for net, layers in SHAPES.items():
        acts[net] = {}
        for layer, (_, o) in layers.items():
            a = np.abs(rng.normal(0, 1, (o,))).astype(np.float32)
            if layer == "Dense_0" and step == 2:
                a[1] = 0.0  # a dead unit
            acts[net][layer] = a
    # train.py passes per-layer {"kernel": a, "bias": a} tuples; flattened into parameter order.
    activations = {
        net: tuple(
            {"kernel": jnp.asarray(acts[net][ly]), "bias": jnp.asarray(acts[net][ly])}
            for ly in ("Dense_0", "Dense_1", "Dense_2")
        )
        for net in SHAPES
    }
    store[f"acts_{step}"] = np.concatenate([acts[n][ly] for n in SHAPES for ly in SHAPES[n]])
    put(f"grads_{step}", grads)
    store[f"t_p_{step}"] = np.float32(t_p)
    store[f"b_p_{step}"] = np.float32(b_p)
    key, k_step = jax.random.split(key)

    draws = []

    def recording_normal(k, shape=(), dtype=jnp.float32, draws=draws):
        x = real_normal(k, shape=shape, dtype=dtype)
        if not isinstance(x, jax.core.Tracer):  # flax shape-checks initialisers abstractly
            draws.append(np.asarray(x))
        return x

    jax.random.normal = recording_normal
    gru.calls = []
    try:
        state_a, state_c, _, _ = opt.update(
            state_a,
            state_c,
            {"actor": grads["actor"], "critic": grads["critic"]},
            activations,
            key=k_step,
            training_prop=jnp.float32(t_p),
            config=config,
            batch_prop=jnp.float32(b_p),
            layer_props=layer_props,
            mask=mask,
        )
    finally:
        jax.random.normal = real_normal
    assert len(draws) == len(leaf_order) == len(gru.calls)
    store[f"eps_{step}"] = np.concatenate([x.reshape(-1) for x in draws])
    store[f"features_{step}"] = np.concatenate([x.reshape(-1, 19) for x in gru.calls])
    new = {"actor": state_a, "critic": state_c}
    put(f"params_{step + 1}", {n: s.params for n, s in new.items()})
    put(f"carry_{step + 1}", {n: s.carry for n, s in new.items()}, trailing=1)
    put(f"mom_{step + 1}", {n: s.rolling_features.m for n, s in new.items()}, trailing=1)

np.savez_compressed(OUT, **store)
print(f"wrote {OUT}: {len(store)} arrays, jax {jax.__version__}")
for k in sorted(store):
    print(k, store[k].shape, store[k].dtype)
