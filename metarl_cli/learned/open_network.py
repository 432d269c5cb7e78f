"""OPEN's per-parameter network, its 19 input features and its flat meta-parameter vector.

The network (GRU then MLP, or the MLP alone for feed-forward OPEN), `open_features` /
`flat_features` (the 19 inputs), the flat-vector round trip in JAX tree order and the reader
of the original code's released `.npy` checkpoints. The update rule and the algorithm are in
`learned/open.py` (Goldie et al., NeurIPS 2024, arXiv:2407.07082).
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

NUM_FEATURES = 19
# Length of a released recurrent checkpoint -> (hidden, gru).
OPEN_NPY_ARCHS: dict[int, tuple[int, int]] = {1211: (16, 8), 3571: (32, 16)}

# --------------------------------------------------------------------------------------------
# Network


def open_mlp(hidden: int, out: int = 3) -> nn.Sequential:
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
        """Fresh θ (flax's default initialisers; the GRU's only when recurrent)."""
        k_mlp, k_gru = jax.random.split(key)
        mlp_in = self.gru if self.recurrent else NUM_FEATURES
        theta = {"params": open_mlp(self.hidden).init(k_mlp, jnp.zeros((mlp_in,)))}
        if self.recurrent:
            carry = jnp.zeros((self.gru,))
            theta["gru_params"] = self._gru().init(k_gru, carry, jnp.zeros((NUM_FEATURES,)))
        return theta

    def apply(self, theta, features, carry=None):
        """(outputs [..., 3], new carry or None) for `features` [..., 19]."""
        x = features
        if self.recurrent:
            carry = x = gru_cell(theta["gru_params"], carry, features)
        return mlp_apply(theta["params"], x), carry


# The per-parameter network runs over every parameter of the agent (~60k rows on MinAtar) at
# every optimiser step, so it is written as a few large matmuls over `[rows, features]`
# (docs/benchmarks.md, "Learned optimisers: profile"). The maths and the parameters are flax's
# (`nn.GRUCell`, `open_mlp`, which still initialise θ); the results agree with flax's to float
# rounding (tests/test_open_fast.py).


def _dense(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`x @ kernel + bias`, with the contracted axis zero-padded to a multiple of 4: XLA:CPU
    runs `[N, 19] @ [19, k]` at about half the speed of `[N, 20] @ [20, k]` (zero products
    add nothing)."""
    pad = -kernel.shape[0] % 4
    if pad:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
        kernel = jnp.pad(kernel, ((0, pad), (0, 0)))
    y = x @ kernel
    return y if bias is None else y + bias


def gru_cell(gru_params, carry: jax.Array, x: jax.Array) -> jax.Array:
    """flax's `GRUCell` with its six gate matmuls merged into two, `x @ [W_ir W_iz W_in]` and
    `h @ [W_hr W_hz W_hn]`. Returns the new carry `[..., gru]`."""
    p = gru_params["params"]
    w_x = jnp.concatenate([p["ir"]["kernel"], p["iz"]["kernel"], p["in"]["kernel"]], axis=1)
    b_x = jnp.concatenate([p["ir"]["bias"], p["iz"]["bias"], p["in"]["bias"]])
    w_h = jnp.concatenate([p["hr"]["kernel"], p["hz"]["kernel"], p["hn"]["kernel"]], axis=1)
    g = carry.shape[-1]
    gx = _dense(x, w_x, b_x)
    gh = _dense(carry, w_h)
    r = jax.nn.sigmoid(gx[..., :g] + gh[..., :g])
    z = jax.nn.sigmoid(gx[..., g : 2 * g] + gh[..., g : 2 * g])
    n = jnp.tanh(gx[..., 2 * g :] + r * (gh[..., 2 * g :] + p["hn"]["bias"]))
    return (1.0 - z) * n + z * carry


def mlp_apply(variables, x: jax.Array) -> jax.Array:
    """`open_mlp(h, out).apply(variables, x)`: Dense-LayerNorm-relu twice, then Dense.

    Each LayerNorm's mean is folded into the Dense before it: with the kernel's columns and
    the bias centred (`W - mean_j W[:, j]`, `b - mean b`), the Dense outputs `y - mean(y)`
    directly, so the normalisation needs one reduction (`mean((y - mean y)^2)`, flax's
    epsilon 1e-6) instead of two; the same function exactly, rounded differently."""
    q = variables["params"]
    for dense, norm in (("layers_0", "layers_1"), ("layers_3", "layers_4")):
        kernel, bias = q[dense]["kernel"], q[dense]["bias"]
        centred = _dense(x, kernel - kernel.mean(axis=1, keepdims=True), bias - bias.mean())
        var = jnp.mean(centred * centred, axis=-1, keepdims=True)
        scale = jax.lax.rsqrt(var + 1e-6) * q[norm]["scale"]
        x = jax.nn.relu(centred * scale + q[norm]["bias"])
    return _dense(x, q["layers_6"]["kernel"], q["layers_6"]["bias"])


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


def second_moment_normalise(x: jax.Array) -> jax.Array:
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
    normed = second_moment_normalise(normed)
    shape = (*p.shape, 1)
    ctx = [
        jnp.broadcast_to(jnp.asarray(training_prop, p.dtype), shape),
        jnp.broadcast_to(jnp.asarray(layer_prop, p.dtype), shape),
        jnp.broadcast_to(jnp.asarray(batch_prop, p.dtype), shape),
        jnp.broadcast_to(jnp.asarray(dormancy, p.dtype), p.shape)[..., None],
    ]
    return jnp.concatenate([normed, *ctx], axis=-1)


def flat_features(inputs) -> jax.Array:
    """The 19 inputs over the flat parameter vector (`perparam.Inputs`): [N, 19], with the 15
    parameter/momentum/gradient channels second-moment normalised per tensor (segment)."""
    eps = 1e-13
    m, g = inputs.mom, inputs.g
    raw = jnp.concatenate(
        [
            inputs.p[:, None],
            jnp.sign(m),
            jnp.log(jnp.abs(m) + eps),
            jnp.sign(g)[:, None],
            jnp.log(jnp.abs(g) + eps)[:, None],
        ],
        axis=-1,
    )
    normed = inputs.layout.segment_rms_normalise(raw)
    n = inputs.p.shape[0]
    ctx = jnp.stack(
        [
            jnp.broadcast_to(inputs.t_p, (n,)),
            inputs.l_p,
            jnp.broadcast_to(inputs.b_p, (n,)),
            inputs.dorm,
        ],
        axis=-1,
    )
    return jnp.concatenate([normed, ctx], axis=-1)
