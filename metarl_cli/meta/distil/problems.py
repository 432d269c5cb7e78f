"""What a distilled student imitates: synthetic inputs and the compared outputs, per algorithm.

Black-box distillation (Goldie et al., 2025, arXiv:2507.17668, §4.2) regresses the student's
outputs on the teacher's with an L2 loss over synthetic inputs drawn from the algorithm's
sampler (`algorithm.sample_inputs`, the statistics of the original scripts, reference §5), so
it needs no environment samples. Each `Problem` below gives `sample(key, n)` (a fresh batch),
`test_batch(key, n)` (the held-out set), `outputs(theta, architecture, batch)` (the compared
vector, the same function for teacher and student) and `init_student(key)`.

The compared outputs, and where they differ from the original scripts:

* OPEN-FF: the full update including the noise term, `o0 exp(o1 1e-3) + o2 rand` with the
  same `rand` for both networks, in units of the step multiplier 1e-3 (the original's MSE on
  the update times 1e6, which keeps Adam's epsilon negligible). Features are normalised over
  the batch, which stands in for one tensor.
* No Features: `o0 exp(o1 1e-3)`, in the same units.
* LPO `value`: the drift's learned term `net(x(r, A))`, i.e. the drift before its relu minus
  PPO's clip term. PPO's term is the same in both networks so it cancels in the loss; the relu
  is left out because a student in its flat region would get no gradient (a student starting
  at PPO's drift, as ES does, would never leave it inside the clip range).
  LPO `grad`: `d relu(ppo + net) / d r`, the original's target (the policy gradient sees the
  drift only through it); its relative error is measured against the teacher's departure from
  PPO's gradient, which both share. The held-out set is a regular grid of ratios and
  advantages.
* Recurrent OPEN: sequences of optimiser steps (reference §5.4). Both networks start from the
  same parameter value with zero carry and momenta; at every step they see the same fresh
  gradient, dormancy and noise, the same training and epoch proportions, and their own
  parameter value and carry (the student is fed its own trajectory). The compared output is
  the whole displacement trajectory `p_t - p_0` (units of 1e-3), not only the final value as
  in the original, so a student that strays early is corrected early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

STEP_MULT = 1e-3  # OPEN's and No Features' lr_step_mult: the unit outputs are compared in
EXP_MULT = 1e-3


def num_params(theta: Any) -> int:
    """Number of meta-parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(theta)))


@dataclass(frozen=True)
class Problem:
    """Base: data from the algorithm's sampler, the held-out set from a fixed key."""

    algorithm: Any

    def sample(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        return self.algorithm.sample_inputs(key, n)

    def test_batch(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        return self.sample(key, n)

    def init_student(self, key: jax.Array, architecture: dict[str, int]) -> Any:
        return self.algorithm.init(key, **architecture)

    def outputs(self, theta: Any, architecture: dict[str, int], batch: dict) -> jax.Array:
        raise NotImplementedError

    def reference(self, batch: dict) -> jax.Array | None:
        """The part of the outputs the hand-designed reference already gives (None: nothing);
        the relative error is measured against the teacher's departure from it."""
        del batch
        return None


@dataclass(frozen=True)
class OpenFFProblem(Problem):
    def outputs(self, theta, architecture, batch):
        from metarl_cli.learned.open import OpenNetwork, open_features

        b = batch
        x = open_features(
            b["p"], b["g"], b["mom"], b["t_p"][:, None], b["l_p"][:, None], b["b_p"][:, None],
            b["dorm"],
        )  # fmt: skip
        net = OpenNetwork(int(architecture["hidden"]), 1, recurrent=False)
        out, _ = net.apply(theta, x)
        return out[:, 0] * jnp.exp(out[:, 1] * EXP_MULT) + out[:, 2] * b["rand"]


@dataclass(frozen=True)
class NoFeatProblem(Problem):
    def outputs(self, theta, architecture, batch):
        from metarl_cli.learned.nofeat import _mlp, nofeat_features

        x = nofeat_features(batch["p"], batch["g"], batch["mom"])
        out = _mlp(int(architecture["hidden"])).apply(theta, x)
        return out[:, 0] * jnp.exp(out[:, 1] * EXP_MULT)


@dataclass(frozen=True)
class LPOProblem(Problem):
    target: str = "value"
    clip_eps: float = 0.2

    def test_batch(self, key, n):
        """A regular grid over the sampler's ranges: log r in [-2, 2], A in [-8, 8]."""
        del key
        side = max(2, int(n**0.5))
        log_r, adv = jnp.meshgrid(jnp.linspace(-2.0, 2.0, side), jnp.linspace(-8.0, 8.0, side))
        return {"ratio": jnp.exp(log_r.ravel()), "advantage": adv.ravel()}

    def init_student(self, key, architecture):
        """LeCun-normal first layer, zero output layer: the student starts at PPO's drift like
        ES does, but off the all-zero init, where both weight gradients of a bias-free tanh
        network vanish (a stationary point of the L2 loss)."""
        theta = self.algorithm.init(key, **architecture)
        w1 = theta["w1"]
        return {**theta, "w1": jax.random.normal(key, w1.shape) / jnp.sqrt(w1.shape[0])}

    def outputs(self, theta, architecture, batch):
        from metarl_cli.learned.lpo import LPODrift, apply, features

        ratio, adv = batch["ratio"], batch["advantage"]
        if self.target == "value":
            return apply(theta, features(ratio, adv))
        drift = LPODrift(int(architecture["hidden"]))
        grad = jax.grad(lambda r, a: drift(theta, r, a, self.clip_eps))
        return jax.vmap(grad)(ratio, adv)

    def reference(self, batch):
        """`grad`: PPO's own d drift / d r (the teacher's gradient with theta = 0)."""
        if self.target == "value":
            return None
        from metarl_cli.rl.slots import PPOClipDrift

        ppo = PPOClipDrift()
        grad = jax.grad(lambda r, a: jax.nn.relu(ppo({}, r, a, self.clip_eps)))
        return jax.vmap(grad)(batch["ratio"], batch["advantage"])


@dataclass(frozen=True)
class RecurrentOpenProblem(Problem):
    """Sequences of `seq_len` optimiser steps of a PPO run with `schedule` = (updates,
    epochs, minibatches): step k has training proportion `(k // (E M)) / (U - 1)` and epoch
    proportion `((k // M) % E) / (E - 1)`, as in the trainer; each sequence starts at a random
    step. (The original used `step / 1999` and `(step % 8) / 7`.)"""

    seq_len: int = 100
    schedule: tuple[int, int, int] = (1220, 4, 8)

    def sample(self, key, n):
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
        from metarl_cli.learned.open import OpenNetwork, open_features
        from metarl_cli.learned.perparam import DECAYS

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


def make_problem(
    algorithm: Any,
    *,
    target: str | None = None,
    clip_eps: float = 0.2,
    seq_len: int | None = None,
    schedule: tuple[int, int, int] | None = None,
) -> Problem:
    """The distillation problem of a learned algorithm (by registry id)."""
    name = algorithm.name
    if name == "lpo":
        return LPOProblem(algorithm, target=target or "value", clip_eps=clip_eps)
    if name == "open_ff":
        return OpenFFProblem(algorithm)
    if name == "nofeat":
        return NoFeatProblem(algorithm)
    if name == "open":
        return RecurrentOpenProblem(
            algorithm, seq_len=seq_len or 100, schedule=tuple(schedule or (1220, 4, 8))
        )
    from metarl_cli.errors import ConfigError

    raise ConfigError(f"no distillation problem for algorithm {name!r}")
