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
from metarl_cli.learned.base import SymbolicFunction, check_hsize
from metarl_cli.learned.exported import (
    ExportedKernel,
    KernelSignature,
    code_kernel,
    signature_for,
)
from metarl_cli.learned.perparam import (
    DECAYS,
    EXP_MULT,
    MOMENTUM_NAMES,
    OPTIMISER_SYMBOLIC_SEARCH,
    STEP_MULT,
)

__all__ = [
    "DECAYS",
    "NUM_FEATURES",
    "OPEN_NPY_ARCHS",
    "OpenNetwork",
    "OpenRule",
    "flat_features",
    "flatten_theta",
    "import_open_npy",
    "init_theta",
    "open_features",
    "open_optimiser",
    "theta_size",
    "unflatten_theta",
]

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


# --------------------------------------------------------------------------------------------
# Rules for the per-parameter optimiser slot (neural, symbolic, code)


@dataclass(frozen=True)
class OpenRule:
    """Neural OPEN: features -> (GRU) -> MLP -> `(o0, o1, o2)` -> the update (module doc)."""

    hidden: int
    gru: int
    recurrent: bool = True
    lr_step_mult: float = STEP_MULT
    exp_mult: float = EXP_MULT
    needs_activations: bool = True

    @property
    def network(self) -> OpenNetwork:
        return OpenNetwork(self.hidden, self.gru, self.recurrent)

    def init_state(self, n: int):
        return {"carry": jnp.zeros((n, self.gru), jnp.float32)} if self.recurrent else {}

    def __call__(self, theta, inputs, state):
        x = flat_features(inputs)
        out, carry = self.network.apply(theta, x, state.get("carry"))
        eps = jax.random.normal(inputs.key, inputs.p.shape, inputs.p.dtype)
        step = self.lr_step_mult
        u = out[:, 0] * step * jnp.exp(out[:, 1] * self.exp_mult)
        u = u + out[:, 2] * inputs.mask * eps * step
        return u, ({"carry": carry} if self.recurrent else {})


@dataclass(frozen=True)
class OpenSymbolicRule:
    """Symbolic OPEN: `u = f(19 normalised features, rand)`, made zero-mean (reference §3.6).

    Unlike the original, every parameter draws its own noise (the original reused one key for
    all tensors of equal shape)."""

    kernel: Any  # SymbolicKernel
    needs_activations: bool = True

    def init_state(self, n: int):
        del n
        return {}

    def __call__(self, theta, inputs, state):
        del theta
        x = flat_features(inputs)
        values = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
        values["rand"] = jax.random.normal(inputs.key, inputs.p.shape) * inputs.mask
        return self.kernel(**values), state


@dataclass(frozen=True)
class OpenCodeRule:
    """Code OPEN (Supplement C/D): `update = f(p, m_0_1, .., m_0_9999, l_p, b_p, t_p, dorm, g,
    rand, lr[, iteration, var])` on raw inputs, `lr = base_lr * lr_scale`; `p <- p - update`
    (no zero-mean, as in the original). The recurrent form also returns the new `var`."""

    code: ExportedKernel
    base_lr: float
    recurrent: bool = False
    needs_activations: bool = True

    def init_state(self, n: int):
        return {"var": jnp.zeros((n,), jnp.float32)} if self.recurrent else {}

    def __call__(self, theta, inputs, state):
        del theta
        n = inputs.p.shape[0]
        rand = jax.random.normal(inputs.key, inputs.p.shape) * inputs.mask
        args = [
            inputs.p,
            *(inputs.mom[:, i] for i in range(len(DECAYS))),
            inputs.l_p,
            jnp.broadcast_to(inputs.b_p, (n,)),
            jnp.broadcast_to(inputs.t_p, (n,)),
            inputs.dorm,
            inputs.g,
            rand,
            self.base_lr * inputs.lr_scale,
        ]
        if not self.recurrent:
            (update,) = self.code(*args)
            return update, state
        update, var = self.code(*args, inputs.iteration, state["var"])
        return update, {"var": var}


def code_parameters(recurrent: bool) -> tuple[str, ...]:
    """The code-kernel interface of Supplement D (FF OPEN; recurrent adds iteration and var)."""
    names = ("p", *MOMENTUM_NAMES, "l_p", "b_p", "t_p", "dorm", "g", "rand", "lr")
    return (*names, "iteration", "var") if recurrent else names


def open_optimiser(hidden: int, gru: int, recurrent: bool = True):
    """The neural OPEN optimiser slot (zero-mean update over actor and critic)."""
    from metarl_cli.learned.perparam import PerParamOptimiser

    return PerParamOptimiser(OpenRule(hidden, gru, recurrent), zero_mean=True)


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


FEATURE_NAMES = tuple(name for name, _, _ in _FEATURES)
SYMBOLIC_EXTRA = {"rand": "a standard normal sample per parameter (0 for the critic)"}

# The paper's symbolic programs (Supplement C) spell the inputs differently.
_SHORT = {"0_1": "1", "0_5": "5", "0_9": "9", "0_99": "99", "0_999": "999", "0_9999": "9999"}
SYMBOLIC_ALIASES = {
    "sgn_g": "sign_g",
    **{f"sgn_m_{short}": f"sign_m_{long}" for long, short in _SHORT.items()},
    **{f"log_m_{short}": f"log_m_{long}" for long, short in _SHORT.items()},
}

CODE_INPUTS = {
    "p": "the current value of the parameter being optimised",
    "m_0_1 .. m_0_9999": (
        "momentum of the gradient at decays 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999: "
        "m <- b * m + (1 - b) * g, updated with the current gradient first"
    ),
    "l_p": "layer proportion: 0 in the first layer, 1 in the last",
    "b_p": "batch proportion: how far through the epochs on the current batch of data",
    "t_p": "training proportion: how far training is through the full horizon",
    "dorm": (
        "dormancy of the neuron the parameter feeds: its share of the layer's activation times "
        "the number of neurons (1 = average, between 0 and the layer width)"
    ),
    "g": "the gradient of the loss with respect to the parameter",
    "rand": "a standard normal sample per parameter (0 for the critic)",
    "lr": "learning rate: tuned per environment and linearly annealed over training",
}
RECURRENT_INPUTS = {
    "iteration": "the optimiser step count, starting at 1",
    "var": "a per-parameter recurrent variable carried between steps (zeros at the start)",
}

WARM_START_FF = """def SGD(
    p, m_0_1, m_0_5, m_0_9, m_0_99, m_0_999, m_0_9999, l_p, b_p, t_p, dorm, g, rand, lr
):
    update = g * lr
    return update
"""

# Supplement D's worked examples for the LLM prompt: (name, thought, body).
PROMPT_EXAMPLE_FF = (
    "sgd_dorm",
    "Based on the previous outputs, I should try dividing the gradient by dormancy to give "
    "larger updates to more dormant neurons.",
    "    update = g * lr / (dorm)\n    return update\n",
)
PROMPT_EXAMPLE_RECURRENT = (
    "Adam_rand",
    "Based on the previous outputs, I will try making the update slightly stochastic.",
    "    var = (1 - 0.999) * jnp.square(g) + 0.999 * var\n"
    "    var_hat = var / (1 - 0.999**iteration)\n"
    "    m_hat = m_0_9 / (1 - 0.9**iteration)\n"
    "    adam = m_hat / jnp.sqrt(var_hat + 1e-8)\n"
    "    adam = adam + rand * 0.0001\n"
    "    update = adam * lr\n"
    "    return update, var\n",
)

WARM_START_RECURRENT = """def Adam(
    p, m_0_1, m_0_5, m_0_9, m_0_99, m_0_999, m_0_9999, l_p, b_p, t_p, dorm, g, rand, lr,
    iteration, var
):
    var = (1 - 0.999) * jnp.square(g) + 0.999 * var
    var_hat = var / (1 - 0.999**iteration)
    m_hat = m_0_9 / (1 - 0.9**iteration)
    adam = m_hat / jnp.sqrt(var_hat + 1e-8)
    update = adam * lr
    return update, var
"""


def sample_inputs(key: jax.Array, n: int) -> dict[str, jax.Array]:
    """Synthetic raw inputs for distillation and symbolic regression (reference §5.2):
    `p ~ N(0, 1)`, `g ~ N(0, 0.5^2)`, six momenta i.i.d. `N(0, 0.5^2)`, `t_p, b_p ~ U(0, 1)`,
    `l_p` uniform on {0, 0.5, 1}, `dorm = clip(N(1, 1), 0, 10)`, `rand ~ N(0, 1)`."""
    ks = jax.random.split(key, 8)
    return {
        "p": jax.random.normal(ks[0], (n,)),
        "g": 0.5 * jax.random.normal(ks[1], (n,)),
        "mom": 0.5 * jax.random.normal(ks[2], (n, len(DECAYS))),
        "t_p": jax.random.uniform(ks[3], (n,)),
        "b_p": jax.random.uniform(ks[4], (n,)),
        "l_p": jax.random.choice(ks[5], jnp.array([0.0, 0.5, 1.0]), (n,)),
        "dorm": jnp.clip(1.0 + jax.random.normal(ks[6], (n,)), 0.0, 10.0),
        "rand": jax.random.normal(ks[7], (n,)),
    }


@dataclass(frozen=True)
class OpenAlgorithm:
    """OPEN as a learned algorithm (registry ids `open` and `open_ff`)."""

    name: str
    recurrent: bool
    slot: str = "optimiser"
    forms: tuple[str, ...] = ("neural", "symbolic", "code")

    @property
    def spec(self):
        return _spec(self.name)

    @property
    def display_name(self) -> str:
        return "OPEN" if self.recurrent else "Feed-Forward OPEN"

    @property
    def widths(self) -> tuple[str, ...]:
        """Recurrent OPEN's GRU is sized separately; the feed-forward one has none."""
        return ("hidden", "gru") if self.recurrent else ("hidden",)

    @property
    def distil_options(self) -> tuple[str, ...]:
        return ("rollout",) if self.recurrent else ()

    @property
    def reference_baseline(self) -> str:
        """The original measured recurrent OPEN against PPO with Adam, OPEN-FF against SGD."""
        return "ppo" if self.recurrent else "sgd"

    @property
    def prompt_example(self) -> tuple[str, str, str]:
        return PROMPT_EXAMPLE_RECURRENT if self.recurrent else PROMPT_EXAMPLE_FF

    @property
    def checkpoint_format(self) -> str | None:
        """The original code's released checkpoints are recurrent OPEN's."""
        if not self.recurrent:
            return None
        lengths = " or ".join(str(n) for n in OPEN_NPY_ARCHS)
        return f"a released OPEN .npy (float32, length {lengths})"

    def import_checkpoint(self, path: str | Path) -> tuple[Any, dict[str, int]]:
        """(theta, architecture) of a released OPEN `.npy` (`import_open_npy`)."""
        if not self.recurrent:
            raise ArtefactError(f"{self.name} has no released checkpoints to import")
        theta, hidden, gru = import_open_npy(path)
        return theta, {"hidden": hidden, "gru": gru}

    @property
    def code_parameters(self) -> tuple[str, ...]:
        return code_parameters(self.recurrent)

    @property
    def code_signature(self) -> KernelSignature:
        outputs = ("update", "var") if self.recurrent else ("update",)
        return signature_for(self.code_parameters, outputs)

    @property
    def code_inputs(self) -> dict[str, str]:
        """Names and meanings of the code interface (what the LLM prompt describes)."""
        return {**CODE_INPUTS, **(RECURRENT_INPUTS if self.recurrent else {})}

    @property
    def code_output(self) -> str:
        if self.recurrent:
            return "(update, var): the parameter moves by p <- p - update; var is carried"
        return "update: the parameter moves by p <- p - update"

    @property
    def warm_start(self) -> str:
        """The hand-designed reference as a code kernel (Supplement D's warm start)."""
        return WARM_START_RECURRENT if self.recurrent else WARM_START_FF

    @property
    def symbolic_variables(self) -> dict[str, str]:
        return {**{f.name: f.meaning for f in self.spec.features}, **SYMBOLIC_EXTRA}

    symbolic_aliases = SYMBOLIC_ALIASES

    def sample_inputs(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        return sample_inputs(key, n)

    def default_architecture(self, suite: str) -> dict[str, int]:
        """Table 8: MinAtar GRU 16 / dense 32; Brax (Ant) GRU 8 / dense 16."""
        return {"hidden": 32, "gru": 16} if suite == "minatar" else {"hidden": 16, "gru": 8}

    def architecture_for(self, hsize: int) -> dict[str, int]:
        """`--hsize h`: dense h, GRU h/2 (as the original scripts; recurrent: h even)."""
        why = "for recurrent OPEN (its GRU has hsize/2 units)"
        check_hsize(hsize, even=self.recurrent, why=why)
        return {"hidden": int(hsize), "gru": max(1, int(hsize) // 2)}

    def architecture_with(self, widths: dict[str, int]) -> dict[str, int]:
        if self.recurrent:
            return {"hidden": int(widths["hidden"]), "gru": int(widths["gru"])}
        return {"hidden": int(widths["hidden"]), "gru": max(1, int(widths["hidden"]) // 2)}

    def init(self, key: jax.Array, hidden: int = 16, gru: int = 8):
        return init_theta(key, hidden, gru, self.recurrent)

    def initial_theta(self, key: jax.Array, hidden: int = 16, gru: int = 8):
        """ES starts at the zero vector (evosax 0.1's OpenAI-ES, as the original)."""
        return jax.tree.map(jnp.zeros_like, self.init(key, hidden, gru))

    def validity(self, kernel: Any, theta: Any = None, *, clip_eps: float = 0.2) -> list[str]:
        del kernel, theta, clip_eps
        return []

    def distillation_problem(
        self,
        *,
        target: str | None = None,
        clip_eps: float = 0.2,
        seq_len: int | None = None,
        schedule: tuple[int, int, int] | None = None,
    ) -> Any:
        """Recurrent: sequences of optimiser steps; feed-forward: single updates."""
        from metarl_cli.learned.open_distil import OpenFFProblem, RecurrentOpenProblem

        del target, clip_eps
        if not self.recurrent:
            return OpenFFProblem(self)
        schedule = tuple(schedule or (1220, 4, 8))
        return RecurrentOpenProblem(self, seq_len=seq_len or 100, schedule=schedule)

    @property
    def symbolic_function(self) -> SymbolicFunction:
        return SymbolicFunction("OPEN_Symbolic")

    @property
    def symbolic_search(self) -> dict[str, Any]:
        search = OPTIMISER_SYMBOLIC_SEARCH
        return {**search, "operators": list(search["operators"])}

    def symbolic_data(
        self, theta: Any, architecture: dict[str, Any], key: Any, n: int, *, grad_loss: bool,
        clip_eps: float,
    ) -> Any:  # fmt: skip
        """Feed-forward only: the 19 normalised features plus `rand`; the target is the
        teacher's full stochastic update (`open_distil.py`)."""
        from metarl_cli.learned.open_distil import symbolic_data

        del grad_loss, clip_eps
        return symbolic_data(theta, architecture, key, n)

    def symbolic_holdout(self, key: Any, n: int) -> dict[str, np.ndarray]:
        from metarl_cli.learned.open_distil import symbolic_holdout

        return symbolic_holdout(key, n)

    def kernel(
        self,
        cfg,
        architecture: dict,
        form: str = "neural",
        text: str | None = None,
        code: ExportedKernel | None = None,
    ):
        from metarl_cli.learned.perparam import PerParamOptimiser

        if form == "neural":
            return open_optimiser(
                int(architecture["hidden"]), int(architecture.get("gru", 0)), self.recurrent
            )
        if form == "symbolic":
            from metarl_cli.learned.symbolic import compile_symbolic

            kernel = compile_symbolic(text, self.symbolic_variables, self.symbolic_aliases)
            return PerParamOptimiser(OpenSymbolicRule(kernel), zero_mean=True)
        base_lr = cfg.l2o_lr if self.recurrent else cfg.sgd_lr
        return PerParamOptimiser(
            OpenCodeRule(code_kernel(code), float(base_lr), self.recurrent), zero_mean=False
        )


def _register() -> None:
    from metarl_cli.learned.base import ALGORITHMS

    ALGORITHMS.register("open", OpenAlgorithm("open", recurrent=True))
    ALGORITHMS.register("open_ff", OpenAlgorithm("open_ff", recurrent=False))


_register()
