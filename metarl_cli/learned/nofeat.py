"""No Features: the OPEN ablation without hand-crafted features (Goldie et al., NeurIPS 2024).

Each scalar parameter is updated by a small MLP that sees only 8 inputs: the parameter, its six
raw momenta (decays 0.1 .. 0.9999, updated with the current gradient before the features are
built) and the raw gradient, all second-moment normalised per tensor per channel. There are no
training/layer/epoch/dormancy features and no noise. The network outputs `(o0, o1)` and

    u = o0 * step_mult * exp(o1 * exp_mult)

is made zero-mean over all actor and critic parameters together, then `p <- p - u`.

Meta-parameters (`theta`) are flax's variable dict of the MLP, `{"params": {layers_0, layers_1,
layers_3, layers_4, layers_6}}` (514 values for hidden 16, 1538 for hidden 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_cli.learned.open import DECAYS, _second_moment_normalise
from metarl_cli.learned.open import _mlp as _open_mlp

__all__ = [
    "NUM_FEATURES",
    "NoFeatAlgorithm",
    "NoFeatOptimiser",
    "init_theta",
    "nofeat_features",
    "theta_size",
]

NUM_FEATURES = 8


def _mlp(hidden: int) -> nn.Sequential:
    """Dense(h)-LN-relu-Dense(h)-LN-relu-Dense(2), OPEN's MLP with two outputs."""
    return _open_mlp(hidden, out=2)


def init_theta(key: jax.Array, hidden: int = 16) -> dict[str, Any]:
    """Fresh meta-parameters with flax's default initialisers."""
    return _mlp(hidden).init(key, jnp.zeros((NUM_FEATURES,)))


def theta_size(hidden: int = 16) -> int:
    """Number of meta-parameters (514 for hidden 16, 1538 for hidden 32)."""
    template = jax.eval_shape(lambda k: init_theta(k, hidden), jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(template))


def nofeat_features(p: jax.Array, g: jax.Array, m: jax.Array) -> jax.Array:
    """The 8 inputs for one tensor `p` (shape S) with gradient `g` (S) and momenta `m`
    (S + (6,)); returns S + (8,), second-moment normalised per channel."""
    x = jnp.concatenate([p[..., None], m, g[..., None]], axis=-1)
    return _second_moment_normalise(x)


@dataclass(frozen=True)
class NoFeatOptimiser:
    """No Features as a trainer optimiser slot; `theta` is the tree from `init_theta`.

    State: `{"actor"|"critic": {"mom": tree of p.shape + (6,)}}` (separate per network).
    """

    hidden: int = 16
    lr_step_mult: float = 0.001
    exp_mult: float = 0.001
    separate_clip: bool = True
    needs_activations: bool = False

    def init(self, theta, params, key):
        del theta, key
        return {
            net: {"mom": jax.tree.map(lambda x: jnp.zeros((*x.shape, len(DECAYS)), x.dtype), p)}
            for net, p in params.items()
        }

    def update(self, theta, grads, state, params, ctx):
        del ctx
        decays = jnp.asarray(DECAYS, jnp.float32)
        net_fn = _mlp(self.hidden)
        nets = sorted(params)

        new_state, raw_updates = {}, {}
        for net in nets:
            p_tree, g_tree = params[net], grads[net]
            mom = jax.tree.map(
                lambda m, g: decays * m + (1.0 - decays) * g[..., None],
                state[net]["mom"],
                g_tree,
            )

            def leaf_update(p, g, m):
                out = net_fn.apply(theta, nofeat_features(p, g, m))
                return out[..., 0] * self.lr_step_mult * jnp.exp(out[..., 1] * self.exp_mult)

            raw_updates[net] = jax.tree.map(leaf_update, p_tree, g_tree, mom)
            new_state[net] = {"mom": mom}

        leaves = jax.tree.leaves(raw_updates)
        mean = sum(jnp.sum(u) for u in leaves) / sum(u.size for u in leaves)
        new_params = {
            net: jax.tree.map(lambda p, u: p - (u - mean), params[net], raw_updates[net])
            for net in nets
        }
        return new_params, new_state


# --- Registry entries -----------------------------------------------------------------------

_FEATURES = (
    ("p", "parameter value (second-moment normalised per tensor)", (-3.0, 3.0)),
    *[
        (
            f"m_{str(b).replace('.', '_')}",
            f"raw momentum at decay {b}, updated with this gradient (normalised)",
            (-3.0, 3.0),
        )
        for b in DECAYS
    ],
    ("g", "raw gradient (second-moment normalised per tensor)", (-3.0, 3.0)),
)


@dataclass(frozen=True)
class NoFeatAlgorithm:
    """No Features as a learned algorithm (registry id `nofeat`)."""

    name: str = "nofeat"
    slot: str = "optimiser"

    @property
    def spec(self):
        from metarl_cli.learned.base import Feature, FeatureSpec

        return FeatureSpec(
            self.name, 1, tuple(Feature(n, m, tuple(map(float, r))) for n, m, r in _FEATURES)
        )

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: hidden 16."""
        del suite
        return {"hidden": 16}

    def init(self, key: jax.Array, hidden: int = 16):
        return init_theta(key, hidden)

    def kernel(self, cfg, architecture: dict) -> NoFeatOptimiser:
        del cfg
        return NoFeatOptimiser(hidden=int(architecture.get("hidden", 16)))


def _register() -> None:
    from metarl_cli.learned.base import ALGORITHMS

    ALGORITHMS.register("nofeat", NoFeatAlgorithm())


_register()
