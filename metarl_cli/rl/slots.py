"""The two slots a learned algorithm can fill in the PPO trainer, and their defaults.

* **drift** (Lu et al., 2022, arXiv:2210.05639): the actor loss is `-mean(r*A - drift(r, A))`;
  PPO's clip is the drift `relu((r - clip(r, 1-eps, 1+eps)) * A)`.
* **optimiser**: maps gradients to new parameters. It sees the whole `{"actor", "critic"}`
  parameter tree at once (OPEN's update is zero-meaned over both), and an `OptContext` with the
  training and epoch progress, the annealed learning-rate scale, per-unit activations for
  dormancy and a key for stochastic updates. Default: Adam with the preset learning rate/betas.

Each slot's meta-parameters arrive as `theta.drift` / `theta.optimiser` of one `Theta` record
(traced), so one compiled trainer serves every population member. A third field,
`theta.update_rule`, carries the θ of an update rule (LPG), which replaces the whole update and
runs in its own trainer (`rl/lpg_train.py`), not in these slots. Slots are hashable Python
objects (static); `fill_slots` is the one place that puts the paper's defaults in empty slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_cli.config import TrainConfig

SLOT_NAMES = ("drift", "optimiser", "update_rule")


class OptContext(NamedTuple):
    """What a learned optimiser may use besides gradients and parameters (all traced scalars
    unless noted).

    Attributes:
        training_prop: fraction of updates done, in [0, 1].
        epoch_prop: epoch index / (epochs - 1) within the current update, in [0, 1].
        minibatch_prop: minibatch index / (minibatches - 1) within the epoch, in [0, 1].
        lr_scale: linear annealing factor (1 - update/num_updates), or 1 when not annealing.
        activations: `{"actor": {...}, "critic": {...}}` mean |activation| per unit, or None.
        key: PRNG key for stochastic updates.

    A field the optimiser does not read (see `context_reads`) is None: the trainer does not
    compute it at all.
    """

    training_prop: jax.Array
    epoch_prop: jax.Array
    minibatch_prop: jax.Array
    lr_scale: jax.Array
    activations: Any
    key: jax.Array


CONTEXT_FIELDS = frozenset(OptContext._fields)


def context_reads(optimiser: Any) -> frozenset[str]:
    """The `OptContext` fields `optimiser` reads: its `context_reads` attribute, else all of
    them (a user's optimiser that does not say gets everything)."""
    reads = getattr(optimiser, "context_reads", None)
    if reads is None:
        return CONTEXT_FIELDS
    unknown = set(reads) - CONTEXT_FIELDS
    if unknown:
        raise ValueError(f"context_reads names unknown fields {sorted(unknown)}")
    return frozenset(reads)


class DriftSlot(Protocol):
    """Elementwise drift `D(r, A)`; must be >= 0 with D = dD/dr = 0 at r = 1 (mirror learning)."""

    def __call__(
        self, theta: Any, ratio: jax.Array, advantage: jax.Array, clip_eps: float
    ) -> jax.Array:
        """The drift at each sample, shaped like `ratio` (`theta`: this slot's θ)."""
        ...


class OptimiserSlot(Protocol):
    """A (possibly learned) optimiser over the `{"actor", "critic"}` parameter tree."""

    @property
    def separate_clip(self) -> bool:
        """Clip actor and critic gradients separately (the learned-optimiser path)."""
        ...

    @property
    def needs_activations(self) -> bool:
        """Needs per-unit activations in `OptContext.activations` (dormancy)."""
        ...

    def init(self, theta: Any, params: Any, key: jax.Array) -> Any:
        """The optimiser state for `params` (`theta`: this slot's θ)."""
        ...

    def update(
        self, theta: Any, grads: Any, state: Any, params: Any, ctx: OptContext
    ) -> tuple[Any, Any]:
        """(new params, new state) after one step on `grads`."""
        ...


@dataclass(frozen=True)
class PPOClipDrift:
    """PPO's clipped surrogate written as a drift (no meta-parameters)."""

    def __call__(self, theta, ratio, advantage, clip_eps):
        del theta
        clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
        return jax.nn.relu((ratio - clipped) * advantage)


@dataclass(frozen=True)
class AdamOptimiser:
    """Adam with a linearly annealed learning rate (eps 1e-5 as in PureJaxRL and the paper)."""

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-5
    separate_clip: bool = False
    needs_activations: bool = False
    context_reads: frozenset[str] = frozenset({"lr_scale"})

    def _tx(self) -> optax.GradientTransformation:
        return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, theta, params, key):
        """Adam's moments for `params` (no meta-parameters)."""
        del theta, key
        return self._tx().init(params)

    def update(self, theta, grads, state, params, ctx):
        """One Adam step with the annealed learning rate."""
        del theta
        updates, state = self._tx().update(grads, state, params)
        step = -self.lr * ctx.lr_scale
        return jax.tree.map(lambda p, u: p + step * u, params, updates), state


@dataclass(frozen=True)
class SGDOptimiser:
    """Plain SGD with a linearly annealed learning rate."""

    lr: float
    separate_clip: bool = False
    needs_activations: bool = False
    context_reads: frozenset[str] = frozenset({"lr_scale"})

    def init(self, theta, params, key):
        """SGD keeps no state."""
        del theta, params, key
        return ()

    def update(self, theta, grads, state, params, ctx):
        """One SGD step with the annealed learning rate."""
        del theta
        step = -self.lr * ctx.lr_scale
        return jax.tree.map(lambda p, g: p + step * g, params, grads), state


@dataclass(frozen=True)
class Slots:
    """The trainer's pluggable parts; defaults give PPO with Adam."""

    drift: DriftSlot = field(default_factory=PPOClipDrift)
    optimiser: OptimiserSlot | None = None  # None -> Adam with the config's lr/b1/b2


def fill_slots(
    cfg: TrainConfig, drift: DriftSlot | None = None, optimiser: OptimiserSlot | None = None
) -> Slots:
    """The trainer's slots with the paper's hand-designed default in every slot not given:
    PPO's clipped drift, and Adam with the config's learning rate, betas and epsilon (Tables
    4-6)."""
    return Slots(
        drift=PPOClipDrift() if drift is None else drift,
        optimiser=(
            AdamOptimiser(cfg.lr, cfg.b1, cfg.b2, cfg.adam_eps) if optimiser is None else optimiser
        ),
    )


@struct.dataclass
class Theta:
    """The trainer's meta-parameters: one pytree per slot, `{}` for a slot that has none.

    A pytree (a flax struct), so it passes through `jit`, `vmap` and `shard_map` unchanged;
    its leaves are the slots' own, drift's first. `Theta()` is the hand-designed baseline's.
    `update_rule` is an update rule's θ (LPG): the PPO trainer never reads it; the update
    rule's own trainer (`rl/lpg_train.LPGTrainer`) reads nothing else.
    """

    drift: Any = struct.field(default_factory=dict)
    optimiser: Any = struct.field(default_factory=dict)
    update_rule: Any = struct.field(default_factory=dict)

    @classmethod
    def for_slot(cls, slot: str, value: Any) -> Theta:
        """θ with `value` in `slot` ("drift", "optimiser" or "update_rule"), nothing elsewhere."""
        if slot not in SLOT_NAMES:
            raise ValueError(f"unknown slot {slot!r}; slots: {', '.join(SLOT_NAMES)}")
        return cls(**{slot: value})

    @classmethod
    def of(cls, theta: Theta | Mapping[str, Any]) -> Theta:
        """`theta` as a `Theta`; a mapping with the keys "drift" and "optimiser" (the older
        spelling; "update_rule" optional) is converted."""
        if isinstance(theta, Theta):
            return theta
        return cls(
            drift=theta["drift"],
            optimiser=theta["optimiser"],
            update_rule=theta.get("update_rule", {}),
        )


def empty_theta() -> dict[str, Any]:
    """The baseline's θ in the older mapping spelling, kept for scripts that extend it
    (`{**empty_theta(), slot: value}`); the trainer accepts it, the package uses `Theta()`."""
    return {"drift": {}, "optimiser": {}}
