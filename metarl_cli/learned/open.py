"""OPEN: a learned optimiser for RL (Goldie et al., NeurIPS 2024, arXiv:2407.07082).

Each scalar parameter is updated by a small network that sees 19 features (the parameter,
sign/log-magnitude of six momenta and of the gradient, all second-moment normalised per
tensor, then training progress, layer position, epoch progress and neuron dormancy). The
recurrent variant runs a GRU cell per parameter before the MLP; the feed-forward variant feeds
the features straight into the MLP. The network outputs `(o0, o1, o2)` and the update is

    u = o0 * step_mult * exp(o1 * exp_mult) + o2 * mask * eps * step_mult,   eps ~ N(0, 1)

with `mask` 1 for actor and 0 for critic parameters; `u` is then made zero-mean over all actor
and critic parameters together and `p <- p - u`.

Meta-parameters (`theta`) use the original's tree, so the released flat `.npy` checkpoints load:
`{"gru_params": {"params": GRUCell params}, "params": {"params": {layers_0, layers_1, layers_3,
layers_4, layers_6}}}` (the feed-forward variant has no `"gru_params"`). The flat order is JAX
tree order (sorted keys), kernels row-major `(in, out)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metarl_cli.errors import ArtefactError

__all__ = [
    "DECAYS",
    "NUM_FEATURES",
    "OPEN_NPY_ARCHS",
    "OpenNetwork",
    "OpenOptimiser",
    "flatten_theta",
    "import_open_npy",
    "init_theta",
    "open_features",
    "theta_size",
    "unflatten_theta",
]

DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
NUM_FEATURES = 19
# Length of a released recurrent checkpoint -> (hidden, gru).
OPEN_NPY_ARCHS: dict[int, tuple[int, int]] = {1211: (16, 8), 3571: (32, 16)}


# --------------------------------------------------------------------------------------------
# Network


def _mlp(hidden: int, out: int = 3) -> nn.Sequential:
    """Dense(h)-LN-relu-Dense(h)-LN-relu-Dense(out) as a top-level `nn.Sequential` (parameter
    names `layers_i` at the root, as in the original checkpoints)."""
    return nn.Sequential(
        [
            nn.Dense(hidden),
            nn.LayerNorm(),
            nn.relu,
            nn.Dense(hidden),
            nn.LayerNorm(),
            nn.relu,
            nn.Dense(out),
        ]
    )


@dataclass(frozen=True)
class OpenNetwork:
    """The per-parameter OPEN network (pure functions over `theta`).

    `apply(theta, features, carry)` maps features `[..., 19]` (and, when recurrent, a carry
    `[..., gru]`) to `(outputs [..., 3], new carry or None)`.
    """

    hidden: int = 16
    gru: int = 8
    recurrent: bool = True

    def _gru(self) -> nn.GRUCell:
        return nn.GRUCell(features=self.gru)

    def init(self, key: jax.Array) -> dict[str, Any]:
        k_mlp, k_gru = jax.random.split(key)
        mlp_in = self.gru if self.recurrent else NUM_FEATURES
        theta = {"params": _mlp(self.hidden).init(k_mlp, jnp.zeros((mlp_in,)))}
        if self.recurrent:
            carry = jnp.zeros((self.gru,))
            theta["gru_params"] = self._gru().init(k_gru, carry, jnp.zeros((NUM_FEATURES,)))
        return theta

    def apply(self, theta, features, carry=None):
        x = features
        if self.recurrent:
            carry, x = self._gru().apply(theta["gru_params"], carry, features)
        return _mlp(self.hidden).apply(theta["params"], x), carry


def init_theta(key: jax.Array, hidden: int = 16, gru: int = 8, recurrent: bool = True):
    """Fresh meta-parameters with flax's default initialisers (as the original `init`)."""
    return OpenNetwork(hidden, gru, recurrent).init(key)


# --------------------------------------------------------------------------------------------
# Flat vectors and the released checkpoints


def _template(hidden: int, gru: int, recurrent: bool = True):
    net = OpenNetwork(hidden, gru, recurrent)
    return jax.eval_shape(net.init, jax.random.key(0))


def theta_size(hidden: int, gru: int, recurrent: bool = True) -> int:
    """Number of meta-parameters (1211 for 16/8, 3571 for 32/16; FF 16: 707)."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(_template(hidden, gru, recurrent)))


def flatten_theta(theta) -> jax.Array:
    """`theta` as one 1-D vector in JAX tree order (sorted keys, row-major leaves)."""
    return ravel_pytree(theta)[0]


def unflatten_theta(flat, hidden: int, gru: int, recurrent: bool = True):
    """Inverse of `flatten_theta` for the given architecture."""
    template = _template(hidden, gru, recurrent)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), template)
    _, unravel = ravel_pytree(zeros)
    flat = jnp.asarray(flat, jnp.float32)
    n = theta_size(hidden, gru, recurrent)
    if flat.shape != (n,):
        raise ValueError(f"expected a flat vector of length {n}, got shape {flat.shape}")
    return unravel(flat)


def import_open_npy(path: str | Path):
    """Loads a released OPEN `.npy` (recurrent): returns `(theta, hidden, gru)`."""
    path = Path(path)
    accepted = ", ".join(f"{n} (hidden {h}, gru {g})" for n, (h, g) in OPEN_NPY_ARCHS.items())
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ArtefactError(f"{path}: cannot read as a .npy array ({e})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 1:
        shape = getattr(arr, "shape", None)
        dtype = getattr(arr, "dtype", None)
        raise ArtefactError(
            f"{path}: expected a 1-D float32 OPEN vector, got dtype {dtype} shape {shape}"
        )
    if arr.shape[0] not in OPEN_NPY_ARCHS:
        raise ArtefactError(
            f"{path}: OPEN vector of length {arr.shape[0]} matches no known architecture; "
            f"accepted lengths: {accepted}"
        )
    if not np.all(np.isfinite(arr)):
        raise ArtefactError(f"{path}: OPEN vector contains non-finite values")
    hidden, gru = OPEN_NPY_ARCHS[arr.shape[0]]
    return unflatten_theta(arr, hidden, gru, True), hidden, gru


# --------------------------------------------------------------------------------------------
# Features


def _second_moment_normalise(x: jax.Array) -> jax.Array:
    """Per channel (last axis), over all other axes: `x * rsqrt(1e-5 + mean(x^2))`."""
    axes = tuple(range(x.ndim - 1))
    return x * jax.lax.rsqrt(1e-5 + jnp.mean(x**2, axis=axes, keepdims=True))


def open_features(p, g, m, training_prop, layer_prop, batch_prop, dormancy) -> jax.Array:
    """The 19 inputs for one tensor `p` (shape S) with gradient `g` (S), momenta `m`
    (S + (6,)) and `dormancy` broadcastable to S; returns S + (19,)."""
    eps = 1e-13
    normed = jnp.concatenate(
        [
            p[..., None],
            jnp.sign(m),
            jnp.log(jnp.abs(m) + eps),
            jnp.sign(g)[..., None],
            jnp.log(jnp.abs(g) + eps)[..., None],
        ],
        axis=-1,
    )
    normed = _second_moment_normalise(normed)
    shape = (*p.shape, 1)
    ctx = [
        jnp.broadcast_to(jnp.asarray(training_prop, p.dtype), shape),
        jnp.broadcast_to(jnp.asarray(layer_prop, p.dtype), shape),
        jnp.broadcast_to(jnp.asarray(batch_prop, p.dtype), shape),
        jnp.broadcast_to(jnp.asarray(dormancy, p.dtype), p.shape)[..., None],
    ]
    return jnp.concatenate([normed, *ctx], axis=-1)


def _dormancy(act) -> jax.Array:
    a = jnp.asarray(act, jnp.float32) + 1e-11
    return a / jnp.sum(a) * a.shape[-1]


def _layer_order(net_params) -> list[str]:
    """Layer names of one network in trainer order: dense_0.., head, then log_std."""
    names = []
    mlp = net_params.get("mlp", {})
    dense = sorted((k for k in mlp if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    names += dense + [k for k in sorted(mlp) if not k.startswith("dense_")]
    names += [k for k in sorted(net_params) if k != "mlp"]
    return names


def _leaf_layer(path) -> str:
    keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    if keys[-1] in ("kernel", "bias") and len(keys) >= 2:
        return keys[-2]
    return keys[-1]


# --------------------------------------------------------------------------------------------
# The optimiser slot


@dataclass(frozen=True)
class OpenOptimiser:
    """OPEN as a trainer optimiser slot; `theta` is the tree from `init_theta`/`import_open_npy`.

    State: `{"actor"|"critic": {"mom": tree of p.shape+(6,), "carry": tree of p.shape+(gru,)}}`
    (no `"carry"` for the feed-forward variant).
    """

    hidden: int
    gru: int
    recurrent: bool = True
    lr_step_mult: float = 0.001
    exp_mult: float = 0.001
    separate_clip: bool = True
    needs_activations: bool = True

    @property
    def network(self) -> OpenNetwork:
        return OpenNetwork(self.hidden, self.gru, self.recurrent)

    def init(self, theta, params, key):
        del theta, key
        state = {}
        for net, p in params.items():
            s = {"mom": jax.tree.map(lambda x: jnp.zeros((*x.shape, len(DECAYS)), x.dtype), p)}
            if self.recurrent:
                s["carry"] = jax.tree.map(lambda x: jnp.zeros((*x.shape, self.gru), x.dtype), p)
            state[net] = s
        return state

    def update(self, theta, grads, state, params, ctx):
        decays = jnp.asarray(DECAYS, jnp.float32)
        nets = sorted(params)
        acts_all = ctx.activations or {}
        # Features are built per tensor (the normalisation is per tensor), then every scalar
        # parameter of both networks goes through the network in ONE call: a few large ops
        # instead of a dozen small ones per leaf.
        feats, carries, masks, layout, moms = [], [], [], [], {}
        for net in nets:
            p_tree, g_tree, st = params[net], grads[net], state[net]
            moms[net] = jax.tree.map(
                lambda m, g: decays * m + (1.0 - decays) * g[..., None], st["mom"], g_tree
            )
            order = _layer_order(p_tree)
            denom = max(len(order) - 1, 1)
            acts = acts_all.get(net) or {}
            p_leaves, treedef = jax.tree_util.tree_flatten_with_path(p_tree)
            g_leaves = treedef.flatten_up_to(g_tree)
            m_leaves = treedef.flatten_up_to(moms[net])
            c_leaves = treedef.flatten_up_to(st["carry"]) if self.recurrent else None
            for i, (path, p) in enumerate(p_leaves):
                layer = _leaf_layer(path)
                layer_prop = order.index(layer) / denom if layer in order else 0.0
                act = acts.get(layer) if isinstance(acts, dict) else None
                dorm = _dormancy(act) if act is not None else jnp.ones(p.shape[-1:], p.dtype)
                f = open_features(
                    p, g_leaves[i], m_leaves[i], ctx.training_prop, layer_prop, ctx.epoch_prop,
                    dorm,
                )  # fmt: skip
                feats.append(f.reshape(-1, NUM_FEATURES))
                if self.recurrent:
                    carries.append(c_leaves[i].reshape(-1, self.gru))
                masks.append(jnp.full((p.size,), 1.0 if net == "actor" else 0.0, p.dtype))
                layout.append((net, treedef, i, p.shape))
        x = jnp.concatenate(feats)
        carry = jnp.concatenate(carries) if self.recurrent else None
        out, carry = self.network.apply(theta, x, carry)
        eps = jax.random.normal(ctx.key, (x.shape[0],), x.dtype)
        step = self.lr_step_mult
        u = out[:, 0] * step * jnp.exp(out[:, 1] * self.exp_mult)
        u = u + out[:, 2] * jnp.concatenate(masks) * eps * step
        u = u - u.mean()  # the global zero-mean update over actor and critic

        per_net: dict = {net: {"u": {}, "c": {}} for net in nets}
        offset = 0
        for net, treedef, i, shape in layout:
            size = math.prod(shape)
            per_net[net]["treedef"] = treedef
            per_net[net]["u"][i] = u[offset : offset + size].reshape(shape)
            if self.recurrent:
                per_net[net]["c"][i] = carry[offset : offset + size].reshape((*shape, self.gru))
            offset += size
        new_params, new_state = {}, {}
        for net in nets:
            entry = per_net[net]
            n = len(entry["u"])
            updates = jax.tree_util.tree_unflatten(
                entry["treedef"], [entry["u"][i] for i in range(n)]
            )
            new_params[net] = jax.tree.map(lambda p, d: p - d, params[net], updates)
            s = {"mom": moms[net]}
            if self.recurrent:
                s["carry"] = jax.tree_util.tree_unflatten(
                    entry["treedef"], [entry["c"][i] for i in range(n)]
                )
            new_state[net] = s
        return new_params, new_state


# --- Registry entries -----------------------------------------------------------------------

_FEATURES = (
    ("p", "parameter value (second-moment normalised per tensor)", (-3.0, 3.0)),
    *[
        (f"sign_m_{str(b).replace('.', '_')}", f"sign of the momentum at decay {b}", (-1.0, 1.0))
        for b in DECAYS
    ],
    *[
        (f"log_m_{str(b).replace('.', '_')}", f"log |momentum| at decay {b} (normalised)", (-3, 3))
        for b in DECAYS
    ],
    ("sign_g", "sign of the gradient", (-1.0, 1.0)),
    ("log_g", "log |gradient| (normalised)", (-3.0, 3.0)),
    ("t_p", "training proportion: update / (updates - 1)", (0.0, 1.0)),
    ("l_p", "layer proportion: layer index / (layers - 1)", (0.0, 1.0)),
    ("b_p", "epoch proportion within the update", (0.0, 1.0)),
    ("dorm", "per-neuron dormancy: activation / mean activation of its layer", (0.0, 10.0)),
)


def _spec(name: str):
    from metarl_cli.learned.base import Feature, FeatureSpec

    return FeatureSpec(name, 1, tuple(Feature(n, m, tuple(map(float, r))) for n, m, r in _FEATURES))


@dataclass(frozen=True)
class OpenAlgorithm:
    """OPEN as a learned algorithm (registry ids `open` and `open_ff`)."""

    name: str
    recurrent: bool
    slot: str = "optimiser"

    @property
    def spec(self):
        return _spec(self.name)

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: MinAtar GRU 16 / dense 32; Brax (Ant) GRU 8 / dense 16."""
        return {"hidden": 32, "gru": 16} if suite == "minatar" else {"hidden": 16, "gru": 8}

    def init(self, key: jax.Array, hidden: int = 16, gru: int = 8):
        return init_theta(key, hidden, gru, self.recurrent)

    def kernel(self, cfg, architecture: dict) -> OpenOptimiser:
        del cfg
        return OpenOptimiser(
            hidden=int(architecture["hidden"]),
            gru=int(architecture.get("gru", 0)),
            recurrent=self.recurrent,
        )


def _register() -> None:
    from metarl_cli.learned.base import ALGORITHMS

    ALGORITHMS.register("open", OpenAlgorithm("open", recurrent=True))
    ALGORITHMS.register("open_ff", OpenAlgorithm("open_ff", recurrent=False))


_register()
