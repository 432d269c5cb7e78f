"""Per-parameter optimisers: every scalar of the actor and critic as one flat vector.

OPEN, No Features and their symbolic and code forms all compute an update for each scalar
parameter from per-parameter inputs (value, gradient, six momenta) and per-tensor or per-neuron
context (layer proportion, dormancy, actor mask). `Layout` fixes, at trace time, the order of
all leaves of `{"actor", "critic"}` (networks sorted, leaves in tree order) and their static
offsets, so inputs are built once over one vector of N parameters instead of tensor by tensor,
and the rule runs in one call. Per-tensor statistics (OPEN's second-moment normalisation) are
computed per contiguous segment.

The optimiser state is flat too: `{"mom": [N, 6], "rule": <the rule's state>, "count": int}`.
Actor and critic entries are separate rows: nothing is shared between the two networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.errors import KernelError

DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
MOMENTUM_NAMES = tuple(f"m_{str(b).replace('.', '_')}" for b in DECAYS)  # m_0_1 .. m_0_9999
STEP_MULT = 1e-3  # OPEN's and No Features' lr_step_mult: the unit of their outputs' updates
EXP_MULT = 1e-3  # ... and their exp_mult
# Table 10 mapped to Operon (docs/symbolic.md): the learned optimisers' symbolic search space.
OPTIMISER_SYMBOLIC_SEARCH: dict[str, Any] = {
    "population": 5000,
    "max_size": 60,
    "max_depth": 9,
    "operators": ["add", "sub", "mul", "div", "min", "max", "exp", "tanh", "abs"],
    "num_points": 1_000_000,
}


@dataclass(frozen=True)
class LeafInfo:
    """One parameter tensor in the flat layout: its net, layer, shape, offset, layer position."""

    net: str
    layer: str
    shape: tuple[int, ...]
    offset: int
    layer_prop: float

    @property
    def size(self) -> int:
        """Number of scalars in the tensor."""
        return math.prod(self.shape)


def _layer_order(net_params) -> list[str]:
    """Layer names of one network in forward order: dense_0.., head, then others (log_std)."""
    mlp = net_params.get("mlp", {})
    dense = sorted((k for k in mlp if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    names = dense + [k for k in sorted(mlp) if not k.startswith("dense_")]
    return names + [k for k in sorted(net_params) if k != "mlp"]


def _leaf_layer(path) -> Any:
    keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    if keys[-1] in ("kernel", "bias") and len(keys) >= 2:
        return keys[-2]
    return keys[-1]


class Layout:
    """The static flat layout of a `{"actor": tree, "critic": tree}` parameter tree."""

    def __init__(self, params: Any) -> None:
        self.nets = sorted(params)
        self.treedefs: dict[str, Any] = {}
        self.leaves: list[LeafInfo] = []
        offset = 0
        for net in self.nets:
            with_path, treedef = jax.tree_util.tree_flatten_with_path(params[net])
            self.treedefs[net] = treedef
            order = _layer_order(params[net])
            denom = max(len(order) - 1, 1)
            for path, leaf in with_path:
                layer = _leaf_layer(path)
                prop = order.index(layer) / denom if layer in order else 0.0
                info = LeafInfo(net, layer, tuple(leaf.shape), offset, prop)
                self.leaves.append(info)
                offset += info.size
        self.size = offset
        self.sizes = np.array([leaf.size for leaf in self.leaves], np.int32)
        # Static tables, built once here with numpy (never inside the traced program).
        self._layer_prop = self.constant(lambda leaf: leaf.layer_prop)
        self._actor_mask = self.constant(lambda leaf: 1.0 if leaf.net == "actor" else 0.0)

    def flatten(self, tree: Any) -> jax.Array:
        """`[N]` vector of a tree shaped like the parameters."""
        parts = []
        for net in self.nets:
            parts += [x.reshape(-1) for x in self.treedefs[net].flatten_up_to(tree[net])]
        return jnp.concatenate(parts)

    def unflatten(self, flat: jax.Array) -> dict[str, Any]:
        """Inverse of `flatten` (extra trailing axes of `flat` are kept)."""
        out = {}
        i = 0
        for net in self.nets:
            n = self.treedefs[net].num_leaves
            leaves = [
                flat[info.offset : info.offset + info.size].reshape(info.shape + flat.shape[1:])
                for info in self.leaves[i : i + n]
            ]
            out[net] = jax.tree_util.tree_unflatten(self.treedefs[net], leaves)
            i += n
        return out

    def constant(self, fn) -> np.ndarray:
        """`[N]` float32 vector with `fn(leaf_info)` repeated over each leaf."""
        return np.repeat(
            np.array([fn(leaf) for leaf in self.leaves], np.float32), self.sizes
        ).astype(np.float32)

    def layer_prop(self) -> np.ndarray:
        """[N] the layer position (0 first, 1 last) of every scalar parameter."""
        return self._layer_prop

    def actor_mask(self) -> np.ndarray:
        """[N] 1 for actor parameters, 0 for critic parameters."""
        return self._actor_mask

    def dormancy(self, activations: Any) -> jax.Array:
        """Per-parameter dormancy of the neuron each parameter feeds: `a_i / sum(a) * n` with
        `a` the mean |activation| of the layer's units (+1e-11), tiled over a kernel's inputs;
        1 where no activations are known (e.g. `log_std`)."""
        parts = []
        for leaf in self.leaves:
            acts = (activations or {}).get(leaf.net) or {}
            act = acts.get(leaf.layer) if isinstance(acts, dict) else None
            if act is None or not leaf.shape:
                parts.append(jnp.ones((leaf.size,), jnp.float32))
                continue
            a = jnp.asarray(act, jnp.float32) + 1e-11
            dorm = a / jnp.sum(a) * a.shape[-1]
            parts.append(jnp.broadcast_to(dorm, leaf.shape).reshape(-1))
        return jnp.concatenate(parts)

    def segment_rms_normalise(self, x: jax.Array) -> jax.Array:
        """`x * rsqrt(1e-5 + mean(x^2))` per channel (last axis) over each leaf's rows.

        Each leaf's rows are scaled by its own `[channels]` vector and the pieces are joined
        by static slices: no `[N]` index table (a gather of the per-leaf scales was the
        costliest op of an OPEN step inside the trainer, and built a constant-folded layout
        table at compile time)."""
        parts = []
        for leaf in self.leaves:
            rows = x[leaf.offset : leaf.offset + leaf.size]
            parts.append(rows * jax.lax.rsqrt(1e-5 + jnp.mean(rows * rows, axis=0)))
        return jnp.concatenate(parts)


class Inputs(NamedTuple):
    """Everything a per-parameter rule may use, over the flat vector of N parameters.

    `p`, `g`: [N]; `mom`: [N, 6] (already updated with `g`); `t_p`, `b_p`, `lr_scale`: scalars;
    `l_p`, `dorm`, `mask` (1 for actor, 0 for critic): [N]; `iteration`: optimiser steps taken
    including this one (>= 1); `key`: PRNG key; `layout`: the static `Layout`.
    """

    p: jax.Array
    g: jax.Array
    mom: jax.Array
    t_p: jax.Array
    b_p: jax.Array
    l_p: jax.Array
    dorm: jax.Array
    mask: jax.Array
    lr_scale: jax.Array
    iteration: jax.Array
    key: jax.Array
    layout: Layout


class StatelessRule:
    """Mixin for per-parameter rules that carry no state between steps."""

    def init_state(self, n: int) -> dict:
        """No per-parameter state."""
        del n
        return {}


@dataclass(frozen=True)
class PerParamOptimiser:
    """A trainer optimiser slot over flat per-parameter inputs.

    `rule` is a hashable object with `needs_activations: bool`, `init_state(n) -> state` and
    `__call__(theta, inputs, state) -> (u, state)`. The new parameters are `p - u`, after
    subtracting the mean of `u` over all actor and critic parameters when `zero_mean`.
    """

    rule: Any
    zero_mean: bool = True
    separate_clip: bool = True

    @property
    def needs_activations(self) -> bool:
        """Whether the rule reads dormancy (per-unit activations)."""
        return bool(getattr(self.rule, "needs_activations", False))

    def init(self, theta, params, key):
        """The momenta, the step count and the rule's per-parameter state."""
        del theta, key
        layout = Layout(params)
        return {
            "mom": jnp.zeros((layout.size, len(DECAYS)), jnp.float32),
            "rule": self.rule.init_state(layout.size),
            "count": jnp.zeros((), jnp.int32),
        }

    def update(self, theta, grads, state, params, ctx):
        """One step: features from the flat parameters, the rule's update, p <- p - u."""
        layout = Layout(params)
        p, g = layout.flatten(params), layout.flatten(grads)
        decays = jnp.asarray(DECAYS, jnp.float32)
        mom = decays * state["mom"] + (1.0 - decays) * g[:, None]
        count = state["count"] + 1
        inputs = Inputs(
            p=p,
            g=g,
            mom=mom,
            t_p=jnp.asarray(ctx.training_prop, jnp.float32),
            b_p=jnp.asarray(ctx.epoch_prop, jnp.float32),
            l_p=jnp.asarray(layout.layer_prop()),
            dorm=(layout.dormancy(ctx.activations) if self.needs_activations else jnp.ones_like(p)),
            mask=jnp.asarray(layout.actor_mask()),
            lr_scale=jnp.asarray(ctx.lr_scale, jnp.float32),
            iteration=count.astype(jnp.float32),
            key=ctx.key,
            layout=layout,
        )
        u, rule_state = self.rule(theta, inputs, state["rule"])
        u = jnp.broadcast_to(jnp.asarray(u, p.dtype), p.shape)
        if self.zero_mean:
            u = u - u.mean()
        new_params = layout.unflatten(p - u)
        return new_params, {"mom": mom, "rule": rule_state, "count": count}


class OptimiserChecks:
    name: str

    """Mixin for optimiser-slot algorithms: nothing about an update rule is checked, the
    inputs do not depend on a ratio, and Table 10's search space for learned optimisers."""

    @property
    def symbolic_search(self) -> dict[str, Any]:
        """Table 10's search space for learned optimisers (a fresh copy)."""
        search = OPTIMISER_SYMBOLIC_SEARCH
        return {**search, "operators": list(search["operators"])}

    def symbolic_ratio_inputs(self, ratio: Any) -> dict[str, Any]:
        """Drift algorithms only: an optimiser's inputs do not depend on a ratio."""
        raise KernelError(f"{self.name} is an optimiser: its inputs do not depend on a ratio r")

    def validity(self, kernel: Any, theta: Any = None, *, clip_eps: float = 0.2) -> list[str]:
        """Nothing is checked for an optimiser: []."""
        del kernel, theta, clip_eps
        return []
