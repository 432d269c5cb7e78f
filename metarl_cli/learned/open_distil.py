"""OPEN's distillation problems and symbolic-regression data (split from `open.py`, which holds
the network, its features and the slot rules).

The compared outputs, and where they differ from the original scripts (reference §5):

* OPEN-FF: the full update including the noise term, `o0 exp(o1 1e-3) + o2 rand` with the
  same `rand` for both networks, in units of the step multiplier 1e-3 (the original's MSE on
  the update times 1e6, which keeps Adam's epsilon negligible). Features are normalised over
  the batch, which stands in for one tensor.
* Recurrent OPEN: sequences of optimiser steps (reference §5.4). Both networks start from the
  same parameter value with zero carry and momenta; at every step they see the same fresh
  gradient, dormancy and noise, the same training and epoch proportions, and their own
  parameter value and carry (the student is fed its own trajectory). The compared output is
  the whole displacement trajectory `p_t - p_0` (units of 1e-3), not only the final value as
  in the original, so a student that strays early is corrected early.

Symbolic regression fits OPEN-FF's full stochastic update `o0 * 1e-3 * exp(o1 * 1e-3) + o2 *
1e-3 * rand` over its 19 features (second-moment normalised over the whole set) plus `rand`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.learned.distillation import DistillationProblem, SymbolicData, chunked
from metarl_cli.learned.open_inputs import FEATURE_NAMES, sample_inputs
from metarl_cli.learned.open_network import NUM_FEATURES, OpenNetwork, open_features
from metarl_cli.learned.perparam import DECAYS, EXP_MULT, STEP_MULT

SYMBOLIC_INPUTS = (*FEATURE_NAMES, "rand")


@dataclass(frozen=True)
class OpenFFProblem(DistillationProblem):
    """Feed-forward OPEN: the full update with its noise term (module doc)."""

    def outputs(self, theta, architecture, batch):
        """The network's update for `batch`'s synthetic inputs."""
        b = batch
        x = open_features(
            b["p"], b["g"], b["mom"], b["t_p"][:, None], b["l_p"][:, None], b["b_p"][:, None],
            b["dorm"],
        )  # fmt: skip
        net = OpenNetwork(int(architecture["hidden"]), 1, recurrent=False)
        out, _ = net.apply(theta, x)
        return out[:, 0] * jnp.exp(out[:, 1] * EXP_MULT) + out[:, 2] * b["rand"]


@dataclass(frozen=True)
class RecurrentOpenProblem(DistillationProblem):
    """Sequences of `seq_len` optimiser steps of a PPO run with `schedule` = (updates,
    epochs, minibatches): step k has training proportion `(k // (E M)) / (U - 1)` and epoch
    proportion `((k // M) % E) / (E - 1)`, as in the trainer; each sequence starts at a random
    step. (The original used `step / 1999` and `(step % 8) / 7`.)"""

    seq_len: int = 100
    schedule: tuple[int, int, int] = (1220, 4, 8)

    def sample(self, key, n):
        """`n` sequences of optimiser steps with their PPO schedule positions."""
        k_first, k_steps, k_start = jax.random.split(key, 3)
        first = self.algorithm.sample_inputs(k_first, n)
        steps = jax.vmap(lambda k: self.algorithm.sample_inputs(k, n))(
            jax.random.split(k_steps, self.seq_len)
        )
        updates, epochs, minibatches = self.schedule
        total = updates * epochs * minibatches
        start = jax.random.randint(k_start, (n,), 0, max(total - self.seq_len, 1))
        k = start[None, :] + jnp.arange(self.seq_len)[:, None]  # [L, n] optimiser step
        return {
            "p0": first["p"],
            "l_p": first["l_p"],
            "g": steps["g"],
            "dorm": steps["dorm"],
            "rand": steps["rand"],
            "t_p": (k // (epochs * minibatches)) / max(updates - 1, 1),
            "b_p": ((k // minibatches) % epochs) / max(epochs - 1, 1),
        }

    def outputs(self, theta, architecture, batch):
        """The displacement trajectory [L, n] in units of 1e-3 (see the module doc)."""
        net = OpenNetwork(int(architecture["hidden"]), int(architecture["gru"]), recurrent=True)
        p0, l_p = batch["p0"], batch["l_p"][:, None]
        n = p0.shape[0]
        decays = jnp.asarray(DECAYS, jnp.float32)

        def step(carry, x):
            disp, mom, h = carry
            g, dorm, rand, t_p, b_p = x
            mom = decays * mom + (1.0 - decays) * g[:, None]
            p = p0 + STEP_MULT * disp
            feats = open_features(p, g, mom, t_p[:, None], l_p, b_p[:, None], dorm)
            out, h = net.apply(theta, feats, h)
            u = out[:, 0] * jnp.exp(out[:, 1] * EXP_MULT) + out[:, 2] * rand
            disp = disp - (u - u.mean())  # zero-mean over the batch, as over a network
            return (disp, mom, h), disp

        init = (jnp.zeros((n,)), jnp.zeros((n, len(DECAYS))), jnp.zeros((n, net.gru)))
        xs = tuple(batch[k] for k in ("g", "dorm", "rand", "t_p", "b_p"))
        return jax.lax.scan(step, init, xs)[1]


def symbolic_inputs(key: jax.Array, n: int) -> np.ndarray:
    """[n, 20] inputs: the 19 OPEN features of `sample_inputs` draws, normalised over all n
    points together, plus `rand`."""
    raw = sample_inputs(key, n)
    # Per-point context: the (n, 1) columns broadcast against the (n, 1) feature slots.
    t_p, l_p, b_p = (raw[k][:, None] for k in ("t_p", "l_p", "b_p"))
    feats = open_features(raw["p"], raw["g"], raw["mom"], t_p, l_p, b_p, raw["dorm"])
    return np.asarray(jnp.concatenate([feats, raw["rand"][:, None]], axis=1), np.float32)


def symbolic_targets(theta: Any, architecture: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The feed-forward teacher's full stochastic update for inputs `x` (module doc)."""
    theta = jax.tree.map(jnp.asarray, theta)
    hidden = int(architecture.get("hidden", 16))
    net = OpenNetwork(hidden, int(architecture.get("gru", 0)), recurrent=False)

    def update(xx):
        out, _ = net.apply(theta, xx[:, :NUM_FEATURES])
        rand = xx[:, NUM_FEATURES]
        u = out[:, 0] * STEP_MULT * jnp.exp(out[:, 1] * EXP_MULT)
        return u + out[:, 2] * STEP_MULT * rand

    return chunked(jax.jit(update), x)


def symbolic_data(theta: Any, architecture: dict[str, Any], key: Any, n: int) -> SymbolicData:
    """Feed-forward OPEN: the teacher's stochastic update on `n` synthetic inputs."""
    x = symbolic_inputs(key, n)
    return SymbolicData(SYMBOLIC_INPUTS, x, symbolic_targets(theta, architecture, x))


def symbolic_holdout(key: Any, n: int) -> dict[str, np.ndarray]:
    """Fresh symbolic inputs for the round trip (variable name -> [n])."""
    x = symbolic_inputs(key, n)
    return {name: x[:, i] for i, name in enumerate(SYMBOLIC_INPUTS)}
