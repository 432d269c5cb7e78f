"""Learned Policy Optimisation (Lu et al., 2022, arXiv:2210.05639): a learned PPO drift.

Inputs are the paper's eq. (2) (Goldie et al., 2025): seven transformations of the ratio r and
the advantage A, all zero at r = 1. (The original code uses eight: these plus (log r)^2; we
follow the paper and record it in the spec.) The network is Dense(128, no bias)
-> tanh -> Dense(1, no bias), so it outputs 0 at r = 1. The drift is
`relu(ppo_drift(r, A) + net(x))`: with theta = 0 it is exactly PPO's clipped drift, which is
where evolution starts ("initialised at PPO").

The features, the network and the slot kernels are in `learned/lpo_drift.py`. This module
also owns what the meta-learners need of LPO: its distillation problem (`LPOProblem`) and
its symbolic-regression data (the original's grid over `[log_r, r_minus_1, A]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_cli.artefacts.manifest import Slot
from metarl_cli.learned.base import (
    ALGORITHMS,
    FeatureSpec,
    SymbolicFunction,
    check_hsize,
    no_foreign_checkpoint,
)
from metarl_cli.learned.checks import check_drift
from metarl_cli.learned.distillation import (
    DistillationProblem,
    DistilOptions,
    SymbolicData,
    chunked,
)
from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    code_kernel,
    signature_for,
)
from metarl_cli.learned.lpo_drift import SPEC, CodeDrift, LPODrift, SymbolicDrift, apply, features
from metarl_cli.learned.symbolic import compile_symbolic
from metarl_cli.rl.slots import PPOClipDrift

CODE_PARAMETERS = ("ratio", "advantage", "epsilon")
CODE_SIGNATURE = signature_for(CODE_PARAMETERS, ("drift",), differentiable=True)
CODE_INPUTS = {
    "ratio": "r, the ratio of the new policy to the previous policy for the taken action",
    "advantage": "A, the GAE advantage estimate (normalised per minibatch)",
    "epsilon": "the clip epsilon value used in PPO",
}
SYMBOLIC_VARIABLES = {
    "r": "the policy ratio pi / pi_old",
    "A": "the normalised advantage",
    "log_r": "log r",
    "r_minus_1": "r - 1",
    "epsilon": "PPO's clip epsilon",
    **{f.name: f.meaning for f in SPEC.features},
}
WARM_START = """def PPO_clip(ratio, advantage, epsilon):
    ratio_clip = ratio - jnp.clip(ratio, 1 - epsilon, 1 + epsilon)
    ratio_adv = ratio_clip * advantage
    drift = nn.relu(ratio_adv)
    return drift
"""


# Supplement D's worked example for the LLM prompt: (name, thought, body).
PROMPT_EXAMPLE = (
    "tanh_clip",
    "Based on the previous outputs, I should try to tanh the function.",
    "    ratio_clip = jnp.tanh(ratio - jnp.clip(ratio, 1 - epsilon, 1 + epsilon))\n"
    "    ratio_adv = ratio_clip * advantage\n"
    "    drift = nn.relu(ratio_adv)\n"
    "    return drift\n",
)
# Table 10 mapped to Operon (docs/symbolic.md).
SYMBOLIC_SEARCH: dict[str, Any] = {
    "population": 1000,
    "max_size": 40,
    "max_depth": 8,
    "operators": ["add", "sub", "mul", "div", "min", "max", "square", "tanh", "abs"],
    "num_points": 1024 * 1024,
}


# --- distillation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LPOProblem(DistillationProblem):
    """LPO `value`: the drift's learned term `net(x(r, A))`, i.e. the drift before its relu
    minus PPO's clip term. PPO's term is the same in both networks so it cancels in the loss;
    the relu is left out because a student in its flat region would get no gradient (a student
    starting at PPO's drift, as ES does, would never leave it inside the clip range).
    LPO `grad`: `d relu(ppo + net) / d r`, the original's target (the policy gradient sees the
    drift only through it); its relative error is measured against the teacher's departure
    from PPO's gradient, which both share. The held-out set is a regular grid of ratios and
    advantages."""

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
        """The teacher's or student's `target` (value or d/dr) on `batch`."""
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
        ppo = PPOClipDrift()
        grad = jax.grad(lambda r, a: jax.nn.relu(ppo({}, r, a, self.clip_eps)))
        return jax.vmap(grad)(batch["ratio"], batch["advantage"])


# --- symbolic-regression data (reference §6.2) --------------------------------------------------

SYMBOLIC_INPUTS = ("log_r", "r_minus_1", "A")
SYMBOLIC_FUNCTION = SymbolicFunction(
    "LPO_Symbolic", ("r", "A"), ("log_r = log(r)", "r_minus_1 = r - 1")
)


def symbolic_grid(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(r, A) on the original's grid, `side x side` points with side = sqrt(num_points) rounded
    to an even number: `A = k / (side / 8)` and `log r = k / (side / 2)` for k in
    [-side/2, side/2), so r = 1 and A = 0 are grid points (1024 x 1024 = the original's)."""
    side = max(2, round(float(np.sqrt(num_points)) / 2) * 2)
    k = np.arange(-side // 2, side // 2, dtype=np.float64)
    adv = (k / (side / 8)).astype(np.float32)
    log_r = (k / (side / 2)).astype(np.float32)
    lr, a = np.meshgrid(log_r, adv, indexing="ij")
    return np.exp(lr.reshape(-1)).astype(np.float32), a.reshape(-1)


def ratio_inputs(ratio: np.ndarray) -> dict[str, np.ndarray]:
    """The derived LPO inputs of ratios (float32, as `SymbolicDrift` computes them)."""
    r = np.asarray(ratio, np.float32)
    return {"log_r": np.log(r).astype(np.float32), "r_minus_1": (r - np.float32(1.0))}


def teacher_fns(theta: Any, architecture: dict[str, Any], clip_eps: float):
    """Jitted `(drift(r, A), d drift / dr (r, A))` of an LPO network."""
    theta = jax.tree.map(jnp.asarray, theta)
    drift_slot = LPODrift(hidden=int(architecture.get("hidden", 128)))

    def drift(r, a):
        return drift_slot(theta, r, a, clip_eps)

    def grad(r, a):
        return jax.jvp(lambda rr: drift(rr, a), (r,), (jnp.ones_like(r),))[1]

    return jax.jit(drift), jax.jit(grad)


def symbolic_data(
    theta: Any,
    architecture: dict[str, Any],
    ratio: np.ndarray,
    adv: np.ndarray,
    *,
    grad_loss: bool,
    clip_eps: float,
) -> SymbolicData:
    """The teacher's drift (or, with `grad_loss`, its derivative in r, by forward-mode
    autodiff; the original fitted the gradient against the drift value, reference §6.3) at
    (ratio, adv), with inputs `[log_r, r_minus_1, A]`."""
    drift_fn, grad_fn = teacher_fns(theta, architecture, clip_eps)
    drift = chunked(drift_fn, ratio, adv)
    y = chunked(grad_fn, ratio, adv) if grad_loss else drift
    d = ratio_inputs(ratio)
    x = np.stack([d["log_r"], d["r_minus_1"], adv.astype(np.float32)], axis=1)
    return SymbolicData(SYMBOLIC_INPUTS, x, y, drift=drift, ratio=ratio.astype(np.float32))


@dataclass(frozen=True)
class LPO:
    """The LPO learned algorithm (registry id `lpo`)."""

    name: str = "lpo"
    display_name: str = "LPO"
    slot: Slot = "drift"
    spec: FeatureSpec = SPEC
    forms: tuple[str, ...] = ("neural", "symbolic", "code")
    recurrent: bool = False
    widths: tuple[str, ...] = ("hidden",)
    distil_options: tuple[str, ...] = ("target",)
    gridworld_figure: int | None = 15  # the paper's figure of it meta-trained on gridworlds
    reference_baseline: str = "ppo"
    prompt_example: tuple[str, str, str] | None = PROMPT_EXAMPLE
    checkpoint_format: str | None = None
    symbolic_function: SymbolicFunction = SYMBOLIC_FUNCTION

    def import_checkpoint(self, path: Any) -> tuple[Any, dict[str, int]]:
        """LPO has no foreign checkpoint format (`checkpoint_format` is None)."""
        no_foreign_checkpoint(self, path)

    @property
    def symbolic_search(self) -> dict[str, Any]:
        """Table 10's search space for LPO."""
        return {**SYMBOLIC_SEARCH, "operators": list(SYMBOLIC_SEARCH["operators"])}

    code_parameters: tuple[str, ...] = CODE_PARAMETERS
    code_signature: KernelSignature = CODE_SIGNATURE
    code_output: str = (
        "drift: non-negative everywhere, zero at r = 1 with zero gradient in r at r = 1; the "
        "actor loss is -mean(r * A - drift)"
    )
    warm_start: str = WARM_START

    @property
    def code_inputs(self) -> dict[str, str]:
        """Names and meanings of the code interface (what the LLM prompt describes)."""
        return dict(CODE_INPUTS)

    @property
    def symbolic_variables(self) -> dict[str, str]:
        """Variable name -> meaning of the symbolic form."""
        return dict(SYMBOLIC_VARIABLES)

    @property
    def symbolic_aliases(self) -> dict[str, str]:
        """The code interface's names as symbolic aliases (`ratio` is `r`)."""
        return {"ratio": "r", "advantage": "A"}

    def sample_inputs(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """Ratios and advantages over the distillation grid's ranges (reference §5.5):
        `log r ~ U(-2, 2)`, `A ~ U(-8, 8)`."""
        k1, k2 = jax.random.split(key)
        return {
            "ratio": jnp.exp(jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)),
            "advantage": jax.random.uniform(k2, (n,), minval=-8.0, maxval=8.0),
        }

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: one hidden layer of 128 units for every suite."""
        del suite
        return {"hidden": 128}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        """`--hsize h`: a hidden layer of h units."""
        check_hsize(hsize)
        return {"hidden": int(hsize)}

    def architecture_with(self, widths: dict[str, int]) -> dict[str, int]:
        """The architecture with these layer `widths`."""
        return {"hidden": int(widths["hidden"])}

    def init(self, key: jax.Array, hidden: int = 128) -> dict:
        """theta = 0: the drift is exactly PPO's."""
        del key
        n = len(SPEC.features)
        return {"w1": jnp.zeros((n, hidden)), "w2": jnp.zeros((hidden, 1))}

    def initial_theta(self, key: jax.Array, hidden: int = 128) -> dict:
        """ES starts at theta = 0, PPO's drift."""
        return self.init(key, hidden)

    def validity(self, kernel: Any, theta: Any = None, *, clip_eps: float = 0.2) -> list[str]:
        """Mirror learning's drift conditions (`learned/checks.py`)."""
        return check_drift(kernel, theta, clip_eps=clip_eps)

    def distillation_problem(self, options: DistilOptions = DistilOptions()) -> LPOProblem:
        """`LPOProblem` for `options.target` ("value" or "grad") at `options.clip_eps`."""
        return LPOProblem(self, target=options.target or "value", clip_eps=options.clip_eps)

    def symbolic_data(
        self, theta: Any, architecture: dict[str, Any], key: Any, n: int, *, grad_loss: bool,
        clip_eps: float,
    ) -> SymbolicData:  # fmt: skip
        """The drift on the original's grid, `A` on [-4, 4) and `log r` on [-1, 1) (1024 x
        1024 points by default, r = 1 included)."""
        del key
        ratio, adv = symbolic_grid(n)
        return symbolic_data(
            theta, architecture, ratio, adv, grad_loss=grad_loss, clip_eps=clip_eps
        )

    def symbolic_holdout(self, key: Any, n: int) -> dict[str, np.ndarray]:
        """Uniform (r, A) over the grid's box."""
        k1, k2 = jax.random.split(key)
        log_r = np.asarray(jax.random.uniform(k1, (n,), minval=-1.0, maxval=1.0), np.float32)
        adv = np.asarray(jax.random.uniform(k2, (n,), minval=-4.0, maxval=4.0), np.float32)
        ratio = np.exp(log_r).astype(np.float32)
        return {**ratio_inputs(ratio), "A": adv, "r": ratio}

    def symbolic_ratio_inputs(self, ratio: Any) -> dict[str, np.ndarray]:
        """The ratio-derived symbolic inputs (`log_r`, `r_minus_1`) at `ratio`."""
        return ratio_inputs(ratio)

    def kernel(
        self,
        cfg,
        architecture: dict,
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ):
        """The drift slot of `form`: `LPODrift`, `SymbolicDrift` or `CodeDrift`."""
        del cfg
        if form == "neural":
            return LPODrift(hidden=int(architecture.get("hidden", 128)))
        if form == "symbolic":
            return SymbolicDrift(
                compile_symbolic(text, self.symbolic_variables, self.symbolic_aliases)
            )
        return CodeDrift(code_kernel(code))


ALGORITHMS.register("lpo", LPO())
